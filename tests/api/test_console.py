"""GET /console: the page is served, self-contained, and keeps credentials out of URLs.
(tools/console_check.py drives it in headless Chromium: `make console-check`.)"""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_console_page_is_served_self_contained(client: httpx.AsyncClient) -> None:
    response = await client.get("/console")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    # Nothing loaded from elsewhere: works offline.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    # The identity goes in headers from sessionStorage, the stream is read with fetch().
    assert "sessionStorage" in page
    assert '"X-Tenant-ID"' in page
    assert '"Authorization"' in page
    assert 'fetch("/api/v1/events"' in page
    assert "EventSource" not in page  # it cannot send headers: the identity would go in URLs
