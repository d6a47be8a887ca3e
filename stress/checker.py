"""The invariant checker: a pure function of the event log, the world and the final rows.

    report = check(events, world, final_rows)

Only happens-before relations that are certain are used: X certainly happened before Y when
X's response was received before Y's request was sent (`X.end < Y.start`, one monotonic
clock). A request's effect lies somewhere inside [start, end]; a request without a
definitive answer (transport error, 5xx, IDEMPOTENCY_KEY_IN_PROGRESS) may have taken effect
at any time after it was sent (`end = inf`). Requests sharing an Idempotency-Key form one
logical operation (one execution at most): start = first send, end = first definitive answer.

Invariants (each reported with a count and the first few violating examples):

 1  no-5xx               no response with status >= 500
 1b all-answered         every request got a response (no transport error / timeout)
 2  exclusive-holding    no conversation held by two operators at once: for two successful
                         acquisitions (allocate/claim 200, or reassign 200 for its target) of
                         one conversation by different operators, some order of the two must
                         be explained by a release (resolve, deallocate, reassign, move_inbox
                         — successful or of unknown outcome) or by a possible grace release
                         (the first holder possibly went OFFLINE) in between, or by an
                         unsubscribe or delete of the first holder, or a delete of the inbox;
                         a reassign as the second acquisition is a transfer and needs none
 3  final-states         ALLOCATED => operator set; QUEUED => operator NULL; resolved_at set
                         iff RESOLVED (RESOLVED keeps its last operator)
 3b response-states      every 2xx lifecycle response shows the state its route promises
 4  no-lost-or-duplicated every conversation id returned by ingestion exists exactly once,
                         one row per (tenant, external id), one id per external id, no row
                         that was never ingested, at most one 201 per external id (a
                         conversation of a deleted inbox may be gone)
 5  message-counts       message_count == successful (2xx, not replayed) ingest operations
                         (+ at most the ingests of unknown outcome); no two ingests of one
                         conversation report the same count
 6  grace-rows           no grace row for an operator that is not OFFLINE; an ALLOCATED
                         conversation of an OFFLINE operator has a grace row; no grace row
                         long expired (final rows)
 6b grace-allocation     a grace row's conversation is ALLOCATED to the row's operator
 7  tenant-isolation     no response contains an id of another tenant that the caller did
                         not send itself; no 2xx data of another tenant; cross-tenant probes
                         never succeed; final rows never mix tenants
 8  capacity             a capped operator never got a conversation by allocate/claim while
                         it certainly held its maximum (replay), nor holds more at the end
 9  status-respected     no allocate/claim succeeded while its operator was certainly BUSY or
                         OFFLINE
10  idempotency          all definitive answers to one key are identical (status and body
                         bytes), at most one is not a replay, never IDEMPOTENCY_KEY_REUSED
12  rows-agree           the rows (every snapshot and the final rows) agree with the answers:
                         a conversation certainly acquired by H before the snapshot, with no
                         possible release, grace expiry or other acquisition since, is
                         ALLOCATED to H; one certainly resolved, with no possible ingest
                         (reopen) since, is RESOLVED
11  quiet-allocation     after the load, with nothing else running: /allocate answers 200
                         (never a false NO_CONVERSATIONS_AVAILABLE) with a conversation whose
                         live priority (docs/decisions.md#live-priority, computed by the harness
                         from the rows
                         just before) is the highest of the caller's QUEUED ones, and reports
                         that priority as priority_score
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stress.eventlog import UUID_PATTERN, Event
from stress.model import ConversationRow, FinalRows, World

INF = math.inf
MAX_EXAMPLES = 5
STALE_GRACE_MIN_SECONDS = 10.0
# Reported service defects: still checked and printed ([KNOWN]), but they do not fail a run
# unless `strict` (python -m stress.run --strict). Remove an entry once the defect is fixed.
# Empty: 6b (a grace row outliving its allocation when OFFLINE raced a lifecycle transition)
# was fixed by locking the holder's status row in those transitions.
KNOWN_DEFECTS: dict[str, str] = {}
PRIORITY_TOLERANCE = 1e-4  # the formula moves by beta/86400 per second between read and call

ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/conversations"): "ingest",
    ("POST", "/api/v1/allocate"): "allocate",
    ("POST", "/api/v1/claim"): "claim",
    ("POST", "/api/v1/resolve"): "resolve",
    ("POST", "/api/v1/deallocate"): "deallocate",
    ("POST", "/api/v1/reassign"): "reassign",
    ("POST", "/api/v1/move_inbox"): "move",
    ("PUT", "/api/v1/operator/status"): "status",
}
ACQUIRE_KINDS = frozenset({"allocate", "claim"})
RELEASE_KINDS = frozenset({"resolve", "deallocate", "reassign", "move"})
WRITE_KINDS = frozenset(ROUTES.values())
# Answers that say nothing about whether the operation took effect.
NOT_DEFINITIVE_CODES = frozenset({"IDEMPOTENCY_KEY_IN_PROGRESS"})


def route_kind(method: str, path: str) -> str:
    kind = ROUTES.get((method, path.rstrip("/") if path != "/" else path))
    if kind is not None:
        return kind
    return "read" if method == "GET" else "other"


def definitive(event: Event) -> bool:
    return (
        event.status is not None
        and event.status < 500
        and event.code not in NOT_DEFINITIVE_CODES
        and event.t_recv is not None
    )


# --- logical operations -----------------------------------------------------------------------


@dataclass(eq=False)
class Op:
    """One logical operation: a request, or all requests sharing an Idempotency-Key."""

    kind: str
    action: str
    tenant: str
    operator: str
    body: dict[str, Any] | None
    start: float
    end: float
    outcome: str  # ok (2xx) | rejected (4xx) | unknown
    status: int | None
    code: str | None
    data: Any
    events: list[Event]

    @property
    def seq(self) -> int:
        return self.events[0].seq

    def body_str(self, name: str) -> str | None:
        value = self.body.get(name) if isinstance(self.body, dict) else None
        return value.lower() if isinstance(value, str) else None

    def data_str(self, name: str) -> str | None:
        value = self.data.get(name) if isinstance(self.data, dict) else None
        return value.lower() if isinstance(value, str) else None

    @property
    def conversation(self) -> str | None:
        """The conversation the operation is about (allocate/ingest: the one answered)."""
        if self.kind in ("allocate", "ingest"):
            return self.data_str("id") if self.outcome == "ok" else None
        return self.body_str("conversation_id")

    @property
    def possibly_effective(self) -> bool:
        return self.outcome in ("ok", "unknown")


def build_ops(events: Iterable[Event]) -> list[Op]:
    groups: dict[tuple[str, str, str, str, str], list[Event]] = defaultdict(list)
    singles: list[list[Event]] = []
    for event in events:
        if event.idem_key:
            groups[(event.tenant, event.operator, event.method, event.path, event.idem_key)].append(
                event
            )
        else:
            singles.append([event])
    ops = [_op(group) for group in (*groups.values(), *singles)]
    ops.sort(key=lambda op: (op.start, op.seq))
    return ops


def _op(group: list[Event]) -> Op:
    """One logical operation from its attempts: the first definitive answer ends it; with
    none, its outcome is unknown and it may take effect at any time after it was sent."""
    group.sort(key=lambda e: e.seq)
    first, last = group[0], group[-1]
    answers = sorted((e for e in group if definitive(e)), key=lambda e: e.t_recv or INF)
    end: float
    status: int | None
    data: Any
    if answers:
        answer = answers[0]
        assert answer.status is not None
        assert answer.t_recv is not None
        outcome = "ok" if 200 <= answer.status < 300 else "rejected"
        end, status, code, data = answer.t_recv, answer.status, answer.code, answer.data
    else:
        outcome = "unknown"
        end, status, code, data = INF, last.status, last.code, None
    return Op(
        kind=route_kind(first.method, first.path),
        action=first.action,
        tenant=first.tenant,
        operator=first.operator,
        body=first.body,
        start=min(e.t_send for e in group),
        end=end,
        outcome=outcome,
        status=status,
        code=code,
        data=data,
        events=group,
    )


class Intervals:
    """Operations sorted by start; answers "is there one, other than the excluded ones, that
    may have taken effect inside [lo, hi]" (i.e. start <= hi and end >= lo) in O(log n)."""

    def __init__(self, ops: Iterable[Op]) -> None:
        self.ops = sorted(ops, key=lambda op: op.start)
        self.starts = [op.start for op in self.ops]
        self._top: list[tuple[tuple[float, int], ...]] = []  # prefix top-3 by end
        best: list[tuple[float, int]] = []
        for index, op in enumerate(self.ops):
            best = sorted([*best, (op.end, index)], reverse=True)[:3]
            self._top.append(tuple(best))

    def max_end_before(self, hi: float, rank: int = 0) -> float:
        """The (rank+1)-th largest end among ops starting at or before `hi` (-inf if none)."""
        count = bisect_right(self.starts, hi)
        if count == 0:
            return -INF
        top = self._top[count - 1]
        return top[rank][0] if rank < len(top) else -INF

    def any_within(self, lo: float, hi: float, exclude: Sequence[Op] = ()) -> Op | None:
        count = bisect_right(self.starts, hi)
        if count == 0:
            return None
        for end, index in self._top[count - 1]:
            if end < lo:
                return None
            op = self.ops[index]
            if not any(op is other for other in exclude):
                return op
        return None


