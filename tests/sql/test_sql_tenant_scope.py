"""Lint: every SQL statement on tenant data names its tenant for every table it touches.

All SQL lives as string constants in `inbox_allocation.sql.*` (checked below: no SQL text
anywhere else in the package). In each constant, every reference to a tenant table (after
FROM, JOIN, UPDATE, USING, in subqueries and CTEs alike) must come with its own predicate
`<alias>.tenant_id = $n` (`<alias>.id = $n` for `tenants`; the unqualified form only when
the statement has a single table reference without an alias). An INSERT names tenant_id in
its column list and in its ON CONFLICT target. Besides isolation, that is what makes a
statement a single-tenant "router" query on a database distributed by tenant (Citus): each
distributed table needs its own literal filter on the distribution column. For the same
reason an INSERT … SELECT names the id: its default, gen_random_uuid(), is volatile, and
Citus runs an INSERT … SELECT with a volatile function through the coordinator instead of
on the tenant's shard.

The only exceptions are statements that serve all tenants by design; each is listed with
its reason.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import Counter
from pathlib import Path

import pytest

import inbox_allocation
import inbox_allocation.sql

pytestmark = pytest.mark.no_db

TENANT_TABLES = {
    "tenants", "inboxes", "operators", "operator_inbox_subscriptions", "operator_status",
    "conversation_refs", "labels", "conversation_labels", "grace_period_assignments",
    "idempotency_keys", "api_tokens", "api_token_lookup", "events", "event_purges", "webhooks",
    "webhook_deliveries",
}  # fmt: skip
APPLICATION_TABLES = re.compile(r"\b(" + "|".join(sorted(TENANT_TABLES)) + r")\b")

# Statements that read every tenant by design (not request paths, no tenant to route to).
ALL_TENANTS = {
    "maintenance.NO_TENANTS_YET": "CLI: is the fresh embedded database empty (seed it)?",
    "maintenance.ALL_TENANT_IDS": "workers: the tenants to go through, one by one",
    "stats.QUEUE_BY_TENANT": "GET /metrics: queued conversations and oldest wait per tenant",
    "tenant_admin.LIST_TENANTS": "CLI `tenant list`: every tenant, for the operator",
    "tokens.FIND_BY_HASH": "authentication: the token's hash is what finds its tenant",
    "tokens.STILL_VALID": "authentication: a process re-checks the token hashes it cached",
}

SQL_TEXT = re.compile(r"\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b",
                      re.IGNORECASE | re.DOTALL)  # fmt: skip

# ---- the checker -------------------------------------------------------------------------

_NOISE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)
# A table after one of these words, and the word after it (its alias, unless a keyword),
# read without consuming it (it may be the next JOIN).
_REFERENCE = re.compile(
    r"\b(FROM|JOIN|UPDATE|USING|INTO)\s+(\w+)(?=(?:\s+(?:AS\s+)?(\w+))?)", re.IGNORECASE
)
# Words that may follow a table name and are not an alias.
_NOT_ALIAS = {
    "where", "set", "on", "join", "left", "right", "inner", "cross", "full", "using", "order",
    "group", "limit", "for", "returning", "values", "select", "as", "with", "offset", "of",
}  # fmt: skip
_INSERT = re.compile(
    r"\bINSERT\s+INTO\s+(\w+)(?:\s+AS\s+\w+)?\s*\(([^)]*)\)\s*(\w+)", re.IGNORECASE
)
_CONFLICT_TARGET = re.compile(r"\bON\s+CONFLICT\s*\(([^)]*)\)", re.IGNORECASE)


def _strip(statement: str) -> str:
    """The statement without comments and string literals."""
    return _NOISE.sub(" ", statement)


def tenant_scope_problems(statement: str) -> list[str]:
    """What keeps `statement` from naming its tenant for every tenant table; [] if nothing."""
    text = _strip(statement)
    problems: list[str] = []
    references: list[tuple[str, str | None]] = []  # (table, alias) read or modified
    inserted = {m.start(): m for m in _INSERT.finditer(text)}
    for match in _REFERENCE.finditer(text):
        keyword, table, alias = match.group(1).upper(), match.group(2).lower(), match.group(3)
        if table not in TENANT_TABLES:
            continue
        if keyword == "INTO":
            continue  # INSERT targets are checked below
        if alias is not None and alias.lower() in _NOT_ALIAS:
            alias = None
        references.append((table, alias))
    # Comma-separated FROM/USING lists: `FROM a x, b y` (the second has no keyword before it).
    for match in re.finditer(r",\s*(\w+)\s+(?:AS\s+)?(\w+)\b", text, re.IGNORECASE):
        table, alias = match.group(1).lower(), match.group(2)
        if table in TENANT_TABLES and alias.lower() not in _NOT_ALIAS:
            references.append((table, alias))

    single_unaliased = len(references) == 1 and references[0][1] is None
    needed = Counter(alias or table for table, alias in references)
    key_of = {alias or table: table for table, alias in references}
    for name, count in needed.items():
        column = "id" if key_of[name] == "tenants" else "tenant_id"
        qualified = len(re.findall(rf"\b{name}\.{column}\s*=\s*\$\d+", text))
        unqualified = len(re.findall(rf"(?<![.\w]){column}\s*=\s*\$\d+", text))
        found = qualified + (unqualified if single_unaliased else 0)
        if found < count:
            problems.append(f"{key_of[name]} {name}: no own `{name}.{column} = $n`")

    for start, match in inserted.items():
        table, columns, source = match.group(1).lower(), match.group(2), match.group(3)
        names = {column.strip() for column in columns.split(",")}
        if table in TENANT_TABLES - {"tenants"} and "tenant_id" not in names:
            problems.append(f"INSERT INTO {table}: tenant_id not in the column list")
        # Events have no id: their key is the writing transaction's id and a sequence value,
        # which can only be taken where the row is written (see sql/events.py).
        keyed_by_writer = table == "events"
        if (
            table in TENANT_TABLES
            and not keyed_by_writer
            and source.upper() == "SELECT"
            and "id" not in names
        ):
            problems.append(f"INSERT INTO {table} … SELECT: no id (volatile default)")
        conflict = _CONFLICT_TARGET.search(text, start)
        if conflict and table != "tenants" and "tenant_id" not in conflict.group(1):
            problems.append(f"INSERT INTO {table}: ON CONFLICT target without tenant_id")
    return problems


# ---- the checker, checked ----------------------------------------------------------------

GOOD = [
    "SELECT c.id FROM conversation_refs c JOIN labels l ON l.tenant_id = $1 AND l.id = $2 "
    "WHERE c.tenant_id = $1",
    "SELECT role::text FROM operators WHERE id = $2 AND tenant_id = $1",
    "SELECT id FROM tenants WHERE id = $1",
    "UPDATE conversation_refs c SET x = 1 FROM chosen, tenants t WHERE c.tenant_id = $1 "
    "AND t.id = $1",
    "INSERT INTO labels AS l (tenant_id, inbox_id, name) VALUES ($1, $2, $3) "
    "ON CONFLICT (tenant_id, inbox_id, name) DO NOTHING",
    "DELETE FROM grace_period_assignments g USING requeued r "
    "WHERE g.tenant_id = $1 AND g.conversation_id = r.id",
]
BAD = {
    "joined table without its own predicate":
        "SELECT c.id FROM conversation_refs c JOIN labels l ON l.id = c.label_id "
        "WHERE c.tenant_id = $1",
    "tenant_id only in the select list":
        "SELECT c.tenant_id, c.id FROM conversation_refs c WHERE c.id = $2",
    "tenant matched by a join, not by the parameter":
        "SELECT c.id FROM conversation_refs c JOIN inboxes i ON i.tenant_id = c.tenant_id "
        "WHERE c.tenant_id = $1",
    "subquery without a predicate":
        "SELECT c.id FROM conversation_refs c WHERE c.tenant_id = $1 AND c.id IN "
        "(SELECT cl.conversation_id FROM conversation_labels cl WHERE cl.label_id = $2)",
    "one predicate for two references of one alias":
        "SELECT (SELECT min(q.x) FROM conversation_refs q WHERE q.tenant_id = $1), "
        "(SELECT max(q.x) FROM conversation_refs q WHERE q.inbox_id = $2)",
    "second table of a FROM list":
        "UPDATE conversation_refs c SET x = 1 FROM chosen, labels l WHERE c.tenant_id = $1",
    "unqualified predicate with two tables":
        "SELECT 1 FROM operators JOIN operator_status ON true WHERE tenant_id = $1",
    "tenants row by a join":
        "SELECT t.name FROM conversation_refs c JOIN tenants t ON t.id = c.tenant_id "
        "WHERE c.tenant_id = $1",
    "INSERT without tenant_id":
        "INSERT INTO operator_status (operator_id, status) VALUES ($2, 'OFFLINE')",
    "INSERT … SELECT with the default id":
        "INSERT INTO operator_status (tenant_id, operator_id, status) "
        "SELECT o.tenant_id, o.id, 'OFFLINE' FROM operators o WHERE o.tenant_id = $1",
    "ON CONFLICT target without tenant_id":
        "INSERT INTO labels (tenant_id, inbox_id, name) VALUES ($1, $2, $3) "
        "ON CONFLICT (inbox_id, name) DO NOTHING",
    "update target without a predicate":
        "UPDATE labels l SET name = $3 WHERE l.id = $2",
    "predicate only in a comment or string":
        "SELECT 1 FROM labels l WHERE l.id = $2 -- l.tenant_id = $1\n AND 'l.tenant_id = $1' = ''",
}  # fmt: skip


@pytest.mark.parametrize("statement", GOOD)
def test_checker_accepts(statement: str) -> None:
    assert tenant_scope_problems(statement) == []


@pytest.mark.parametrize("case", sorted(BAD))
def test_checker_rejects(case: str) -> None:
    assert tenant_scope_problems(BAD[case]) != []


# ---- the statements ----------------------------------------------------------------------


def sql_constants() -> dict[str, str]:
    found = {}
    for module_info in pkgutil.iter_modules(inbox_allocation.sql.__path__):
        module = importlib.import_module(f"inbox_allocation.sql.{module_info.name}")
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str):
                found[f"{module_info.name}.{name}"] = value
    return found


def test_there_are_statements_to_check() -> None:
    assert len(sql_constants()) > 20


@pytest.mark.parametrize("name", sorted(sql_constants()))
def test_statement_is_tenant_scoped(name: str) -> None:
    statement = sql_constants()[name]
    if name in ALL_TENANTS:
        return
    assert tenant_scope_problems(statement) == [], name


def test_exemptions_still_exist() -> None:
    assert set(ALL_TENANTS) <= set(sql_constants())


def test_no_sql_outside_the_sql_package() -> None:
    package = Path(inbox_allocation.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "sql" and path.parent.parent == package:
            continue
        if path.name == "seed.py" and path.parent.name == "db":
            continue
        for match in re.finditer(r'"""(.*?)"""|"([^"\n]*)"', path.read_text(), re.DOTALL):
            text = match.group(1) or match.group(2) or ""
            if SQL_TEXT.search(text) and APPLICATION_TABLES.search(text):
                offenders.append(f"{path.relative_to(package)}: {text.strip()[:60]!r}")
    assert offenders == []
