"""Inbox shapes and their request bodies.

`phone_number` must be E.164 (`+` then 7–15 digits, no leading zero) and
`display_name` must not be blank; both are stored trimmed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from inbox_allocation.api.schemas.common import ListMeta, RequestBody
from inbox_allocation.db.seed_ids import ACME, INBOX_SALES
from inbox_allocation.domain.phone import is_e164

DISPLAY_NAME_MAX_CHARS = 255


def _required(value: Any) -> Any:
    """null counts as missing (VALIDATION_ERROR), not as a wrong type (BAD_REQUEST)."""
    if value is None:
        raise ValueError("is required")
    return value


def _phone_number(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if not is_e164(value):
        raise ValueError("must be an E.164 number: '+' then 7 to 15 digits, e.g. +15551234001")
    return value


def _display_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if len(value) > DISPLAY_NAME_MAX_CHARS:
        raise ValueError(f"must be at most {DISPLAY_NAME_MAX_CHARS} characters")
    return value


def _optional(rule: Any) -> Any:
    def check(value: str | None) -> str | None:
        return None if value is None else rule(value)

    return check


_PHONE_DESCRIPTION = "E.164 phone number (`^\\+[1-9][0-9]{6,14}$` after trimming); stored trimmed"
_NAME_DESCRIPTION = "Not blank, at most 255 characters after trimming; stored trimmed"

PhoneNumber = Annotated[str, BeforeValidator(_required), AfterValidator(_phone_number)]
DisplayName = Annotated[str, BeforeValidator(_required), AfterValidator(_display_name)]
OptionalPhoneNumber = Annotated[str | None, AfterValidator(_optional(_phone_number))]
OptionalDisplayName = Annotated[str | None, AfterValidator(_optional(_display_name))]


class InboxOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=[INBOX_SALES])
    tenant_id: UUID = Field(examples=[ACME])
    phone_number: str = Field(examples=["+15551234001"])
    display_name: str = Field(examples=["Acme Sales"])
    created_at: datetime
    updated_at: datetime


class InboxList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inboxes: list[InboxOut]
    meta: ListMeta


class InboxCreate(RequestBody):
    phone_number: PhoneNumber = Field(description=_PHONE_DESCRIPTION, examples=["+15551234009"])
    display_name: DisplayName = Field(description=_NAME_DESCRIPTION, examples=["Acme Returns"])


class InboxUpdate(RequestBody):
    """Only the fields present change; `{}` only bumps `updated_at`; null = unchanged."""

    phone_number: OptionalPhoneNumber = Field(
        None, description=_PHONE_DESCRIPTION, examples=["+15551234009"]
    )
    display_name: OptionalDisplayName = Field(
        None, description=_NAME_DESCRIPTION, examples=["Acme Sales (EMEA)"]
    )
