"""`inbox-allocation tenant create | list`: onboarding a customer from the command line, on
the embedded default and on a configured database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from inbox_allocation.db.seed_ids import ACME
from inbox_allocation.processes import free_port, world_traversable_tempdir
from tests.support.http import headers
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_URL", "EMBEDDED_DB_DIR"))
    }
    return subprocess.run(
        [sys.executable, "-m", "inbox_allocation", *args],
        cwd=ROOT,
        env={**clean, "LOG_LEVEL": "warning", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def single_json_line(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


# --- Embedded default ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_env() -> Iterator[dict[str, str]]:
    """A fresh embedded data dir (0755, so the unprivileged server can enter it)."""
    base = world_traversable_tempdir("inbox-allocation-tenant-cli-")
    yield {"EMBEDDED_DB_DIR": str(base / "pg"), "DB_PORT": str(free_port())}
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.no_db
def test_create_and_list_on_the_embedded_default(embedded_env: dict[str, str]) -> None:
    created = single_json_line(cli("tenant", "create", "--name", "Globex", **embedded_env))
    assert isinstance(created, dict)
    assert set(created) == {"tenant_id", "admin_operator_id"}
    tenant_id = uuid.UUID(created["tenant_id"])
    uuid.UUID(created["admin_operator_id"])

    listed = single_json_line(cli("tenant", "list", **embedded_env))
    assert isinstance(listed, list)
    # A fresh embedded database: migrated by the command, not seeded.
    assert [tenant["name"] for tenant in listed] == ["Globex"]
    (globex,) = listed
    assert globex["id"] == str(tenant_id)
    assert (globex["priority_weight_alpha"], globex["priority_weight_beta"]) == (0.5, 0.5)
    assert globex["created_at"].endswith("Z")


@pytest.mark.no_db
def test_a_duplicate_name_is_a_clear_error(embedded_env: dict[str, str]) -> None:
    cli("tenant", "create", "--name", "Initech", **embedded_env)
    again = cli("tenant", "create", "--name", "Initech", **embedded_env)
    assert again.returncode == 1
    assert again.stdout == ""
    assert again.stderr.strip().splitlines()[-1] == (
        "inbox-allocation: a tenant named 'Initech' already exists"
    )


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "1.5", "--beta", "-0.5"], "alpha: must be between 0 and 1"),
        (["--alpha", "0.7", "--beta", "0.7"], "alpha + beta: must be 1 (within 0.01)"),
        (["--alpha", "0.7"], "alpha + beta: must be 1 (within 0.01)"),  # beta stays 0.5
        (["--alpha", "nan", "--beta", "0.5"], "must be finite numbers"),
    ],
)
def test_invalid_weights_are_refused_before_any_database_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    data_dir = tmp_path / "never-created"
    result = cli(
        "tenant", "create", "--name", "Umbrella", *args,
        EMBEDDED_DB_DIR=str(data_dir), DB_PORT=str(free_port()),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not data_dir.exists()


@pytest.mark.no_db
def test_a_blank_name_is_refused(tmp_path: Path) -> None:
    result = cli("tenant", "create", "--name", "  ", EMBEDDED_DB_DIR=str(tmp_path / "pg"))
    assert result.returncode == 2
    assert "name: must not be empty" in result.stderr


@pytest.mark.no_db
def test_the_name_is_required() -> None:
    result = cli("tenant", "create")
    assert result.returncode == 2
    assert "--name" in result.stderr


# --- Configured database ---------------------------------------------------------------------


async def test_create_on_a_configured_database_provisions_a_usable_admin(
    dsn: str, db: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    args = ["tenant", "create", "--name", "Hooli", "--alpha", "0.7", "--beta", "0.3"]
    created = single_json_line(cli(*args, DATABASE_URL=dsn))
    assert isinstance(created, dict)
    tenant_id, admin_id = created["tenant_id"], created["admin_operator_id"]
    row = await db.fetchrow(
        "SELECT t.name, t.priority_weight_alpha::float8 AS alpha, "
        "t.priority_weight_beta::float8 AS beta, o.role::text AS role, s.status::text AS status "
        "FROM tenants t JOIN operators o ON o.tenant_id = t.id "
        "JOIN operator_status s ON s.tenant_id = o.tenant_id AND s.operator_id = o.id "
        "WHERE t.id = $1",
        uuid.UUID(tenant_id),
    )
    assert row is not None
    assert dict(row) == {
        "name": "Hooli", "alpha": 0.7, "beta": 0.3, "role": "ADMIN", "status": "OFFLINE",
    }  # fmt: skip
    operators = await db.fetchval(
        "SELECT count(*) FROM operators WHERE tenant_id = $1", uuid.UUID(tenant_id)
    )
    assert operators == 1

    # The printed ids are all the customer's administrator needs to start using the API.
    tenant = await client.get("/api/v1/tenant", headers=headers(admin_id, tenant_id))
    assert tenant.status_code == 200
    assert tenant.json()["data"]["name"] == "Hooli"
    status = await client.get("/api/v1/operator/status", headers=headers(admin_id, tenant_id))
    assert status.json()["data"]["status"] == "OFFLINE"
    inbox = await client.post(
        "/api/v1/inboxes",
        headers=headers(admin_id, tenant_id),
        json={"phone_number": "+15557770000", "display_name": "Hooli Sales"},
    )
    assert inbox.status_code == 201


async def test_duplicate_on_a_configured_database(dsn: str, db: asyncpg.Pool) -> None:
    before = await db.fetchval("SELECT count(*) FROM operators")
    result = cli("tenant", "create", "--name", "Acme Corp", DATABASE_URL=dsn)  # a seed tenant
    assert result.returncode == 1
    assert "a tenant named 'Acme Corp' already exists" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM operators") == before  # nothing written


async def test_weights_within_the_tolerance_are_accepted(dsn: str, db: asyncpg.Pool) -> None:
    args = ["tenant", "create", "--name", "Tolerance", "--alpha", "0.6", "--beta", "0.41"]
    created = single_json_line(cli(*args, DATABASE_URL=dsn))
    assert isinstance(created, dict)
    weights = await db.fetchrow(
        "SELECT priority_weight_alpha::text AS a, priority_weight_beta::text AS b FROM tenants "
        "WHERE id = $1",
        uuid.UUID(created["tenant_id"]),
    )
    assert weights is not None
    assert (weights["a"], weights["b"]) == ("0.6000", "0.4100")


async def test_list_on_a_configured_database(dsn: str) -> None:
    listed = single_json_line(cli("tenant", "list", DATABASE_URL=dsn))
    assert isinstance(listed, list)
    by_name = {tenant["name"]: tenant for tenant in listed}
    assert set(by_name) == {"Acme Corp", "TechStart Inc"}  # the seed
    acme = by_name["Acme Corp"]
    assert set(acme) == {"id", "name", "priority_weight_alpha", "priority_weight_beta",
                         "created_at"}  # fmt: skip
    assert (acme["id"], acme["priority_weight_alpha"], acme["priority_weight_beta"]) == (
        ACME,
        0.6,
        0.4,
    )


async def test_a_configured_database_without_schema_is_not_migrated_unasked(
    dsn: str, db: asyncpg.Pool
) -> None:
    name = f"empty_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE DATABASE {name}")
    try:
        empty = dsn.rsplit("/", 1)[0] + f"/{name}"
        result = cli("tenant", "create", "--name", "Nobody", DATABASE_URL=empty)
        assert result.returncode == 1
        assert "inbox-allocation migrate up" in result.stderr
        conn = await asyncpg.connect(empty)
        try:
            assert await conn.fetchval("SELECT to_regclass('tenants')") is None
        finally:
            await conn.close()
    finally:
        await db.execute(f"DROP DATABASE {name} WITH (FORCE)")