EMPTY_INTERVALS = Intervals(())


# --- results ----------------------------------------------------------------------------------


@dataclass
class InvariantResult:
    key: str
    title: str
    checked: int = 0
    violations: int = 0
    examples: list[str] = field(default_factory=list)
    note: str = ""
    known_defect: str = ""  # set: a reported service defect, not counted unless strict

    def fail(self, example: str) -> None:
        self.violations += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "checked": self.checked,
            "violations": self.violations,
            "examples": self.examples,
            "note": self.note,
            "known_defect": self.known_defect,
        }


@dataclass
class Totals:
    requests: int = 0
    operations: int = 0
    by_action: dict[str, Counter[str]] = field(default_factory=dict)
    conflicts: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    unanswered: int = 0
    replays: int = 0
    duration: float = 0.0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "operations": self.operations,
            "by_action": {k: dict(sorted(v.items())) for k, v in sorted(self.by_action.items())},
            "conflicts": dict(sorted(self.conflicts.items())),
            "server_errors": self.server_errors,
            "unanswered": self.unanswered,
            "replays": self.replays,
            "duration_seconds": round(self.duration, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "latency_ms": self.latency_ms,
        }


@dataclass
class CheckReport:
    invariants: list[InvariantResult]
    totals: Totals

    @property
    def violations(self) -> int:
        """Violations that fail the run (known defects excluded unless checked strictly)."""
        return sum(result.violations for result in self.invariants if not result.known_defect)

    @property
    def known_defect_hits(self) -> int:
        return sum(result.violations for result in self.invariants if result.known_defect)

    def result(self, key: str) -> InvariantResult:
        return next(r for r in self.invariants if r.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "violations": self.violations,
            "known_defect_hits": self.known_defect_hits,
            "server_errors": self.totals.server_errors,
            "invariants": [r.to_json() for r in self.invariants],
            "totals": self.totals.to_json(),
        }


