"""Lint: every SQL statement on tenant data is scoped by tenant.

All SQL lives as string constants in `inbox_allocation.sql.*` (checked below: no SQL text
anywhere else in the package), and every constant that touches an application table must
carry a tenant condition. The only exceptions are background workers that serve all
tenants by design; each is listed with its reason.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import inbox_allocation
import inbox_allocation.sql

pytestmark = pytest.mark.no_db

APPLICATION_TABLES = re.compile(
    r"\b(tenants|inboxes|operators|operator_inbox_subscriptions|operator_status|"
    r"conversation_refs|labels|conversation_labels|grace_period_assignments|"
    r"idempotency_keys|api_tokens|api_token_lookup)\b"
)
TENANT_CONDITION = re.compile(r"\btenant_id\b|\btenants\b.*\bid\s*=\s*\$1")

# Statements that serve every tenant at once, by design (not request paths).
ALL_TENANTS = {
    "grace.EXPIRED_CANDIDATES": "sweeper: finds expired grace rows of every tenant",
    "grace.LOCK_OPERATOR_STATUSES": "sweeper: by operator ids it just read",
    "grace.RELEASE": "sweeper: by conversation ids it locked (tenant-matched in LOCK_EXPIRED)",
    "grace.DELETE_ROWS": "sweeper: by grace row ids it locked",
    "idempotency.DELETE_EXPIRED_BATCH": "cleanup worker: expired keys of every tenant",
    "queue_aging.FLAG_AGED": "aging sweeper: queued rows of every inbox crossing 24 h",
    "maintenance.NO_TENANTS_YET": "CLI: is the fresh embedded database empty (seed it)?",
    "stats.QUEUE_BY_TENANT": "GET /metrics: queued conversations and oldest wait per tenant",
    "tenant_admin.LIST_TENANTS": "CLI `tenant list`: every tenant, for the operator",
    "tokens.FIND_BY_HASH": "authentication: the token's hash is what finds its tenant",
}

SQL_TEXT = re.compile(r"\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b",
                      re.IGNORECASE | re.DOTALL)  # fmt: skip


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
    if not APPLICATION_TABLES.search(statement) or name in ALL_TENANTS:
        return
    assert TENANT_CONDITION.search(statement), f"{name} has no tenant condition"


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
