"""The ids of the demo data (sql/seed.sql), in one place.

Every seed id is `K0000000-0000-0000-0000-0000000000NN`: the first digit names the kind of
row (1 tenant, 2 inbox, 3 operator, 4 subscription, 5 operator status, 6 label, 7
conversation, 8 label attachment, a webhook), NN numbers the rows of that kind. The OpenAPI
examples, the start-up banner, the CLI, the tools and the tests take them from here.
"""

from __future__ import annotations

TENANT, INBOX, OPERATOR, SUBSCRIPTION, STATUS, LABEL, CONVERSATION = 1, 2, 3, 4, 5, 6, 7
WEBHOOK = "a"


def seed_id(kind: int | str, number: int) -> str:
    return f"{kind}0000000-0000-0000-0000-{number:012d}"


def operator(number: int) -> str:
    return seed_id(OPERATOR, number)


def inbox(number: int) -> str:
    return seed_id(INBOX, number)


def conversation(number: int) -> str:
    return seed_id(CONVERSATION, number)


def label(number: int) -> str:
    return seed_id(LABEL, number)


ACME = seed_id(TENANT, 1)
TECHSTART = seed_id(TENANT, 2)

ACME_ADMIN = operator(1)
ACME_MANAGER = operator(2)  # subscribed to inboxes 1 and 2
ACME_MANAGER_OFFLINE = operator(3)
ACME_OP4 = operator(4)  # OPERATOR, AVAILABLE, inbox 1
ACME_OP5 = operator(5)  # OPERATOR, AVAILABLE, inbox 1
ACME_OP6_OFFLINE = operator(6)  # OPERATOR, OFFLINE, inbox 1
ACME_OP7 = operator(7)  # OPERATOR, AVAILABLE, inbox 2
ACME_OP10 = operator(10)  # OPERATOR, AVAILABLE, inbox 3
TECH_ADMIN = operator(11)
TECH_MANAGER = operator(12)
TECH_OP14 = operator(14)  # OPERATOR, AVAILABLE, inboxes 4 and 5

INBOX_SALES = inbox(1)  # Acme
INBOX_SUPPORT = inbox(2)  # Acme
INBOX_BILLING = inbox(3)  # Acme
INBOX_TECH_GENERAL = inbox(4)  # TechStart

HOT_LEAD = label(1)  # inbox 1, on conversations 01 and 02
ACME_SUBSCRIPTION = seed_id(SUBSCRIPTION, 1)
ACME_WEBHOOK = seed_id(WEBHOOK, 1)  # disabled
TECHSTART_WEBHOOK = seed_id(WEBHOOK, 2)  # disabled
