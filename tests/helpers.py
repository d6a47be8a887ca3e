"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def world_traversable_tempdir(prefix: str) -> Path:
    """A temp dir the unprivileged database user can enter (mkdtemp makes them 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path