# --- the check --------------------------------------------------------------------------------


class _Context:
    def __init__(
        self,
        events: Sequence[Event],
        world: World,
        final: FinalRows,
        snapshots: Sequence[FinalRows] = (),
    ) -> None:
        self.events = events
        self.world = world
        self.final = final
        self.t0 = min((e.t_send for e in events), default=0.0)
        self.ops = build_ops(events)
        self.ops_by_conversation: dict[str, list[Op]] = defaultdict(list)
        self.status_ops: dict[str, list[Op]] = defaultdict(list)
        for op in self.ops:
            conversation = op.conversation
            if conversation is not None and op.kind != "ingest":
                self.ops_by_conversation[conversation].append(op)
            if op.kind == "status":
                self.status_ops[op.operator].append(op)
        self.releases: dict[str, Intervals] = {
            conversation: Intervals(
                op for op in ops if op.kind in RELEASE_KINDS and op.possibly_effective
            )
            for conversation, ops in self.ops_by_conversation.items()
        }
        # What can end all of an operator's holds without a release naming the conversation:
        # going OFFLINE (then the grace sweeper), and being unsubscribed or deleted (both
        # re-queue the operator's conversations; the churn loop does them).
        ending: dict[str, list[Op]] = defaultdict(list)
        for operator, ops in self.status_ops.items():
            ending[operator] += [
                op for op in ops if op.possibly_effective and op.body_str("status") == "offline"
            ]
        inbox_deletes: dict[str, list[Op]] = defaultdict(list)
        for op in self.ops:
            if op.possibly_effective and op.events[0].method == "DELETE":
                leaving, inbox = _removed_by(op.events[0].path)
                if leaving is not None:
                    ending[leaving].append(op)
                if inbox is not None:
                    inbox_deletes[inbox].append(op)
        self.deleted_inboxes = set(inbox_deletes)
        self.offline: dict[str, Intervals] = {
            operator: Intervals(ops) for operator, ops in ending.items()
        }
        # Conversations ingested into an inbox that was deleted may vanish with it.
        # Deleting the inbox ends every hold of them (a release for invariants 2, 8, 12).
        self.may_vanish: set[str] = set()
        for op in self.ops:
            inbox = op.body_str("inbox_id") if op.kind == "ingest" else None
            if inbox in inbox_deletes and op.outcome == "ok":
                conversation = str(op.data_str("id"))
                self.may_vanish.add(conversation)
                known = self.releases.get(conversation)
                self.releases[conversation] = Intervals(
                    [*(known.ops if known else []), *inbox_deletes[str(inbox)]]
                )
        self.conversation_owner = {row.id: row.tenant_id for row in final.conversations}
        # The final rows plus the consistent snapshots taken while the load ran: every
        # rows-only invariant must hold in each of them.
        self.row_sets: list[tuple[str, FinalRows]] = [("final rows", final)] + [
            (f"snapshot at {self.t(rows.taken_at)}", rows) for rows in snapshots
        ]

    def t(self, value: float) -> str:
        return "inf" if value == INF else f"{value - self.t0:.3f}s"

    def describe(self, op: Op) -> str:
        return (
            f"{op.kind}#{op.seq} by {op.operator[:8]} [{self.t(op.start)}..{self.t(op.end)}] "
            f"-> {op.status}{' ' + op.code if op.code else ''}"
        )

    def owner(self, any_id: str) -> str | None:
        return self.world.owner(any_id) or self.conversation_owner.get(any_id)

    def offline_possible(self, operator: str, lo: float, hi: float) -> bool:
        return self.offline.get(operator, EMPTY_INTERVALS).any_within(lo, hi) is not None


@dataclass(eq=False)
class _Acquisition:
    op: Op
    holder: str


def check(
    events: Sequence[Event],
    world: World,
    final: FinalRows,
    snapshots: Sequence[FinalRows] = (),
    *,
    strict: bool = False,
) -> CheckReport:
    """`final`: the rows after the load and the sweeper went idle; `snapshots`: consistent
    snapshots taken during the load (rows-only invariants 3, 6, 7, 8, 12 are checked in each).
    `strict`: count the KNOWN_DEFECTS invariants as violations too."""
    ctx = _Context(events, world, final, snapshots)
    acquisitions = _acquisitions(ctx)
    invariants = [
        _no_server_errors(ctx),
        _all_answered(ctx),
        _exclusive_holding(ctx, acquisitions),
        _final_states(ctx),
        _response_states(ctx),
        _conversations_unique(ctx),
        _message_counts(ctx),
        _grace_rows(ctx),
        _grace_outlives_allocation(ctx),
        _tenant_isolation(ctx),
        _capacity(ctx, acquisitions),
        _status_respected(ctx),
        _idempotency(ctx),
        _quiet_allocation(ctx),
        _rows_agree(ctx, acquisitions),
    ]
    for result in invariants:
        result.known_defect = "" if strict else KNOWN_DEFECTS.get(result.key, "")
    return CheckReport(invariants, _totals(ctx))


def _acquisitions(ctx: _Context) -> dict[str, list[_Acquisition]]:
    by_conversation: dict[str, list[_Acquisition]] = defaultdict(list)
    for conversation, ops in ctx.ops_by_conversation.items():
        for op in ops:
            if op.outcome != "ok":
                continue
            if op.kind in ACQUIRE_KINDS:
                by_conversation[conversation].append(_Acquisition(op, op.operator))
            elif op.kind == "reassign":
                target = op.data_str("assigned_operator_id") or op.body_str("operator_id")
                if target is not None:
                    by_conversation[conversation].append(_Acquisition(op, target))
    for items in by_conversation.values():
        items.sort(key=lambda a: a.op.start)
    return by_conversation


