"""Shapes of /health, /ready and /version."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DatabaseCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["healthy", "unhealthy"]
    # Only whether the database answered; never its error text.
    message: Literal["up", "down"]


class HealthChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database: DatabaseCheck


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["healthy", "unhealthy"]
    checks: HealthChecks
    timestamp: str


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ready: bool
    timestamp: str


class VersionInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    build_time: str
    git_commit: str
    # The Go service's field name, kept for its clients; it holds "python<version>".
    go_version: str = Field(
        deprecated=True, description='Kept for compatibility: "python" + python_version.'
    )
    python_version: str = Field(description="The Python version running the service.")
    os: str
    arch: str
