"""Request bodies of claim, resolve, deallocate, reassign and move_inbox (strict JSON).

Existing clients send the target under other names (the original's OpenAPI file): both are
accepted (docs/decisions.md#field-aliases); responses use the contract's names.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field

from inbox_allocation.api.schemas.common import BodyUUID, RequestBody
from inbox_allocation.db.seed_ids import ACME_OP5, INBOX_SUPPORT, conversation

CONVERSATION_EXAMPLE = conversation(5)


class ConversationRef(RequestBody):
    conversation_id: BodyUUID = Field(examples=[CONVERSATION_EXAMPLE])


class ReassignRequest(RequestBody):
    conversation_id: BodyUUID = Field(examples=[CONVERSATION_EXAMPLE])
    operator_id: BodyUUID = Field(
        validation_alias=AliasChoices("operator_id", "target_operator_id"),
        description="The new assignee (alias: target_operator_id)",
        examples=[ACME_OP5],
    )


class MoveInboxRequest(RequestBody):
    conversation_id: BodyUUID = Field(examples=[CONVERSATION_EXAMPLE])
    inbox_id: BodyUUID = Field(
        validation_alias=AliasChoices("inbox_id", "target_inbox_id"),
        description="The destination inbox (alias: target_inbox_id)",
        examples=[INBOX_SUPPORT],
    )