def _no_server_errors(ctx: _Context) -> InvariantResult:
    result = InvariantResult("1", "zero 5xx responses")
    for event in ctx.events:
        if event.status is None:
            continue
        result.checked += 1
        if event.status >= 500:
            result.fail(
                f"#{event.seq} {event.method} {event.path} by {event.operator[:8]} at "
                f"{ctx.t(event.t_send)} -> {event.status} {event.code} body={event.body}"
            )
    return result


def _all_answered(ctx: _Context) -> InvariantResult:
    result = InvariantResult("1b", "every request answered (no transport error)")
    for event in ctx.events:
        result.checked += 1
        if event.status is None:
            result.fail(
                f"#{event.seq} {event.method} {event.path} at {ctx.t(event.t_send)}: {event.error}"
            )
    return result


def _explained(ctx: _Context, first: _Acquisition, second: _Acquisition) -> bool:
    """Can `first`'s hold have ended before `second` took the conversation?"""
    if second.op.kind == "reassign":
        return True  # a transfer: it ends the previous hold itself
    conversation = second.op.conversation
    assert conversation is not None
    releases = ctx.releases.get(conversation, EMPTY_INTERVALS)
    lo, hi = first.op.start, second.op.end
    if releases.any_within(lo, hi, exclude=(first.op, second.op)) is not None:
        return True
    return ctx.offline_possible(first.holder, lo, hi)


def _exclusive_holding(
    ctx: _Context, acquisitions: dict[str, list[_Acquisition]]
) -> InvariantResult:
    result = InvariantResult("2", "no conversation held by two operators at once")
    reported: set[tuple[int, int]] = set()
    grace_handovers = 0
    for conversation, items in acquisitions.items():
        starts = [a.op.start for a in items]
        releases = ctx.releases.get(conversation, EMPTY_INTERVALS)
        for second in items:
            if second.op.kind not in ACQUIRE_KINDS:
                continue
            result.checked += 1
            # An unexplained first must start after every release that may precede `second`
            # (up to two of them may be the pair itself): prune with the 3rd-largest end.
            floor = releases.max_end_before(second.op.end, rank=2)
            for first in items[bisect_right(starts, floor) :]:
                if first is second or first.holder == second.holder:
                    continue
                if first.op.start > second.op.end:
                    break
                pair = (min(first.op.seq, second.op.seq), max(first.op.seq, second.op.seq))
                if pair in reported:
                    continue
                if _pair_explained(ctx, first, second):
                    continue
                reported.add(pair)
                result.fail(
                    f"conversation {conversation}: {ctx.describe(second.op)} "
                    f"while {first.holder[:8]} held it via {ctx.describe(first.op)}; "
                    "no release or grace expiry possible in between"
                )
            grace_handovers += _handed_over_by_grace(ctx, items, second)
    result.note = (
        f"{grace_handovers} acquisitions followed another operator's hold that only a grace "
        "expiry can have ended (the sweeper path was exercised)"
    )
    return result


def _handed_over_by_grace(ctx: _Context, items: list[_Acquisition], second: _Acquisition) -> int:
    """1 if the latest acquisition certainly before `second` is another operator's and no
    logged release lies in between (so the sweeper released it), else 0."""
    before = [a for a in items if a.op.end < second.op.start]
    if not before:
        return 0
    first = max(before, key=lambda a: a.op.end)
    if first.holder == second.holder or first.op.kind == "reassign":
        return 0
    conversation = second.op.conversation
    assert conversation is not None
    releases = ctx.releases.get(conversation, EMPTY_INTERVALS)
    if releases.any_within(first.op.start, second.op.end, exclude=(first.op,)) is not None:
        return 0
    return 1 if ctx.offline_possible(first.holder, first.op.start, second.op.end) else 0


def _pair_explained(ctx: _Context, a: _Acquisition, b: _Acquisition) -> bool:
    orders = []
    if not b.op.end < a.op.start:
        orders.append((a, b))
    if not a.op.end < b.op.start:
        orders.append((b, a))
    return any(_explained(ctx, first, second) for first, second in orders)


def _final_states(ctx: _Context) -> InvariantResult:
    result = InvariantResult(
        "3", "rows: ALLOCATED=>operator, QUEUED=>no operator, resolved_at iff RESOLVED"
    )
    result.note = (
        f"final rows and {len(ctx.row_sets) - 1} snapshots taken during the load; RESOLVED "
        "keeps its last operator, so only ALLOCATED/QUEUED bind it"
    )
    for label, rows in ctx.row_sets:
        for row in rows.conversations:
            result.checked += 1
            problems = _row_problems(row)
            if problems:
                result.fail(f"{label}: conversation {row.id}: {'; '.join(problems)}")
        for operator in rows.operators:
            if operator.status is None:
                result.fail(f"{label}: operator {operator.id} has no status row")
    return result


def _row_problems(row: ConversationRow) -> list[str]:
    problems = []
    if row.state not in ("QUEUED", "ALLOCATED", "RESOLVED"):
        problems.append(f"unknown state {row.state}")
    if row.state == "ALLOCATED" and row.operator is None:
        problems.append("ALLOCATED without operator")
    if row.state == "QUEUED" and row.operator is not None:
        problems.append(f"QUEUED with operator {row.operator}")
    if (row.resolved_at is not None) != (row.state == "RESOLVED"):
        problems.append(f"state {row.state} with resolved_at={row.resolved_at}")
    if row.message_count < 1:
        problems.append(f"message_count {row.message_count}")
    return problems


