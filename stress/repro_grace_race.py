"""Regression check: a grace row must not survive the end of its allocation.

`python -m stress.repro_grace_race [--rounds N] [--ending resolve|deallocate|move|reassign]`

Per round, on a fresh service (1 tenant, 2 inboxes, operator A, operator B, a manager):
A is AVAILABLE and allocates the only QUEUED conversation c; then, at the same moment, A goes
OFFLINE (PUT /operator/status) and the manager ends the allocation (POST /resolve, or
/deallocate, /move_inbox to an inbox A is not subscribed to, /reassign to B). Afterwards the
database is asked whether c has a grace row although it is no longer ALLOCATED to A.

docs/decisions.md#grace-period: going OFFLINE gives a grace row to every conversation ALLOCATED to
the operator;
resolve, deallocate, reassign and move_inbox remove the conversation's grace row. Whichever of
the two commits first, no grace row of A for c may remain. It does when the status change's
INSERT … SELECT (START_GRACE_PERIODS) reads c while the manager's transaction has not yet
committed (c still ALLOCATED to A), and the manager's DELETE_GRACE_ROW runs before the status
change commits (the inserted row is invisible to it). Fixed: each lifecycle transition locks
the holder's status row after the conversation, so the two serialise; this script exits 1 if
any round still leaves a stale row.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
from typing import Any

import httpx

from inbox_allocation.processes import world_traversable_tempdir
from stress import provision
from stress.environment import Service, start_database
from stress.model import OperatorSpec, TenantSpec, World

T = "aaaaaaaa-0000-4000-8000-000000000001"
INBOX = "bbbbbbbb-0000-4000-8000-000000000001"
OTHER_INBOX = "bbbbbbbb-0000-4000-8000-000000000002"
A = "cccccccc-0000-4000-8000-00000000000a"
B = "cccccccc-0000-4000-8000-00000000000b"
MANAGER = "cccccccc-0000-4000-8000-00000000000c"

WORLD = World(
    tenants=(
        TenantSpec(
            id=T,
            name="repro",
            alpha=0.5,
            beta=0.5,
            inboxes=(INBOX, OTHER_INBOX),
            operators=(
                OperatorSpec(A, T, "OPERATOR", None, "AVAILABLE", (INBOX,)),
                OperatorSpec(B, T, "OPERATOR", None, "AVAILABLE", (INBOX,)),
                OperatorSpec(MANAGER, T, "MANAGER", None, "OFFLINE", (), gateway=True),
            ),
        ),
    )
)

ENDINGS = {"resolve": "resolve", "deallocate": "deallocate", "move": "move_inbox",
           "reassign": "reassign"}  # fmt: skip

STALE = """
SELECT c.state::text AS state, c.assigned_operator_id::text AS operator
FROM grace_period_assignments g
JOIN conversation_refs c ON c.tenant_id = g.tenant_id AND c.id = g.conversation_id
WHERE g.conversation_id = $1 AND g.operator_id = $2
  AND NOT (c.state = 'ALLOCATED' AND c.assigned_operator_id = g.operator_id)
"""


def headers(operator: str) -> dict[str, str]:
    return {"X-Tenant-ID": T, "X-Operator-ID": operator}


async def ok(response: Any) -> dict[str, Any]:
    result = await response
    assert result.status_code < 300, (result.status_code, result.text)
    data: dict[str, Any] = result.json()["data"]
    return data


async def rounds(base_url: str, dsn: str, count: int, ending: str) -> tuple[int, list[str]]:
    conn = await provision.connect(dsn)
    await provision.provision(conn, WORLD)
    hits: list[str] = []
    limits = httpx.Limits(max_connections=8)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as a_client,
        httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as m_client,
    ):
        for index in range(count):
            await ok(a_client.put("/api/v1/operator/status", json={"status": "AVAILABLE"},
                                  headers=headers(A)))  # fmt: skip
            body = {
                "inbox_id": INBOX,
                "external_conversation_id": f"repro-{index}",
                "customer_phone_number": "+14155550100",
            }
            await ok(m_client.post("/api/v1/conversations", json=body, headers=headers(MANAGER)))
            allocated = await ok(a_client.post("/api/v1/allocate", headers=headers(A)))
            conversation = allocated["id"]
            ref: dict[str, str] = {"conversation_id": conversation}
            path = f"/api/v1/{ENDINGS[ending]}"
            if ending == "move":
                ref["inbox_id"] = OTHER_INBOX
            elif ending == "reassign":
                ref["operator_id"] = B
            await asyncio.sleep(random.uniform(0, 0.003))  # noqa: S311 - jitter the race
            await asyncio.gather(
                ok(a_client.put("/api/v1/operator/status", json={"status": "OFFLINE"},
                                headers=headers(A))),
                ok(m_client.post(path, json=ref, headers=headers(MANAGER))),
            )  # fmt: skip
            stale = await conn.fetchrow(STALE, conversation, A)
            if stale is not None:
                hits.append(
                    f"round {index}: conversation {conversation} is {stale['state']} "
                    f"(operator {stale['operator']}) but has a grace row for A"
                )
            if ending != "resolve":  # out of the way of the next round's allocation
                await conn.execute(
                    "UPDATE conversation_refs SET state = 'RESOLVED', resolved_at = now() "
                    "WHERE id = $1",
                    conversation,
                )
    await conn.close()
    return count, hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress.repro_grace_race")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--ending", choices=["resolve", "deallocate", "move", "reassign"], default="resolve"
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    database = start_database()
    log_dir = world_traversable_tempdir("inbox-repro-")
    service = Service(
        dsn=database.dsn,
        log_path=log_dir / "service.log",
        workers=args.workers,
        grace_period="1h",  # nothing may expire during the experiment
        grace_interval="1h",
    )
    try:
        service.start()
        total, hits = asyncio.run(rounds(service.base_url, database.dsn, args.rounds, args.ending))
    finally:
        service.stop()
        database.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"{args.ending} racing A's OFFLINE: {len(hits)} of {total} rounds left a stale grace row")
    for line in hits[:5]:
        print("  " + line)
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
