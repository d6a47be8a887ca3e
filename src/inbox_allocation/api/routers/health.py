"""Probes and build information: /health (liveness), /ready (readiness), /version."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from inbox_allocation import __version__
from inbox_allocation.api.responses import now_timestamp, ok
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.health import Health, Readiness, VersionInfo
from inbox_allocation.config import Settings
from inbox_allocation.db.pool import ping
from inbox_allocation.logging import get_logger

log = get_logger(__name__)

router = APIRouter(tags=["health"])

HEALTH_DB_TIMEOUT_SECONDS = 1.0  # informational only: liveness must answer fast
READY_DB_TIMEOUT_SECONDS = 3.0


@router.get("/health", response_model=Envelope[Health], summary="Liveness probe")
async def health(request: Request) -> Response:
    """200 whenever the process serves requests; the database check is informational, so a
    blinking database never makes Kubernetes restart a healthy process. It says only up or
    down: the reason (host, port, driver message) goes to the log, never to an
    unauthenticated caller."""
    problem = await ping(request.app.state.db.pool, HEALTH_DB_TIMEOUT_SECONDS)
    if problem:
        log.warning("health check: database down", reason=problem)
    database = {
        "status": "unhealthy" if problem else "healthy",
        "message": "down" if problem else "up",
    }
    return ok({"status": "healthy", "checks": {"database": database}, "timestamp": now_timestamp()})


@router.get(
    "/ready",
    response_model=Envelope[Readiness],
    responses={503: {"model": Envelope[Readiness], "description": "Database not reachable"}},
    summary="Readiness probe",
)
async def ready(request: Request) -> Response:
    """200 when the database answers within 3 s, else 503 (same envelope, `ready: false`)."""
    problem = await ping(request.app.state.db.pool, READY_DB_TIMEOUT_SECONDS)
    return ok({"ready": problem is None, "timestamp": now_timestamp()}, 503 if problem else 200)


@router.get("/version", response_model=Envelope[VersionInfo], summary="Build information")
async def version(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    return ok(
        {
            "version": __version__,
            "build_time": settings.build_time,
            "git_commit": settings.git_commit or _git_commit(),
            # The Go service's keys, kept for existing clients; they describe our runtime.
            "go_version": f"python{platform.python_version()}",
            "python_version": platform.python_version(),
            "os": platform.system().lower(),
            "arch": platform.machine(),
        }
    )


@cache
def _git_commit() -> str:
    """The commit of the checkout we run from, when there is one (asked once)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH is what a developer has
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"