def _response_states(ctx: _Context) -> InvariantResult:
    result = InvariantResult("3b", "every 2xx response shows the state its route promises")
    for op in ctx.ops:
        if op.outcome != "ok" or op.kind not in WRITE_KINDS:
            continue
        result.checked += 1
        problem = _response_problem(op)
        if problem:
            result.fail(f"{ctx.describe(op)}: {problem}; data={_brief(op.data)}")
    return result


def _response_problem(op: Op) -> str | None:
    if op.kind == "status":
        wanted, got = op.body_str("status"), op.data_str("status")
        return None if got == wanted else f"status {got}, asked for {wanted}"
    if op.data_str("id") is None:
        return "no conversation in the answer"
    if op.kind not in ("allocate", "ingest") and op.data_str("id") != op.body_str(
        "conversation_id"
    ):
        return "answered another conversation"
    state = (op.data_str("state") or "").upper()
    operator = op.data_str("assigned_operator_id")
    resolved = op.data.get("resolved_at") if isinstance(op.data, dict) else None
    checks = {
        "allocate": state == "ALLOCATED" and operator == op.operator.lower(),
        "claim": state == "ALLOCATED" and operator == op.operator.lower(),
        "resolve": state == "RESOLVED" and resolved is not None,
        "deallocate": state == "QUEUED" and operator is None,
        "reassign": state == "ALLOCATED" and operator == op.body_str("operator_id"),
        "move": state in ("QUEUED", "ALLOCATED")
        and op.data_str("inbox_id") == op.body_str("inbox_id")
        and (state != "QUEUED" or operator is None),
        "ingest": state in ("QUEUED", "ALLOCATED")
        and resolved is None
        and (state != "QUEUED" or operator is None)
        and (state != "ALLOCATED" or operator is not None),
    }
    if not checks.get(op.kind, True):
        return f"{op.kind} answered state {state} operator {operator} resolved_at {resolved}"
    return None


def _brief(data: Any) -> str:
    if isinstance(data, dict):
        keys = ("id", "state", "assigned_operator_id", "inbox_id", "message_count", "status")
        return str({k: data[k] for k in keys if k in data})
    return str(data)[:200]


def _removed_by(path: str) -> tuple[str | None, str | None]:
    """(operator whose holds a DELETE can end, inbox it deletes) for the churn routes:
    DELETE /inboxes/{i}/operators/{o} (unsubscribe), /operators/{o}, /inboxes/{i}."""
    parts = path.rstrip("/").split("/")[3:]  # after /api/v1
    if len(parts) == 4 and parts[0] == "inboxes" and parts[2] == "operators":
        return parts[3].lower(), None
    if len(parts) == 2 and parts[0] == "operators":
        return parts[1].lower(), None
    if len(parts) == 2 and parts[0] == "inboxes":
        return None, parts[1].lower()
    return None, None


def _ingest_ops(ctx: _Context) -> dict[tuple[str, str], list[Op]]:
    by_external: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in ctx.ops:
        if op.kind == "ingest":
            external = op.body.get("external_conversation_id") if op.body else None
            if isinstance(external, str):
                by_external[(op.tenant, external)].append(op)
    return by_external


def _conversations_unique(ctx: _Context) -> InvariantResult:
    result = InvariantResult("4", "no conversation lost or duplicated")
    rows_by_external: dict[tuple[str, str], list[ConversationRow]] = defaultdict(list)
    rows_by_id: Counter[str] = Counter()
    for row in ctx.final.conversations:
        rows_by_external[(row.tenant_id, row.external_id)].append(row)
        rows_by_id[row.id] += 1
    for conversation_id, count in rows_by_id.items():
        if count > 1:
            result.fail(f"conversation id {conversation_id} appears in {count} rows")
    ingests = _ingest_ops(ctx)
    for key, ops in ingests.items():
        result.checked += 1
        rows = rows_by_external.get(key, [])
        if not rows and any(op.body_str("inbox_id") in ctx.deleted_inboxes for op in ops):
            continue  # ingested into an inbox that was deleted since
        for problem in _ingest_problems(key[1], ops, rows):
            result.fail(problem)
    for key, rows in rows_by_external.items():
        if key not in ingests:
            result.fail(f"row {rows[0].id} ({key[1]}) was never ingested by the harness")
    # Every conversation id any 2xx answer named exists.
    for op in ctx.ops:
        if op.outcome != "ok" or op.kind not in WRITE_KINDS or op.kind in ("status", "ingest"):
            continue  # (a lost ingested conversation is reported above)
        conversation = op.data_str("id")
        if conversation and conversation not in rows_by_id and conversation not in ctx.may_vanish:
            result.fail(f"{ctx.describe(op)} answered conversation {conversation}: no such row")
    return result


def _ingest_problems(external: str, ops: list[Op], rows: list[ConversationRow]) -> list[str]:
    ok = [op for op in ops if op.outcome == "ok"]
    ids = sorted({str(op.data_str("id")) for op in ok})
    created = sum(1 for op in ok if op.status == 201)
    unknown = sum(1 for op in ops if op.outcome == "unknown")
    problems = []
    if len(ids) > 1:
        problems.append(f"external id {external}: ingestion answered {len(ids)} ids {ids}")
    if len(rows) > 1:
        problems.append(f"external id {external}: {len(rows)} rows")
    if ok and not rows:
        problems.append(f"external id {external} (id {ids}) was ingested but is lost")
    if rows and ids and rows[0].id not in ids:
        problems.append(f"external id {external}: row id {rows[0].id} != ingested id {ids}")
    if created > 1:
        problems.append(f"external id {external}: {created} ingestions answered 201 Created")
    if ok and created == 0 and unknown == 0:
        problems.append(f"external id {external}: no ingestion answered 201 (none unknown)")
    return problems


