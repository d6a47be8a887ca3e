"""The lock order (src/inbox_allocation/sql/locking.py) under the interleavings that used to
deadlock or break an invariant, each built with real connections running the services' own
code (tests/support/interleave.py): no deadlock, no database error, and the rows stay consistent.

Each test names the review finding it reproduces. A third session (the holder) holds one
lock so that the service calls line up in the order of the finding; everything else is
the services' statements in the services' order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_OP4,
    ACME_OP5,
    INBOX_SALES,
    INBOX_SUPPORT,
    conversation,
    label,
)
from inbox_allocation.domain.enums import Role
from inbox_allocation.services.allocation import AllocationService
from inbox_allocation.services.inboxes import InboxService
from inbox_allocation.services.labels import LabelService
from inbox_allocation.services.lifecycle import LifecycleService
from inbox_allocation.services.operators import OperatorService
from inbox_allocation.services.subscriptions import SubscriptionService
from tests.support.interleave import Actor, actors, holder

TENANT = UUID(ACME)
OP4 = UUID(ACME_OP4)  # AVAILABLE, subscribed to Sales only, holds conversation 5
OP5 = UUID(ACME_OP5)  # AVAILABLE, subscribed to Sales
SALES = UUID(INBOX_SALES)
SUPPORT = UUID(INBOX_SUPPORT)
HELD = UUID(conversation(5))  # ALLOCATED to OP4, in Sales
QUEUED_IN_SALES = UUID(conversation(3))  # QUEUED, in Sales, no label

LOCK_STATUS_ROW = (
    f"SELECT 1 FROM operator_status WHERE tenant_id = '{ACME}' AND operator_id = $1 FOR UPDATE"
)


def no_database_error(outcome: Any) -> None:
    """Business answers (a domain error such as 404/409) are fine; a database error is not."""
    assert not isinstance(outcome, asyncpg.PostgresError), repr(outcome)
    assert not isinstance(outcome, AssertionError), repr(outcome)


async def allocated_outside_subscriptions(db: asyncpg.Pool) -> list[asyncpg.Record]:
    """ALLOCATED conversations whose operator is not subscribed to their inbox."""
    return await db.fetch(
        """
        SELECT c.id, c.assigned_operator_id, c.inbox_id FROM conversation_refs c
        WHERE c.tenant_id = $1 AND c.state = 'ALLOCATED'
          AND NOT EXISTS (SELECT 1 FROM operator_inbox_subscriptions s
                          WHERE s.tenant_id = $1 AND s.operator_id = c.assigned_operator_id
                            AND s.inbox_id = c.inbox_id)
        """,
        TENANT,
    )


def _take(actor: Actor, how: str) -> Callable[[], Awaitable[Any]]:
    service = AllocationService(actor.db)
    if how == "allocate":
        return lambda: service.allocate_next(tenant_id=TENANT, operator_id=OP4)
    return lambda: service.claim(tenant_id=TENANT, operator_id=OP4, conversation_id=QUEUED_IN_SALES)


@pytest.mark.parametrize("how", ["allocate", "claim"])
async def test_f1_inbox_delete_while_its_subscriber_takes_a_conversation(
    dsn: str, db: asyncpg.Pool, how: str
) -> None:
    """F1: the delete removes the inbox's subscriptions and then its conversations; the
    allocation (or claim) holds a conversation of the inbox and wants the subscription."""
    async with actors(dsn, "delete", how) as sessions, holder(dsn) as hold:
        # Keeps the delete from reaching the conversations until both are under way.
        await hold.hold(
            "SELECT 1 FROM conversation_refs WHERE tenant_id = $1 AND inbox_id = $2"
            " FOR KEY SHARE",
            TENANT, SALES,
        )  # fmt: skip
        deleter, taker = sessions["delete"], sessions[how]
        delete = InboxService(deleter.db).delete
        await deleter.start(lambda: delete(tenant_id=TENANT, inbox_id=SALES), db)
        await taker.start(_take(taker, how), db)
        await hold.commit()
        deleted, taken = await deleter.outcome(), await taker.outcome()
    assert deleted is None, repr(deleted)
    no_database_error(taken)
    assert await db.fetchval("SELECT count(*) FROM inboxes WHERE id = $1", SALES) == 0
    assert (
        await db.fetchval("SELECT count(*) FROM conversation_refs WHERE inbox_id = $1", SALES) == 0
    )


def _lifecycle(actor: Actor, how: str) -> Callable[[], Awaitable[Any]]:
    service = LifecycleService(actor.db)
    if how == "resolve":
        return lambda: service.resolve(
            tenant_id=TENANT, operator_id=OP4, manager=False, conversation_id=HELD
        )
    if how == "deallocate":
        return lambda: service.deallocate(tenant_id=TENANT, manager=True, conversation_id=HELD)
    if how == "reassign":
        return lambda: service.reassign(
            tenant_id=TENANT, manager=True, conversation_id=HELD, target_operator_id=OP5
        )
    return lambda: service.move_to_inbox(
        tenant_id=TENANT, manager=True, conversation_id=HELD, target_inbox_id=SUPPORT
    )


@pytest.mark.parametrize("how", ["resolve", "deallocate", "reassign", "move"])
async def test_f2_operator_delete_while_its_conversation_changes(
    dsn: str, db: asyncpg.Pool, how: str
) -> None:
    """F2: the delete holds the operator's status row and re-queues its conversations; the
    lifecycle call holds one of them and wants the status row."""
    async with actors(dsn, "delete", how) as sessions, holder(dsn) as hold:
        await hold.hold(LOCK_STATUS_ROW, OP4)  # both queue up behind this, delete first
        deleter, changer = sessions["delete"], sessions[how]
        delete = OperatorService(deleter.db).delete
        await deleter.start(
            lambda: delete(tenant_id=TENANT, caller_id=UUID(ACME_ADMIN), operator_id=OP4), db
        )
        await changer.start(_lifecycle(changer, how), db)
        await hold.commit()
        deleted, changed = await deleter.outcome(), await changer.outcome()
    assert deleted is None, repr(deleted)
    no_database_error(changed)
    assert await db.fetchval("SELECT count(*) FROM operators WHERE id = $1", OP4) == 0
    row = await db.fetchrow(
        "SELECT state::text AS state, assigned_operator_id FROM conversation_refs WHERE id = $1",
        HELD,
    )
    assert row is not None
    assert row["assigned_operator_id"] != OP4 or row["state"] == "RESOLVED"
    assert await allocated_outside_subscriptions(db) == []


async def test_f3_allocate_unsubscribe_and_resolve_of_one_operator(
    dsn: str, db: asyncpg.Pool
) -> None:
    """F3: allocation holds the status row and wants the subscription, unsubscribe holds the
    subscription and wants the held conversation, resolve holds that conversation and wants
    the status row."""
    async with (
        actors(dsn, "allocate", "resolve", "unsubscribe") as sessions,
        holder(dsn) as hold,
    ):
        await hold.hold(LOCK_STATUS_ROW, OP4)
        allocator, resolver, leaver = (sessions[n] for n in ("allocate", "resolve", "unsubscribe"))
        allocate = AllocationService(allocator.db).allocate_next
        unsubscribe = SubscriptionService(leaver.db).unsubscribe
        await allocator.start(lambda: allocate(tenant_id=TENANT, operator_id=OP4), db)
        await resolver.start(_lifecycle(resolver, "resolve"), db)
        await leaver.start(
            lambda: unsubscribe(tenant_id=TENANT, inbox_id=SALES, operator_id=OP4), db
        )
        await hold.commit()
        outcomes = [await a.outcome() for a in (allocator, resolver, leaver)]
    for outcome in outcomes:
        no_database_error(outcome)
    assert outcomes[2] is None
    assert await allocated_outside_subscriptions(db) == []


async def assigned_to_missing_operators(db: asyncpg.Pool) -> list[asyncpg.Record]:
    """Conversations whose assignee does not exist (no foreign key checks it: migration 0012,
    the status-row rule of sql/locking.py does)."""
    return await db.fetch(
        """
        SELECT c.id, c.state::text AS state, c.assigned_operator_id FROM conversation_refs c
        WHERE c.tenant_id = $1 AND c.assigned_operator_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM operators o
                          WHERE o.tenant_id = c.tenant_id AND o.id = c.assigned_operator_id)
        """,
        TENANT,
    )


@pytest.mark.parametrize("first", ["delete", "take"])
@pytest.mark.parametrize("how", ["allocate", "claim"])
async def test_operator_delete_while_it_takes_a_conversation(
    dsn: str, db: asyncpg.Pool, how: str, first: str
) -> None:
    """Without a foreign key on the assignee, the status row alone keeps a conversation from
    being given to an operator that is being deleted: whichever gets the row first, the
    operator ends up deleted and no conversation points at it."""
    async with actors(dsn, "delete", how) as sessions, holder(dsn) as hold:
        await hold.hold(LOCK_STATUS_ROW, OP4)  # both queue up behind this, in `first` order
        deleter, taker = sessions["delete"], sessions[how]
        delete = OperatorService(deleter.db).delete
        order = [(deleter, lambda: delete(tenant_id=TENANT, caller_id=UUID(ACME_ADMIN),
                                           operator_id=OP4)),
                 (taker, _take(taker, how))]  # fmt: skip
        for actor, call in order if first == "delete" else reversed(order):
            await actor.start(call, db)
        await hold.commit()
        deleted, taken = await deleter.outcome(), await taker.outcome()
    assert deleted is None, repr(deleted)
    no_database_error(taken)
    assert await db.fetchval("SELECT count(*) FROM operators WHERE id = $1", OP4) == 0
    assert await assigned_to_missing_operators(db) == []


async def test_f8_reassign_to_an_operator_who_unsubscribes_meanwhile(
    dsn: str, db: asyncpg.Pool
) -> None:
    """F8: reassign checks the target's subscription, a concurrent unsubscribe of the target
    commits, then the reassign commits: the conversation must not end up ALLOCATED to an
    operator that is not subscribed to its inbox."""
    async with actors(dsn, "reassign", "unsubscribe") as sessions, holder(dsn) as hold:
        # Holds the reassign at its last step, once it holds the target's status row: the
        # statement that assigns also writes the event, whose foreign-key check takes the
        # tenant row FOR KEY SHARE.
        await hold.hold("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", TENANT)
        reassigner, leaver = sessions["reassign"], sessions["unsubscribe"]
        unsubscribe = SubscriptionService(leaver.db).unsubscribe
        await reassigner.start(_lifecycle(reassigner, "reassign"), db)
        await leaver.start(
            lambda: unsubscribe(tenant_id=TENANT, inbox_id=SALES, operator_id=OP5), db
        )
        await hold.commit()
        reassigned, left = await reassigner.outcome(), await leaver.outcome()
    no_database_error(reassigned)
    assert left is None, repr(left)
    assert await allocated_outside_subscriptions(db) == []


async def test_f9_label_attach_while_the_conversation_moves(dsn: str, db: asyncpg.Pool) -> None:
    """F9: attach checks the label against the conversation's inbox, the move to another
    inbox (which detaches the old inbox's labels) commits, then the attach inserts: the
    conversation must not keep a label of its old inbox."""
    sales_label = UUID(label(2))
    async with actors(dsn, "attach", "move") as sessions, holder(dsn) as hold:
        # The same attachment, uncommitted: the attach's insert waits for it.
        await hold.hold(
            "INSERT INTO conversation_labels (tenant_id, conversation_id, label_id)"
            " VALUES ($1, $2, $3)",
            TENANT, QUEUED_IN_SALES, sales_label,
        )  # fmt: skip
        attacher, mover = sessions["attach"], sessions["move"]
        attach = LabelService(attacher.db).attach
        move = LifecycleService(mover.db).move_to_inbox
        await attacher.start(
            lambda: attach(
                tenant_id=TENANT, operator_id=UUID(ACME_ADMIN), role=Role.MANAGER,
                conversation_id=QUEUED_IN_SALES, label_id=sales_label,
            ),
            db,
        )  # fmt: skip
        await mover.start(
            lambda: move(
                tenant_id=TENANT, manager=True, conversation_id=QUEUED_IN_SALES,
                target_inbox_id=SUPPORT,
            ),
            db,
        )  # fmt: skip
        await hold.rollback()
        attached, moved = await attacher.outcome(), await mover.outcome()
    no_database_error(attached)
    no_database_error(moved)
    foreign = await db.fetch(
        """
        SELECT cl.label_id FROM conversation_labels cl
        JOIN conversation_refs c ON c.id = cl.conversation_id
        JOIN labels l ON l.id = cl.label_id
        WHERE c.id = $1 AND l.inbox_id <> c.inbox_id
        """,
        QUEUED_IN_SALES,
    )
    assert foreign == []
