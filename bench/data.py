"""The benchmark's data set, generated with set-based SQL, and the queue's resets.

Shape (the issue's): 2 tenants × 20 inboxes; 100 operators per tenant, AVAILABLE, each
subscribed to 1–5 of its tenant's inboxes (operator j: 1 + j % 5 inboxes); one MANAGER per
tenant for ingestion, list and search. Conversations are spread evenly over the 40 inboxes,
QUEUED, with the last message up to 36 h ago (so about a third waits over 24 h and is in the
"aged" priority class) and a message count skewed low (1–50). Row ids are UUIDv7, as the
service's own; the priority keys come from the schema's trigger, one row at a time.

Ids are deterministic so that the pgbench script can build them from integers:
tenant t → b0000000-0000-4000-8000-00000000000t, inbox g (1–40) → b1000000-…-g,
operator k (1–200) → b2000000-…-k, the manager of tenant t → b3000000-…-t.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from inbox_allocation.db.launcher import EmbeddedPostgres
from inbox_allocation.sql.allocation import ALLOCATE_NEXT

TENANTS = 2
INBOXES_PER_TENANT = 20
OPERATORS_PER_TENANT = 100
PHONE_SPACE = 250_000  # distinct customer numbers: +1415 followed by 7 digits
SEED = 0.42


def _uuid(prefix: str, n: int) -> str:
    return f"{prefix}-0000-4000-8000-{n:012d}"


def tenant_id(t: int) -> str:
    return _uuid("b0000000", t)


def inbox_id(g: int) -> str:
    return _uuid("b1000000", g)


def operator_id(k: int) -> str:
    return _uuid("b2000000", k)


def manager_id(t: int) -> str:
    return _uuid("b3000000", t)


def operator_tenant(k: int) -> int:
    return (k - 1) // OPERATORS_PER_TENANT + 1


def subscriptions(k: int) -> list[int]:
    """Global inbox numbers operator k is subscribed to (1–5 of its tenant's 20)."""
    j = (k - 1) % OPERATORS_PER_TENANT
    base = (operator_tenant(k) - 1) * INBOXES_PER_TENANT
    return [base + (j + m * 7) % INBOXES_PER_TENANT + 1 for m in range(1 + j % 5)]


def tenant_inboxes(t: int) -> list[int]:
    base = (t - 1) * INBOXES_PER_TENANT
    return list(range(base + 1, base + INBOXES_PER_TENANT + 1))


def operators_for(concurrency: int) -> list[int]:
    """`concurrency` distinct operators, alternating tenants, with 1, 2, 3, 4, 5, 1, …
    subscribed inboxes (connection i gets local operator i % 100, so 1 + i % 5 inboxes)."""
    if concurrency > TENANTS * OPERATORS_PER_TENANT:
        raise ValueError(f"at most {TENANTS * OPERATORS_PER_TENANT} concurrent operators")
    chosen = []
    for i in range(concurrency):
        tenant = (i % TENANTS + i // OPERATORS_PER_TENANT) % TENANTS
        chosen.append(tenant * OPERATORS_PER_TENANT + i % OPERATORS_PER_TENANT + 1)
    return chosen


class Psql:
    """psql over the server's Unix socket as the bootstrap superuser; prints every result."""

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server

    def run(self, sql: str, timeout: float = 600.0) -> str:
        c = self.server.config
        result = subprocess.run(
            [str(self.server.bin_dir / "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.server.socket_dir), "-p", str(c.port), "-U", c.user,
             "-d", c.database, "-f", "-"],
            input=sql, capture_output=True, text=True, check=False, timeout=timeout,
            env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}\n--- SQL:\n{sql[:2000]}")
        return result.stdout.strip()


FIXTURE_SQL = f"""
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

INSERT INTO tenants (id, name, priority_weight_alpha, priority_weight_beta)
SELECT ('b0000000-0000-4000-8000-' || lpad(t::text, 12, '0'))::uuid, 'Bench tenant ' || t,
       0.5, 0.5
FROM generate_series(1, {TENANTS}) AS t;

INSERT INTO inboxes (id, tenant_id, phone_number, display_name)
SELECT ('b1000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
       ('b0000000-0000-4000-8000-' || lpad(((g - 1) / {INBOXES_PER_TENANT} + 1)::text, 12,
                                          '0'))::uuid,
       '+1555000' || lpad(g::text, 4, '0'), 'Bench inbox ' || g
FROM generate_series(1, {TENANTS * INBOXES_PER_TENANT}) AS g;

INSERT INTO operators (id, tenant_id, role)
SELECT ('b2000000-0000-4000-8000-' || lpad(k::text, 12, '0'))::uuid,
       ('b0000000-0000-4000-8000-' || lpad(((k - 1) / {OPERATORS_PER_TENANT} + 1)::text, 12,
                                          '0'))::uuid,
       'OPERATOR'::operator_role
FROM generate_series(1, {TENANTS * OPERATORS_PER_TENANT}) AS k
UNION ALL
SELECT ('b3000000-0000-4000-8000-' || lpad(t::text, 12, '0'))::uuid,
       ('b0000000-0000-4000-8000-' || lpad(t::text, 12, '0'))::uuid, 'MANAGER'::operator_role
FROM generate_series(1, {TENANTS}) AS t;

INSERT INTO operator_status (tenant_id, operator_id, status)
SELECT tenant_id, id, 'AVAILABLE' FROM operators;

INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id)
SELECT ('b0000000-0000-4000-8000-' || lpad(((k - 1) / {OPERATORS_PER_TENANT} + 1)::text, 12,
                                          '0'))::uuid,
       ('b2000000-0000-4000-8000-' || lpad(k::text, 12, '0'))::uuid,
       ('b1000000-0000-4000-8000-' || lpad(
           (((k - 1) / {OPERATORS_PER_TENANT}) * {INBOXES_PER_TENANT}
            + ((k - 1) % {OPERATORS_PER_TENANT} + m * 7) % {INBOXES_PER_TENANT} + 1)::text,
           12, '0'))::uuid
FROM generate_series(1, {TENANTS * OPERATORS_PER_TENANT}) AS k
CROSS JOIN LATERAL generate_series(0, ((k - 1) % {OPERATORS_PER_TENANT}) % 5) AS m;
"""


def conversations_sql(first: int, last: int) -> str:
    """INSERT conversations numbered first..last-1 (number n → inbox n % 40 + 1)."""
    inboxes = TENANTS * INBOXES_PER_TENANT
    return f"""
SELECT setseed({SEED});
INSERT INTO conversation_refs (id, tenant_id, inbox_id, external_conversation_id,
                               customer_phone_number, state, last_message_at, message_count,
                               created_at, updated_at)
SELECT uuidv7(),
       ('b0000000-0000-4000-8000-' || lpad((s.g / {INBOXES_PER_TENANT} + 1)::text, 12,
                                          '0'))::uuid,
       ('b1000000-0000-4000-8000-' || lpad((s.g + 1)::text, 12, '0'))::uuid,
       'bench-' || s.n,
       '+1415' || lpad((s.n % {PHONE_SPACE})::text, 7, '0'),
       'QUEUED', s.last_at, s.messages, s.last_at - s.r * interval '2 hours', s.last_at
FROM (
    SELECT n, n % {inboxes} AS g,
           now() - random() * interval '36 hours' AS last_at,
           1 + floor(power(random(), 3) * 50)::int AS messages,
           random() AS r
    FROM generate_series({first}, {last - 1}) AS n
    OFFSET 0
) AS s;
"""


@dataclass
class LoadTiming:
    rows: int
    insert_s: float
    vacuum_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.insert_s if self.insert_s else 0.0


class Dataset:
    def __init__(self, server: EmbeddedPostgres) -> None:
        self.psql = Psql(server)
        self.generated = 0  # conversations bench-0 … bench-(generated-1)
        self.timings: list[LoadTiming] = []

    def create_fixture(self) -> float:
        started = time.monotonic()
        self.psql.run(FIXTURE_SQL)
        return time.monotonic() - started

    def grow_to(self, rows: int) -> LoadTiming:
        """Generate conversations until `rows` exist, then VACUUM ANALYZE."""
        first = self.generated
        started = time.monotonic()
        self.psql.run(conversations_sql(first, rows), timeout=900)
        inserted = time.monotonic()
        self.vacuum()
        timing = LoadTiming(rows - first, inserted - started, time.monotonic() - inserted)
        self.generated = rows
        self.timings.append(timing)
        return timing

    def vacuum(self) -> float:
        started = time.monotonic()
        self.psql.run("VACUUM (ANALYZE) conversation_refs;")
        return time.monotonic() - started

    def queued(self) -> int:
        return int(self.psql.run("SELECT count(*) FROM conversation_refs WHERE state = 'QUEUED';"))

    def requeue(self) -> tuple[int, float]:
        """Put every conversation a run took back in the queue, then VACUUM, so that each
        run starts from the same queue. Returns (rows re-queued, seconds)."""
        started = time.monotonic()
        changed = int(
            self.psql.run(
                "WITH taken AS (UPDATE conversation_refs SET state = 'QUEUED', "
                "assigned_operator_id = NULL, resolved_at = NULL "
                "WHERE state <> 'QUEUED' RETURNING 1) SELECT count(*) FROM taken;"
            )
        )
        self.vacuum()
        return changed, time.monotonic() - started

    def reset_statement_stats(self) -> None:
        self.psql.run("SELECT pg_stat_statements_reset();")

    _STATEMENTS_WHERE = (
        "dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND calls > 0 AND query NOT LIKE 'SELECT pg_stat_statements_reset%'"
    )

    def statement_stats(self, limit: int = 8) -> list[dict[str, object]]:
        """The statements that took the most server time since the last reset."""
        out = self.psql.run(
            "SELECT calls, round(total_exec_time::numeric, 3), round(mean_exec_time::numeric, 4),"
            " round(stddev_exec_time::numeric, 4), rows, shared_blks_hit + shared_blks_read,"
            " wal_records, regexp_replace(left(query, 160), '\\s+', ' ', 'g')"
            f" FROM pg_stat_statements WHERE {self._STATEMENTS_WHERE}"
            f" ORDER BY total_exec_time DESC LIMIT {limit};"
        )
        stats: list[dict[str, object]] = []
        for line in out.splitlines():
            calls, total, mean, stddev, rows, blocks, wal, query = line.split("|", 7)
            stats.append({
                "calls": int(calls), "total_ms": float(total), "mean_ms": float(mean),
                "stddev_ms": float(stddev), "rows": int(rows),
                "buffers_per_call": round(int(blocks) / int(calls), 1),
                "wal_records_per_call": round(int(wal) / int(calls), 2),
                "query": query.strip(),
            })  # fmt: skip
        return stats

    def statement_totals(self) -> dict[str, float]:
        """Server-side work since the last reset, summed over all statements: executions,
        execution time, shared buffers touched (hit + read), dirtied, WAL records and bytes."""
        out = self.psql.run(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0),"
            " coalesce(sum(shared_blks_hit + shared_blks_read), 0),"
            " coalesce(sum(shared_blks_dirtied), 0), coalesce(sum(wal_records), 0),"
            " coalesce(sum(wal_bytes), 0)"
            f" FROM pg_stat_statements WHERE {self._STATEMENTS_WHERE};"
        )
        values = [float(v) for v in out.split("|")]
        keys = ("statements", "exec_ms", "buffers", "dirtied", "wal_records", "wal_bytes")
        return dict(zip(keys, values, strict=True))

    def explain_allocate(self, k: int) -> dict[str, object]:
        """EXPLAIN ANALYZE of the service's allocation statement for operator k, rolled back:
        the generic plan (what a prepared statement settles on after 5 runs) and a custom one."""
        t = operator_tenant(k)
        statement = re.sub(r"\s+", " ", ALLOCATE_NEXT).strip()
        args = f"'{tenant_id(t)}', '{operator_id(k)}', extract(epoch FROM now())::float8, true"
        plans: dict[str, object] = {}
        for mode in ("force_generic_plan", "force_custom_plan"):
            out = self.psql.run(
                f"PREPARE bench_alloc(uuid, uuid, float8, bool) AS {statement};\n"
                f"BEGIN;\nSET LOCAL plan_cache_mode = {mode};\n"
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) EXECUTE bench_alloc({args});\n"
                "ROLLBACK;\n"
            )
            match = re.search(r"Execution Time: ([\d.]+) ms", out)
            plans[mode.removeprefix("force_").removesuffix("_plan")] = {
                "execution_ms": float(match.group(1)) if match else None,
                "plan": out,
            }
        return plans


def write_identities(path: Path, operators: list[int]) -> Path:
    """The wrk script's identity file: one line per connection, `tenant operator inboxes`."""
    lines = [
        f"{tenant_id(operator_tenant(k))} {operator_id(k)} "
        + ",".join(inbox_id(g) for g in subscriptions(k))
        for k in operators
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_manager_identities(path: Path, connections: int) -> Path:
    """Managers (they see the whole tenant), alternating tenants, with all their inboxes."""
    lines = []
    for i in range(connections):
        t = i % TENANTS + 1
        inboxes = ",".join(inbox_id(g) for g in tenant_inboxes(t))
        lines.append(f"{tenant_id(t)} {manager_id(t)} {inboxes}")
    path.write_text("\n".join(lines) + "\n")
    return path