def _message_counts(ctx: _Context) -> InvariantResult:
    result = InvariantResult(
        "5", "message_count == successful ingest operations (replays excluded)"
    )
    rows = {(row.tenant_id, row.external_id): row for row in ctx.final.conversations}
    for key, ops in _ingest_ops(ctx).items():
        row = rows.get(key)
        if row is None:
            continue  # reported by invariant 4
        result.checked += 1
        ok = [op for op in ops if op.outcome == "ok"]
        unknown = sum(1 for op in ops if op.outcome == "unknown")
        if not len(ok) <= row.message_count <= len(ok) + unknown:
            result.fail(
                f"conversation {row.id} ({key[1]}): message_count {row.message_count}, "
                f"{len(ok)} successful ingests + {unknown} of unknown outcome"
            )
        counts = Counter(op.data.get("message_count") for op in ok if isinstance(op.data, dict))
        repeated = [count for count, n in counts.items() if n > 1]
        if repeated:
            result.fail(
                f"conversation {row.id} ({key[1]}): several ingests answered message_count "
                f"{repeated} (a lost update)"
            )
    return result


def _grace_rows(ctx: _Context) -> InvariantResult:
    result = InvariantResult(
        "6", "grace rows: only for OFFLINE operators; every OFFLINE holder has one; none stale"
    )
    stale_after = max(STALE_GRACE_MIN_SECONDS, 10 * ctx.world.grace_interval_seconds)
    result.note = (
        f"final rows and {len(ctx.row_sets) - 1} snapshots taken during the load; in the final "
        f"rows a grace row expired more than {stale_after:g}s before is stale (sweeper stuck)"
    )
    for label, rows in ctx.row_sets:
        final = rows is ctx.final
        for problem in _grace_problems(rows, stale_after if final else None, result):
            result.fail(f"{label}: {problem}")
    return result


def _grace_problems(
    rows: FinalRows, stale_after: float | None, result: InvariantResult
) -> list[str]:
    problems = []
    status = {op.id: op.status for op in rows.operators}
    graced = {(g.conversation_id, g.operator_id) for g in rows.grace}
    for grace in rows.grace:
        result.checked += 1
        if status.get(grace.operator_id) != "OFFLINE":
            problems.append(
                f"grace row of conversation {grace.conversation_id} for operator "
                f"{grace.operator_id} whose status is {status.get(grace.operator_id)}"
            )
        if stale_after is not None and grace.expired_seconds > stale_after:
            problems.append(
                f"grace row of conversation {grace.conversation_id} expired "
                f"{grace.expired_seconds:.1f}s before the snapshot and was not swept"
            )
    for row in rows.conversations:
        if row.state == "ALLOCATED" and row.operator and status.get(row.operator) == "OFFLINE":
            result.checked += 1
            if (row.id, row.operator) not in graced:
                problems.append(
                    f"conversation {row.id} is ALLOCATED to OFFLINE operator {row.operator} "
                    "without a grace row: it will never be released"
                )
    return problems


def _grace_outlives_allocation(ctx: _Context) -> InvariantResult:
    result = InvariantResult("6b", "a grace row's conversation is ALLOCATED to the row's operator")
    result.note = (
        "resolve/deallocate/reassign/move remove the grace row; going OFFLINE only creates "
        "rows for conversations still ALLOCATED to the operator (docs/decisions.md)"
    )
    for label, rows in ctx.row_sets:
        conversations = {row.id: row for row in rows.conversations}
        for grace in rows.grace:
            result.checked += 1
            row = conversations.get(grace.conversation_id)
            if row is None or row.state != "ALLOCATED" or row.operator != grace.operator_id:
                state, holder = (row.state, row.operator) if row else ("missing", None)
                result.fail(
                    f"{label}: grace row of conversation {grace.conversation_id} for "
                    f"{grace.operator_id}, but the conversation is {state} (operator {holder})"
                )
    return result


def _request_ids(event: Event) -> set[str]:
    text = f"{event.path} {event.body} {event.query}".encode()
    return {match.decode().lower() for match in UUID_PATTERN.findall(text)}


def _tenant_isolation(ctx: _Context) -> InvariantResult:
    result = InvariantResult("7", "tenant isolation")
    for event in ctx.events:
        if event.status is None:
            continue
        result.checked += 1
        tenant = event.tenant.lower()
        sent = _request_ids(event)
        foreign = [
            i for i in event.body_ids if i not in sent and ctx.owner(i) not in (None, tenant)
        ]
        if foreign:
            result.fail(
                f"#{event.seq} {event.method} {event.path} by {event.operator[:8]} (tenant "
                f"{tenant[:8]}) -> {event.status}: contains ids of another tenant {foreign[:3]}"
            )
        if event.status < 300:
            for item in _data_objects(event.data):
                owner = item.get("tenant_id")
                if isinstance(owner, str) and owner.lower() != tenant:
                    result.fail(f"#{event.seq} {event.path}: 2xx data of tenant {owner}")
                    break
            if event.action.startswith("probe_"):
                result.fail(
                    f"cross-tenant probe #{event.seq} {event.action} {event.path} "
                    f"body={event.body} succeeded: {event.status}"
                )
    for label, rows in ctx.row_sets:
        for problem in _row_isolation_problems(ctx.world, rows, result):
            result.fail(f"{label}: {problem}")
    return result


