"""The printed report: totals, conflicts, invariants, soak curves and the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from stress.checker import CheckReport
from stress.soak import Verdict

KIND_ORDER = (
    "ingest_new",
    "ingest_message",
    "allocate",
    "claim",
    "resolve",
    "resolve_any",
    "deallocate",
    "reassign",
    "move",
    "status_available",
    "status_busy",
    "status_offline",
    "get_status",
    "list",
    "list_mine",
)


def _status_cells(counter: Counter[str]) -> str:
    return " ".join(f"{status}={count}" for status, count in sorted(counter.items()))


def format_report(
    *,
    title: str,
    check: CheckReport,
    meta: dict[str, Any],
    soak: Sequence[Verdict] = (),
    curves: Sequence[str] = (),
    passed: bool,
) -> list[str]:
    totals = check.totals
    lines = [
        f"== {title}",
        "   "
        + "  ".join(f"{key}={value}" for key, value in meta.items() if not isinstance(value, dict)),
        f"requests: {totals.requests} ({totals.operations} logical operations) in "
        f"{totals.duration:.1f}s = {totals.requests_per_second:.1f} req/s; "
        f"idempotent replays {totals.replays}",
        "operations by type and status:",
    ]
    actions = sorted(
        totals.by_action,
        key=lambda a: (KIND_ORDER.index(a) if a in KIND_ORDER else len(KIND_ORDER), a),
    )
    for action in actions:
        counter = totals.by_action[action]
        lines.append(f"  {action:<17} n={sum(counter.values()):<7} {_status_cells(counter)}")
    conflicts = " ".join(f"{code}={n}" for code, n in sorted(totals.conflicts.items()))
    lines.append(f"conflicts (409 by code): {sum(totals.conflicts.values())}  {conflicts}")
    lines.append(
        f"5xx: {totals.server_errors}   unanswered (transport errors): {totals.unanswered}"
    )
    latency = "  ".join(
        f"{kind} p50={v.get('p50')} p99={v.get('p99')} max={v.get('max')}"
        for kind, v in totals.latency_ms.items()
        if v
    )
    lines.append(f"latency ms: {latency}")
    lines.append("invariants:")
    for result in check.invariants:
        mark = "ok  " if result.violations == 0 else "KNOWN" if result.known_defect else "FAIL"
        lines.append(
            f"  [{mark:<5}] {result.key:<3} {result.title:<82} checked={result.checked:<7} "
            f"violations={result.violations}"
        )
        if result.note:
            lines.append(f"         note: {result.note}")
        if result.known_defect and result.violations:
            lines.append(f"         known defect (not counted): {result.known_defect}")
        lines.extend(f"         e.g. {example}" for example in result.examples)
    lines.append(
        f"violations: {check.violations}"
        + (
            f"   (known defects seen, not counted: {check.known_defect_hits})"
            if check.known_defect_hits
            else ""
        )
    )
    if soak:
        lines.append("soak:")
        for verdict in soak:
            lines.append(f"  [{'ok  ' if verdict.ok else 'FAIL'}] {verdict.name}: {verdict.detail}")
    if curves:
        lines.append("soak curves (every ~10 s sample, thinned):")
        lines.extend(f"  {line}" for line in curves)
    for key, value in meta.items():
        if isinstance(value, dict):
            lines.append(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
    lines.append(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return lines
