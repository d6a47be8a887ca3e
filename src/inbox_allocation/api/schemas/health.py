"""Shapes of /health, /ready and /version (contract §4.11)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


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
    go_version: str
    python_version: str
    os: str
    arch: str
