"""The contract's envelopes (docs/decisions.md#error-envelope), as documented in OpenAPI.

Handlers render responses as plain dicts (see `api.responses`); these models describe them,
and the tests validate real responses against them so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

DataT = TypeVar("DataT")


class Envelope(BaseModel, Generic[DataT]):
    """Success envelope: `success` is true for every 2xx response."""

    model_config = ConfigDict(extra="forbid")

    success: bool = Field(examples=[True])
    data: DataT
    timestamp: str = Field(
        description="RFC 3339 UTC, fractional seconds trimmed of trailing zeros",
        examples=["2026-01-27T10:00:00.12Z"],
    )


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable machine-readable code", examples=["VALIDATION_ERROR"])
    message: str = Field(description="Human-readable text (not part of the contract)")
    details: list[str] | None = Field(
        None, description="One entry per failed rule; present only when non-empty"
    )


class ErrorEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    success: bool = Field(examples=[False])
    error: ErrorInfo
    timestamp: str = Field(examples=["2026-01-27T10:00:00Z"])
