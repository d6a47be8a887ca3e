"""The closed vocabularies of the domain (PostgreSQL enums of the same names)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "OPERATOR"
    MANAGER = "MANAGER"
    ADMIN = "ADMIN"

    @property
    def is_manager_level(self) -> bool:
        """MANAGER or ADMIN (the contract's "manager-level")."""
        return self is not Role.OPERATOR


class OperatorStatus(StrEnum):
    """AVAILABLE receives conversations; BUSY keeps its own but receives none and starts no
    grace period; OFFLINE starts a grace period for every conversation it holds."""

    AVAILABLE = "AVAILABLE"
    BUSY = "BUSY"
    OFFLINE = "OFFLINE"


class ConversationState(StrEnum):
    QUEUED = "QUEUED"
    ALLOCATED = "ALLOCATED"
    RESOLVED = "RESOLVED"
