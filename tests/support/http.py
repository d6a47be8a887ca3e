"""Request and response helpers for tests that go through the HTTP app."""

from __future__ import annotations

from typing import Any

import httpx

from inbox_allocation.db.seed_ids import ACME


def headers(operator: str, tenant: str = ACME, **extra: str) -> dict[str, str]:
    """The identity headers of `operator` in `tenant` (Acme unless given), plus `extra`."""
    return {"X-Tenant-ID": tenant, "X-Operator-ID": operator, **extra}


def error_code(response: httpx.Response) -> str:
    """The error envelope's code (fails the test when the body is not an error envelope)."""
    body: dict[str, Any] = response.json()
    assert body["success"] is False, body
    return str(body["error"]["code"])


def status_and_code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, error_code(response)
