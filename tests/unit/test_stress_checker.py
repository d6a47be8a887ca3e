"""The stress checker on hand-made event logs: it passes a clean history and catches each kind
of violation (so a green stress run means something). No database, no service."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import pytest

from stress.checker import Intervals, Op, check
from stress.eventlog import Event
from stress.model import (
    ConversationRow,
    FinalRows,
    GraceRow,
    OperatorRow,
    OperatorSpec,
    TenantSpec,
    World,
)
from stress.soak import Sample, evaluate

pytestmark = pytest.mark.no_db

T1 = "11111111-0000-4000-8000-000000000001"
T2 = "11111111-0000-4000-8000-000000000002"
INBOX1 = "22222222-0000-4000-8000-000000000001"
INBOX1B = "22222222-0000-4000-8000-000000000003"
INBOX2 = "22222222-0000-4000-8000-000000000002"
ALICE = "33333333-0000-4000-8000-000000000001"  # OPERATOR
BOB = "33333333-0000-4000-8000-000000000002"  # OPERATOR, capacity 1
MANAGER = "33333333-0000-4000-8000-000000000003"
GATEWAY = "33333333-0000-4000-8000-000000000004"
EVE = "33333333-0000-4000-8000-000000000009"  # tenant 2
C1 = "44444444-0000-4000-8000-000000000001"
C2 = "44444444-0000-4000-8000-000000000002"
C9 = "44444444-0000-4000-8000-000000000009"  # tenant 2's conversation

WORLD = World(
    tenants=(
        TenantSpec(
            id=T1,
            name="one",
            alpha=0.5,
            beta=0.5,
            inboxes=(INBOX1, INBOX1B),
            operators=(
                OperatorSpec(ALICE, T1, "OPERATOR", None, "AVAILABLE", (INBOX1,)),
                OperatorSpec(BOB, T1, "OPERATOR", 1, "AVAILABLE", (INBOX1,)),
                OperatorSpec(MANAGER, T1, "MANAGER", None, "AVAILABLE", (INBOX1, INBOX1B)),
                OperatorSpec(GATEWAY, T1, "MANAGER", None, "OFFLINE", (), gateway=True),
            ),
        ),
        TenantSpec(
            id=T2,
            name="two",
            alpha=0.5,
            beta=0.5,
            inboxes=(INBOX2,),
            operators=(OperatorSpec(EVE, T2, "OPERATOR", None, "AVAILABLE", (INBOX2,)),),
        ),
    )
)

_seq = itertools.count(1)


def event(
    operator: str,
    method: str,
    path: str,
    *,
    at: float,
    took: float = 0.01,
    status: int | None = 200,
    body: dict[str, Any] | None = None,
    data: Any = None,
    code: str | None = None,
    key: str | None = None,
    replayed: bool = False,
    sha: str | None = None,
    ids: list[str] | None = None,
    action: str | None = None,
    tenant: str = T1,
) -> Event:
    return Event(
        seq=next(_seq),
        action=action or path.rsplit("/", 1)[-1],
        tenant=tenant,
        operator=operator,
        method=method,
        path=path,
        body=body,
        idem_key=key,
        t_send=at,
        t_recv=None if status is None else at + took,
        wall_send=at,
        wall_recv=None if status is None else at + took,
        status=status,
        code=code,
        replayed=replayed,
        data=data,
        body_sha256=sha if key else None,
        body_ids=ids or [],
        error="ReadTimeout" if status is None else None,
    )


def conv(
    conversation: str, state: str, operator: str | None, *, count: int = 1, inbox: str = INBOX1
) -> dict[str, Any]:
    return {
        "id": conversation,
        "tenant_id": T1,
        "inbox_id": inbox,
        "external_conversation_id": f"ext-{conversation[-1]}",
        "state": state,
        "assigned_operator_id": operator,
        "message_count": count,
        "resolved_at": "2026-01-01T00:00:00Z" if state == "RESOLVED" else None,
    }


def ingest(conversation: str, *, at: float, status: int = 201, count: int = 1, **kw: Any) -> Event:
    body = {
        "inbox_id": INBOX1,
        "external_conversation_id": f"ext-{conversation[-1]}",
        "customer_phone_number": "+14155550100",
    }
    return event(
        GATEWAY,
        "POST",
        "/api/v1/conversations",
        at=at,
        status=status,
        body=body,
        data=conv(conversation, "QUEUED", None, count=count),
        action="ingest_new" if status == 201 else "ingest_message",
        **kw,
    )


def allocate(operator: str, conversation: str, *, at: float, took: float = 0.01) -> Event:
    return event(
        operator,
        "POST",
        "/api/v1/allocate",
        at=at,
        took=took,
        data=conv(conversation, "ALLOCATED", operator),
    )


def lifecycle(
    route: str, operator: str, conversation: str, data: dict[str, Any], *, at: float, **kw: Any
) -> Event:
    body = {"conversation_id": conversation, **kw.pop("extra", {})}
    return event(operator, "POST", f"/api/v1/{route}", at=at, body=body, data=data, **kw)


def status(operator: str, value: str, *, at: float) -> Event:
    return event(
        operator,
        "PUT",
        "/api/v1/operator/status",
        at=at,
        body={"status": value},
        data={"operator_id": operator, "status": value},
        action=f"status_{value.lower()}",
    )


def row(
    conversation: str,
    state: str,
    operator: str | None,
    *,
    count: int = 1,
    resolved: bool | None = None,
    tenant: str = T1,
    inbox: str = INBOX1,
) -> ConversationRow:
    resolved_at = (
        "2026-01-01T00:00:00+00:00"
        if (resolved if resolved is not None else state == "RESOLVED")
        else None
    )
    return ConversationRow(
        id=conversation,
        tenant_id=tenant,
        inbox_id=inbox,
        external_id=f"ext-{conversation[-1]}",
        state=state,
        operator=operator,
        message_count=count,
        resolved_at=resolved_at,
    )


def operators(**statuses: str) -> tuple[OperatorRow, ...]:
    base = {ALICE: "AVAILABLE", BOB: "AVAILABLE", MANAGER: "AVAILABLE", GATEWAY: "OFFLINE"}
    names = {"alice": ALICE, "bob": BOB, "manager": MANAGER}
    for name, value in statuses.items():
        base[names[name]] = value
    caps = {BOB: 1}
    rows = [OperatorRow(i, T1, s, caps.get(i)) for i, s in base.items()]
    return (*rows, OperatorRow(EVE, T2, "AVAILABLE", None))


def final(*rows: ConversationRow, grace: tuple[GraceRow, ...] = (), **statuses: str) -> FinalRows:
    return FinalRows(
        conversations=rows,
        grace=grace,
        operators=operators(**statuses),
        inboxes={INBOX1: T1, INBOX1B: T1, INBOX2: T2},
        taken_at=100.0,  # after every synthetic request
        taken_until=100.1,
    )


def clean_history() -> tuple[list[Event], FinalRows]:
    """C1: ingested, allocated to Alice, resolved, reopened by a message, claimed by Bob.
    C2: ingested, allocated to Alice, who went OFFLINE; later allocated to the manager."""
    events = [
        ingest(C1, at=0.0),
        ingest(C2, at=0.1),
        allocate(ALICE, C1, at=1.0),
        lifecycle("resolve", ALICE, C1, conv(C1, "RESOLVED", ALICE), at=2.0),
        ingest(C1, at=3.0, status=200, count=2),
        lifecycle("claim", BOB, C1, conv(C1, "ALLOCATED", BOB, count=2), at=4.0),
        allocate(ALICE, C2, at=5.0),
        status(ALICE, "OFFLINE", at=6.0),
        allocate(MANAGER, C2, at=9.0),
    ]
    rows = (row(C1, "ALLOCATED", BOB, count=2), row(C2, "ALLOCATED", MANAGER))
    return events, final(*rows, alice="OFFLINE")


def violations(events: list[Event], rows: FinalRows) -> dict[str, int]:
    report = check(events, WORLD, rows)
    return {r.key: r.violations for r in report.invariants if r.violations}


def test_clean_history_passes() -> None:
    events, rows = clean_history()
    report = check(events, WORLD, rows)
    assert report.violations == 0, [r.examples for r in report.invariants if r.violations]
    assert report.totals.requests == len(events)
    assert "1 acquisitions" in report.result("2").note  # C2's handover by the sweeper


def test_server_error_and_unanswered_request() -> None:
    events, rows = clean_history()
    events.append(event(ALICE, "GET", "/api/v1/conversations", at=10.0, status=500))
    events.append(event(ALICE, "GET", "/api/v1/operator/status", at=10.0, status=None))
    assert violations(events, rows) == {"1": 1, "1b": 1}


def test_allocation_of_a_held_conversation_is_caught() -> None:
    events = [ingest(C1, at=0.0), allocate(ALICE, C1, at=1.0), allocate(BOB, C1, at=2.0)]
    rows = final(row(C1, "ALLOCATED", BOB))
    assert violations(events, rows) == {"2": 1}


def test_concurrent_double_allocation_is_caught() -> None:
    events = [
        ingest(C1, at=0.0),
        allocate(ALICE, C1, at=1.0, took=0.5),
        allocate(BOB, C1, at=1.2, took=0.5),
    ]
    rows = final(row(C1, "ALLOCATED", BOB))
    assert violations(events, rows) == {"2": 1}


def _deallocated() -> Event:
    return lifecycle("deallocate", MANAGER, C1, conv(C1, "QUEUED", None), at=1.5)


def _resolved() -> Event:
    return lifecycle("resolve", ALICE, C1, conv(C1, "RESOLVED", ALICE), at=1.5)


def _went_offline() -> Event:
    return status(ALICE, "OFFLINE", at=1.5)


def _unanswered_deallocate() -> Event:
    """No answer: it may have taken effect at any time after it was sent."""
    body = {"conversation_id": C1}
    return event(MANAGER, "POST", "/api/v1/deallocate", at=1.5, status=None, body=body)


@pytest.mark.parametrize(
    "between", [_deallocated, _resolved, _went_offline, _unanswered_deallocate]
)
def test_a_possible_release_in_between_explains_the_second_holder(between: Any) -> None:
    events = [ingest(C1, at=0.0), allocate(ALICE, C1, at=1.0), between(), allocate(BOB, C1, at=2.0)]
    rows = final(row(C1, "ALLOCATED", BOB), alice="OFFLINE")
    assert "2" not in violations(events, rows)


def test_a_release_certainly_before_the_first_hold_explains_nothing() -> None:
    events = [
        ingest(C1, at=0.0),
        lifecycle("deallocate", MANAGER, C1, conv(C1, "QUEUED", None), at=0.5),
        allocate(ALICE, C1, at=1.0),
        allocate(BOB, C1, at=2.0),
    ]
    assert violations(events, final(row(C1, "ALLOCATED", BOB))) == {"2": 1}


def test_reassign_is_a_transfer_but_its_target_holds() -> None:
    reassign = lifecycle(
        "reassign",
        MANAGER,
        C1,
        conv(C1, "ALLOCATED", BOB),
        at=2.0,
        extra={"operator_id": BOB},
    )
    events = [ingest(C1, at=0.0), allocate(ALICE, C1, at=1.0), reassign]
    rows = final(row(C1, "ALLOCATED", BOB))
    assert violations(events, rows) == {}
    # …and the new holder's hold counts: a third operator may not allocate it.
    events.append(allocate(MANAGER, C1, at=3.0))
    assert violations(events, final(row(C1, "ALLOCATED", MANAGER))) == {"2": 1}


def test_rows_must_agree_with_the_answers() -> None:
    events, _ = clean_history()
    # The answers say Bob claimed C1 and nothing took it from him; the row says otherwise.
    lost_claim = final(row(C1, "QUEUED", None, count=2), row(C2, "ALLOCATED", MANAGER))
    assert violations(events, lost_claim) == {"12": 1}
    resolved = [ingest(C1, at=0.0), allocate(ALICE, C1, at=1.0)]
    resolved.append(lifecycle("resolve", ALICE, C1, conv(C1, "RESOLVED", ALICE), at=2.0))
    assert violations(resolved, final(row(C1, "ALLOCATED", ALICE, resolved=True))) == {
        "3": 1,
        "12": 1,
    }
    # a snapshot taken while the claim was in flight may show either state
    in_flight = replace(lost_claim, taken_at=4.005, taken_until=4.006)
    final_rows = final(row(C1, "ALLOCATED", BOB, count=2), row(C2, "ALLOCATED", MANAGER))
    assert check(events, WORLD, final_rows, [in_flight]).violations == 0
    late = replace(in_flight, taken_at=4.5, taken_until=4.6)
    assert check(events, WORLD, final_rows, [late]).result("12").violations == 1


def test_final_row_states() -> None:
    events = [ingest(C1, at=0.0), ingest(C2, at=0.0)]
    rows = final(row(C1, "ALLOCATED", None), row(C2, "QUEUED", ALICE, resolved=True))
    report = check(events, WORLD, rows)
    assert report.result("3").violations == 2
    assert "ALLOCATED without operator" in report.result("3").examples[0]
    assert "QUEUED with operator" in report.result("3").examples[1]


def test_response_showing_the_wrong_state() -> None:
    events = [
        ingest(C1, at=0.0),
        event(ALICE, "POST", "/api/v1/allocate", at=1.0, data=conv(C1, "QUEUED", None)),
    ]
    # (the row also disagrees with the 200: invariant 12)
    assert violations(events, final(row(C1, "QUEUED", None))) == {"3b": 1, "12": 1}


def test_lost_duplicated_and_phantom_conversations() -> None:
    events = [ingest(C1, at=0.0), ingest(C2, at=0.1)]
    lost = final(row(C2, "QUEUED", None))
    assert violations(events, lost) == {"4": 1}
    phantom = final(
        row(C1, "QUEUED", None), row(C2, "QUEUED", None), row(C9[:-1] + "7", "QUEUED", None)
    )
    assert violations(events, phantom) == {"4": 1}
    twice = [ingest(C1, at=0.0), ingest(C1, at=1.0, count=2)]  # two 201s for one external id
    assert violations(twice, final(row(C1, "QUEUED", None, count=2))) == {"4": 1}
    other_id = [
        ingest(C1, at=0.0),
        replace(ingest(C2, at=1.0, status=200, count=2), body=twice[0].body),
    ]
    assert violations(other_id, final(row(C1, "QUEUED", None, count=2)))["4"] >= 1


def test_message_count_counts_executions_not_replays() -> None:
    first = ingest(C1, at=0.0, key="k1", sha="aa")
    replay = replace(ingest(C1, at=1.0, key="k1", sha="aa", replayed=True), seq=next(_seq))
    second = ingest(C1, at=2.0, status=200, count=2)
    events = [first, replay, second]
    assert violations(events, final(row(C1, "QUEUED", None, count=2))) == {}
    assert violations(events, final(row(C1, "QUEUED", None, count=3))) == {"5": 1}
    # two ingests answering the same count: one update was lost
    lost_update = [first, ingest(C1, at=2.0, status=200, count=1)]
    assert violations(lost_update, final(row(C1, "QUEUED", None, count=2))) == {"5": 1}


def test_grace_rows() -> None:
    events, _ = clean_history()
    rows = (row(C1, "ALLOCATED", BOB, count=2), row(C2, "ALLOCATED", MANAGER))
    grace_for_available = final(*rows, grace=(GraceRow(C1, BOB, -1.0),), alice="OFFLINE")
    assert violations(events, grace_for_available) == {"6": 1}
    events = events[:-1]  # C2 stays with Alice, who went OFFLINE
    orphan = final(row(C1, "ALLOCATED", BOB, count=2), row(C2, "ALLOCATED", ALICE), alice="OFFLINE")
    assert violations(events, orphan) == {"6": 1}
    stale = final(
        *rows[:1], row(C2, "ALLOCATED", ALICE), grace=(GraceRow(C2, ALICE, 60.0),), alice="OFFLINE"
    )
    assert violations(events, stale) == {"6": 1}


def test_grace_row_outliving_its_allocation_is_a_violation() -> None:
    events, _ = clean_history()
    rows = final(
        row(C1, "ALLOCATED", BOB, count=2),
        row(C2, "ALLOCATED", MANAGER),
        grace=(GraceRow(C2, ALICE, -1.0),),  # Alice's row, but the manager holds C2
        alice="OFFLINE",
    )
    assert violations(events, rows) == {"6b": 1}
    assert check(events, WORLD, rows).violations == 1  # fixed in the service: counted


def test_tenant_isolation() -> None:
    events, rows = clean_history()
    leak = event(
        ALICE, "GET", "/api/v1/conversations", at=10.0, data={"conversations": []}, ids=[C1, INBOX2]
    )
    assert violations([*events, leak], rows) == {"7": 1}
    # an id the caller sent itself is no leak (e.g. echoed in an error message)
    echo = event(
        ALICE,
        "POST",
        "/api/v1/claim",
        at=10.0,
        status=404,
        code="NOT_FOUND",
        body={"conversation_id": INBOX2},
        ids=[INBOX2],
    )
    assert violations([*events, echo], rows) == {}
    probe = event(
        EVE,
        "POST",
        "/api/v1/claim",
        at=10.0,
        tenant=T2,
        action="probe_claim",
        body={"conversation_id": C1},
        data=conv(C1, "ALLOCATED", EVE),
    )
    assert violations([*events, probe], rows)["7"] == 2  # foreign data and a successful probe
    mixed = final(
        row(C1, "ALLOCATED", BOB, count=2, inbox=INBOX2),
        row(C2, "ALLOCATED", MANAGER),
        alice="OFFLINE",
    )
    assert violations(events, mixed) == {"7": 1}
    foreign_holder = final(
        row(C1, "ALLOCATED", EVE, count=2), row(C2, "ALLOCATED", MANAGER), alice="OFFLINE"
    )
    assert violations(events, foreign_holder)["7"] == 1


def test_capacity() -> None:
    events = [
        ingest(C1, at=0.0),
        ingest(C2, at=0.1),
        allocate(BOB, C1, at=1.0),
        allocate(BOB, C2, at=2.0),
    ]
    rows = final(row(C1, "ALLOCATED", BOB), row(C2, "ALLOCATED", BOB))
    assert violations(events, rows) == {"8": 2}  # by replay, and in the final rows
    resolved = lifecycle("resolve", BOB, C1, conv(C1, "RESOLVED", BOB), at=1.5)
    rows = final(row(C1, "RESOLVED", BOB), row(C2, "ALLOCATED", BOB))
    assert violations([*events[:3], resolved, events[3]], rows) == {}


def test_allocation_while_busy() -> None:
    events = [ingest(C1, at=0.0), status(ALICE, "BUSY", at=0.5), allocate(ALICE, C1, at=1.0)]
    rows = final(row(C1, "ALLOCATED", ALICE), alice="BUSY")
    assert violations(events, rows) == {"9": 1}
    back = status(ALICE, "AVAILABLE", at=0.7)
    assert violations([*events[:2], back, events[2]], final(row(C1, "ALLOCATED", ALICE))) == {}


def test_idempotency_replays_must_be_identical_and_execute_once() -> None:
    first = status(ALICE, "BUSY", at=0.0)
    first.idem_key, first.body_sha256 = "k", "aaaa"
    same = replace(first, seq=next(_seq), t_send=1.0, t_recv=1.01, replayed=True)
    other = replace(same, seq=next(_seq), body_sha256="bbbb")
    rows = final(alice="BUSY")
    assert violations([first, same], rows) == {}
    assert violations([first, other], rows) == {"10": 1}
    executed_twice = replace(same, seq=next(_seq), replayed=False)
    assert violations([first, executed_twice], rows) == {"10": 1}


def op(start: float, end: float) -> Op:
    return Op("resolve", "resolve", T1, ALICE, None, start, end, "ok", 200, None, None, [])


def test_intervals_answer_overlap_queries_with_exclusions() -> None:
    a, b, c = op(0, 1), op(2, 3), op(5, float("inf"))
    intervals = Intervals([c, a, b])
    assert intervals.any_within(0.5, 0.6) is a
    assert intervals.any_within(1.5, 1.9) is None
    assert intervals.any_within(2.5, 10, exclude=(b,)) is c
    assert intervals.any_within(100, 200) is c  # unknown outcome: may land any time later
    assert intervals.any_within(-5, -1) is None
    assert intervals.max_end_before(2.5) == 3
    assert intervals.max_end_before(2.5, rank=1) == 1


def sample(t: float, rss_mib: float, dead: int, conns: int = 10, size: int = 10 << 20) -> Sample:
    return Sample(
        t=t,
        requests=int(t * 100),
        rss_kb={"100 worker": int(rss_mib * 1024), "101 worker": 80 * 1024},
        db={"service_connections": conns, "dead_tuples": dead, "conversation_bytes": size},
    )


def test_soak_flat_curves_pass_and_growth_fails() -> None:
    flat = [
        sample(t, 80 + (t % 20) / 10, dead=int(3000 + (t % 60) * 50)) for t in range(0, 601, 10)
    ]
    assert all(v.ok for v in evaluate(flat, pool_limit=50)), evaluate(flat, pool_limit=50)
    leak = [replace(s, rss_kb={**s.rss_kb, "100 worker": int((80 + s.t / 6) * 1024)}) for s in flat]
    assert {v.name for v in evaluate(leak, pool_limit=50) if not v.ok} == {"rss"}
    dead = [replace(s, db={**s.db, "dead_tuples": int(s.t * 200)}) for s in flat]
    assert {v.name for v in evaluate(dead, pool_limit=50) if not v.ok} == {"dead-tuples-bounded"}
    crash = [*flat[:-3], *(replace(s, rss_kb={"101 worker": 80 * 1024}) for s in flat[-3:])]
    assert {v.name for v in evaluate(crash, pool_limit=50) if not v.ok} == {"rss"}
    bloat = [
        replace(s, db={**s.db, "conversation_bytes": int((1 + s.t / 100) * 2**20)}) for s in flat
    ]
    assert {v.name for v in evaluate(bloat, pool_limit=50) if not v.ok} == {
        "conversation-table-size"
    }
    # Index bloat approaching its equilibrium, like the measured soak (3 -> 11 MiB at 2000
    # rows): more than 1.25 x between half-time and the end, but slowing down.
    converging = [
        replace(s, db={**s.db, "conversation_bytes": int((3 + 8 * (1 - math.exp(-s.t / 250)))
                                                          * 2**20)})
        for s in flat
    ]  # fmt: skip
    assert all(v.ok for v in evaluate(converging, pool_limit=50)), evaluate(
        converging, pool_limit=50
    )
    too_many = [replace(s, db={**s.db, "service_connections": 60}) for s in flat]
    assert "db-connections-limit" in {v.name for v in evaluate(too_many, pool_limit=50) if not v.ok}


def quiet(answer: str | None, *, score: float | None = None, status: int = 200) -> Event:
    expect = {
        "check": "quiet_allocation",
        "queued": 2,
        "top": 0.5,
        "priorities": {C1: 0.5, C2: 0.3},
    }
    data = None
    if answer is not None:
        data = {**conv(answer, "ALLOCATED", ALICE), "priority_score": score}
    code = None if status == 200 else "NO_CONVERSATIONS_AVAILABLE"
    allocation = event(
        ALICE, "POST", "/api/v1/allocate", at=20.0, status=status, data=data, code=code
    )
    allocation.expect = expect
    return allocation


def test_quiet_allocation_must_pick_the_top_priority() -> None:
    events = [ingest(C1, at=0.0), ingest(C2, at=0.1)]
    rows = final(row(C1, "QUEUED", None), row(C2, "QUEUED", None))
    assert violations([*events, quiet(C1, score=0.5)], rows).get("11") is None
    assert violations([*events, quiet(C2, score=0.3)], rows).get("11") == 1
    assert violations([*events, quiet(None, status=404)], rows).get("11") == 1
    assert violations([*events, quiet(C1, score=0.42)], rows).get("11") == 1  # wrong score