def _row_isolation_problems(world: World, rows: FinalRows, result: InvariantResult) -> list[str]:
    problems = []
    owners = {row.id: row.tenant_id for row in rows.conversations}
    for row in rows.conversations:
        result.checked += 1
        inbox_owner = rows.inboxes.get(row.inbox_id) or world.owner(row.inbox_id)
        if inbox_owner != row.tenant_id:
            problems.append(
                f"conversation {row.id} of tenant {row.tenant_id} "
                f"in inbox {row.inbox_id} of tenant {inbox_owner}"
            )
        if row.operator and world.owner(row.operator) not in (None, row.tenant_id):
            problems.append(
                f"conversation {row.id} of tenant {row.tenant_id} "
                f"held by {row.operator} of another tenant"
            )
    for grace in rows.grace:
        if world.owner(grace.operator_id) != owners.get(grace.conversation_id):
            problems.append(f"grace row mixes tenants: {grace}")
    return problems


def _data_objects(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        items = data.get("conversations")
        if isinstance(items, list):
            return [item for item in items if isinstance(item, dict)]
        return [data]
    return []


def _capacity(ctx: _Context, acquisitions: dict[str, list[_Acquisition]]) -> InvariantResult:
    result = InvariantResult("8", "capacity never exceeded via allocate/claim")
    limits = {
        op.id: op.max_concurrent
        for tenant in ctx.world.tenants
        for op in tenant.operators
        if op.max_concurrent is not None
    }
    by_holder: dict[str, list[tuple[str, _Acquisition]]] = defaultdict(list)
    for conversation, items in acquisitions.items():
        for acquisition in items:
            if acquisition.holder in limits:
                by_holder[acquisition.holder].append((conversation, acquisition))
    for holder, held_items in by_holder.items():
        limit = limits[holder]
        assert limit is not None
        for conversation, second in held_items:
            if second.op.kind not in ACQUIRE_KINDS:
                continue
            result.checked += 1
            held = {
                other
                for other, first in held_items
                if other != conversation
                and first.op.end < second.op.start
                and _certainly_still_held(ctx, acquisitions, other, first, second.op)
            }
            if len(held) >= limit:
                result.fail(
                    f"operator {holder} (max {limit}) got {conversation} by "
                    f"{ctx.describe(second.op)} while certainly holding {len(held)}: "
                    f"{sorted(held)[:4]}"
                )
    reassigned_to = {
        a.holder for items in acquisitions.values() for a in items if a.op.kind == "reassign"
    }
    for label, rows in ctx.row_sets:
        counts = Counter(
            row.operator for row in rows.conversations if row.state == "ALLOCATED" and row.operator
        )
        for operator_id, limit in limits.items():
            assert limit is not None
            result.checked += 1
            if operator_id in reassigned_to:
                continue  # a manager's reassign may exceed it (docs/decisions.md#capacity)
            if counts[operator_id] > limit:
                result.fail(
                    f"{label}: operator {operator_id} (max {limit}) holds {counts[operator_id]}"
                )
    return result


def _certainly_still_held(
    ctx: _Context,
    acquisitions: dict[str, list[_Acquisition]],
    conversation: str,
    first: _Acquisition,
    at: Op,
) -> bool:
    lo, hi = first.op.start, at.end
    releases = ctx.releases.get(conversation, EMPTY_INTERVALS)
    if releases.any_within(lo, hi, exclude=(first.op,)) is not None:
        return False
    if ctx.offline_possible(first.holder, lo, hi):
        return False
    return not any(
        other.holder != first.holder and other.op.end >= lo and other.op.start <= hi
        for other in acquisitions.get(conversation, [])
    )


def _status_respected(ctx: _Context) -> InvariantResult:
    result = InvariantResult("9", "no allocate/claim succeeds while the operator is BUSY/OFFLINE")
    for op in ctx.ops:
        if op.kind not in ACQUIRE_KINDS or op.outcome != "ok":
            continue
        result.checked += 1
        spec = ctx.world.operator(op.operator)
        statuses = ctx.status_ops.get(op.operator, [])
        may_set_available = [
            s
            for s in statuses
            if (s.outcome == "ok" and s.data_str("status") == "available")
            or (s.outcome == "unknown" and s.body_str("status") == "available")
        ]
        blockers = [
            s
            for s in statuses
            if s.outcome == "ok"
            and s.data_str("status") in ("busy", "offline")
            and s.end < op.start
        ]
        if (
            spec is not None
            and spec.initial_status != "AVAILABLE"
            and not any(q.start <= op.end for q in may_set_available)
        ):
            result.fail(f"{ctx.describe(op)} while still {spec.initial_status} since the start")
            continue
        for blocker in blockers:
            if not any(
                q is not blocker and q.end >= blocker.start and q.start <= op.end
                for q in may_set_available
            ):
                result.fail(
                    f"{ctx.describe(op)} while {blocker.data_str('status')} since "
                    f"{ctx.describe(blocker)}"
                )
                break
    return result


def _idempotency(ctx: _Context) -> InvariantResult:
    result = InvariantResult("10", "idempotent replays identical, one execution per key")
    groups: dict[tuple[str, str, str, str, str], list[Event]] = defaultdict(list)
    for event in ctx.events:
        if event.idem_key:
            groups[(event.tenant, event.operator, event.method, event.path, event.idem_key)].append(
                event
            )
    for (_t, _o, method, path, key), events in groups.items():
        result.checked += 1
        answers = [e for e in events if definitive(e)]
        shapes = {(e.status, e.body_sha256) for e in answers}
        executed = [e for e in answers if not e.replayed]
        if len(shapes) > 1:
            result.fail(
                f"key {key} {method} {path}: different answers "
                f"{sorted((s, (h or '')[:8]) for s, h in shapes)} (seqs {[e.seq for e in events]})"
            )
        if len(executed) > 1:
            result.fail(
                f"key {key} {method} {path}: executed {len(executed)} times "
                f"(seqs {[e.seq for e in executed]})"
            )
        for event in events:
            if event.code == "IDEMPOTENCY_KEY_REUSED":
                result.fail(f"key {key}: #{event.seq} refused as reused although the body is equal")
    return result


def _rows_agree(ctx: _Context, acquisitions: dict[str, list[_Acquisition]]) -> InvariantResult:
    result = InvariantResult("12", "rows agree with the answers (certain holds and resolves)")
    external_of = {row.id: (row.tenant_id, row.external_id) for row in ctx.final.conversations}
    ingests = _ingest_ops(ctx)
    reopens: dict[str, Intervals] = {}
    resolves: dict[str, list[Op]] = defaultdict(list)
    for conversation, ops in ctx.ops_by_conversation.items():
        resolves[conversation] = sorted(
            (op for op in ops if op.kind == "resolve" and op.outcome == "ok"),
            key=lambda op: op.end,
        )
    for label, rows in ctx.row_sets:
        since, until = rows.taken_at, max(rows.taken_until, rows.taken_at)
        for row in rows.conversations:
            result.checked += 1
            problem = _held_but_not_in_row(ctx, acquisitions.get(row.id, []), row, since, until)
            if problem is None and resolves.get(row.id):
                if row.id not in reopens:
                    reopens[row.id] = Intervals(
                        op
                        for op in ingests.get(external_of.get(row.id, ("", "")), [])
                        if op.possibly_effective
                    )
                problem = _resolved_but_not_in_row(
                    ctx, resolves[row.id], reopens[row.id], row=row, since=since, until=until
                )
            if problem:
                result.fail(
                    f"{label}: conversation {row.id} is {row.state}/{row.operator}: {problem}"
                )
    return result


def _held_but_not_in_row(
    ctx: _Context, items: list[_Acquisition], row: ConversationRow, since: float, until: float
) -> str | None:
    before = sorted((a for a in items if a.op.end < since), key=lambda a: -a.op.end)[:3]
    for first in before:
        lo = first.op.start
        releases = ctx.releases.get(row.id, EMPTY_INTERVALS)
        if releases.any_within(lo, until, exclude=(first.op,)) is not None:
            continue
        if ctx.offline_possible(first.holder, lo, until):
            continue
        if any(
            other.holder != first.holder and other.op.end >= lo and other.op.start <= until
            for other in items
        ):
            continue
        if row.state != "ALLOCATED" or row.operator != first.holder:
            return (
                f"{ctx.describe(first.op)} gave it to {first.holder} and nothing can have "
                "taken it away before the snapshot"
            )
        return None
    return None


def _resolved_but_not_in_row(
    ctx: _Context,
    resolves: list[Op],
    reopens: Intervals,
    *,
    row: ConversationRow,
    since: float,
    until: float,
) -> str | None:
    done = [op for op in resolves if op.end < since]
    if not done:
        return None
    last = done[-1]
    if reopens.any_within(last.start, until) is not None or row.state == "RESOLVED":
        return None
    return f"{ctx.describe(last)} resolved it and no message can have reopened it since"


def _quiet_allocation(ctx: _Context) -> InvariantResult:
    result = InvariantResult(
        "11", "quiet allocation: top live priority, no false NO_CONVERSATIONS_AVAILABLE"
    )
    for event in ctx.events:
        expect = event.expect
        if not expect or expect.get("check") != "quiet_allocation":
            continue
        result.checked += 1
        top = float(expect["top"])
        priorities: dict[str, float] = expect["priorities"]
        answered = event.data.get("id") if isinstance(event.data, dict) else None
        where = f"#{event.seq} allocate by {event.operator[:8]} ({expect['queued']} QUEUED)"
        if event.status != 200 or not isinstance(answered, str):
            result.fail(f"{where} -> {event.status} {event.code}")
            continue
        score = priorities.get(answered)
        if score is None or score < top - PRIORITY_TOLERANCE:
            result.fail(
                f"{where} -> {answered} with priority {score} (not among the 20 best), "
                f"the best is {top:.6f}"
            )
            continue
        reported = event.data.get("priority_score") if isinstance(event.data, dict) else None
        if not isinstance(reported, int | float) or abs(reported - score) > 1e-3:
            result.fail(f"{where} -> priority_score {reported}, formula gives {score:.6f}")
    return result


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values.sort()

    def pick(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

    return {"p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "max": pick(1.0)}


def _totals(ctx: _Context) -> Totals:
    totals = Totals(requests=len(ctx.events), operations=len(ctx.ops))
    latencies: dict[str, list[float]] = defaultdict(list)
    last = ctx.t0
    for event in ctx.events:
        status = str(event.status) if event.status is not None else "none"
        totals.by_action.setdefault(event.action, Counter())[status] += 1
        if event.status == 409 and event.code:
            totals.conflicts[event.code] += 1
        if event.status is not None and event.status >= 500:
            totals.server_errors += 1
        if event.status is None:
            totals.unanswered += 1
        if event.replayed:
            totals.replays += 1
        if event.t_recv is not None:
            last = max(last, event.t_recv)
            latencies[route_kind(event.method, event.path)].append(event.t_recv - event.t_send)
    totals.duration = last - ctx.t0
    totals.latency_ms = {kind: _percentiles(values) for kind, values in sorted(latencies.items())}
    return totals
