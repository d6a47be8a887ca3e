"""Ids of the seed data (docs/decisions.md#demo-data): `P0000000-0000-0000-0000-0000000000NN`."""

from __future__ import annotations


def seed_id(kind: int, number: int) -> str:
    return f"{kind}0000000-0000-0000-0000-{number:012d}"


ACME = seed_id(1, 1)
TECHSTART = seed_id(1, 2)

ACME_ADMIN = seed_id(3, 1)
ACME_MANAGER = seed_id(3, 2)
ACME_MANAGER_OFFLINE = seed_id(3, 3)
ACME_OP4 = seed_id(3, 4)  # OPERATOR, AVAILABLE, inbox 1
ACME_OP5 = seed_id(3, 5)  # OPERATOR, AVAILABLE, inbox 1
ACME_OP6_OFFLINE = seed_id(3, 6)  # OPERATOR, OFFLINE, inbox 1
ACME_OP7 = seed_id(3, 7)  # OPERATOR, AVAILABLE, inbox 2
ACME_OP10 = seed_id(3, 10)  # OPERATOR, AVAILABLE, inbox 3
TECH_ADMIN = seed_id(3, 11)
TECH_MANAGER = seed_id(3, 12)
TECH_OP14 = seed_id(3, 14)  # OPERATOR, AVAILABLE, inboxes 4 and 5

INBOX_SALES = seed_id(2, 1)  # Acme
INBOX_SUPPORT = seed_id(2, 2)  # Acme
INBOX_BILLING = seed_id(2, 3)  # Acme
INBOX_TECH_GENERAL = seed_id(2, 4)  # TechStart


def conversation(number: int) -> str:
    return seed_id(7, number)


def label(number: int) -> str:
    return seed_id(6, number)


def headers(operator: str, tenant: str = ACME, **extra: str) -> dict[str, str]:
    return {"X-Tenant-ID": tenant, "X-Operator-ID": operator, **extra}
