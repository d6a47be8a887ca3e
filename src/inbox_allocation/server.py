"""Running the HTTP server: uvicorn, one process or a supervisor with N workers.

Graceful shutdown (SIGTERM/SIGINT): stop accepting, let in-flight requests finish (up to
SHUTDOWN_TIMEOUT), then the app's lifespan stops the workers and closes the pool. With
several workers, uvicorn's supervisor keeps its own copy of the listening socket open while
the workers drain, so the kernel would keep completing handshakes nobody serves; ours closes
that copy first, and new connections are refused from the first moment of the drain.
"""

from __future__ import annotations

import ipaddress
import signal

import uvicorn
from uvicorn.supervisors import Multiprocess

from inbox_allocation.config import Settings
from inbox_allocation.logging import get_logger

log = get_logger(__name__)

APP_FACTORY = "inbox_allocation.app:create_app_from_env"


class _DrainingSupervisor(Multiprocess):
    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()  # refuse new connections while the workers drain
        super().terminate_all()


def _note_signal(signum: int, _frame: object) -> None:
    log.info("received signal after drain", signal=signal.Signals(signum).name)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may well be reachable from elsewhere


def warn_if_exposed(settings: Settings) -> None:
    """One warning at start-up when anyone who can reach the port can claim any identity."""
    if settings.auth_mode == "headers" and not is_loopback(settings.server_host):
        log.warning(
            "AUTH_MODE=headers on a non-loopback address: identities are trusted from the "
            "X-Tenant-ID and X-Operator-ID headers, so only run this behind a gateway that "
            "authenticates callers and sets them (or use AUTH_MODE=token or jwt)",
            host=settings.server_host,
        )


def serve_http(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT and a completed drain; returns normally (exit code 0)."""
    warn_if_exposed(settings)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=settings.server_host,
        port=settings.server_port,
        workers=settings.server_workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # The service reads no client address; one middleware layer less per request.
        proxy_headers=False,
        timeout_keep_alive=int(settings.idle_timeout.total_seconds()),
        timeout_graceful_shutdown=int(settings.shutdown_timeout.total_seconds()),
    )
    if settings.server_workers > 1:
        _DrainingSupervisor(config, sockets=[config.bind_socket()]).run()
        return
    # uvicorn drains on SIGTERM/SIGINT and then re-raises the signal to the previous
    # handler; a benign one lets the caller stop the database in order and exit 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _note_signal)
    uvicorn.Server(config).run()
