"""GET /console — the supervisor's live view: one static page shipped in the package.

No build step and no external resources (it works offline); the page asks for the identity,
keeps it in sessionStorage and sends it in headers (never in a URL), and follows the event
stream with fetch() streaming. See docs/events.md.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from starlette.responses import HTMLResponse

router = APIRouter()


@cache
def _page() -> bytes:
    return resources.files("inbox_allocation.static").joinpath("console.html").read_bytes()


@router.get("/console", include_in_schema=False)
async def console() -> HTMLResponse:
    return HTMLResponse(
        _page(),
        headers={
            "Cache-Control": "no-store",
            # Only this origin: the page loads nothing from elsewhere.
            "Content-Security-Policy": (
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "frame-ancestors 'none'"
            ),
            "Referrer-Policy": "no-referrer",
        },
    )
