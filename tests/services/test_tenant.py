"""The tenant: GET /api/v1/tenant and PUT /api/v1/tenant/weights (rules in
docs/decisions.md#field-aliases).
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.envelope import Envelope, ErrorEnvelope
from inbox_allocation.api.schemas.tenant import TenantOut
from inbox_allocation.db.seed_ids import ACME, TECHSTART
from inbox_allocation.db.seed_ids import operator as op
from tests.support.http import error_code

URL = "/api/v1/tenant"
WEIGHTS = "/api/v1/tenant/weights"


ADMIN, MANAGER, OPERATOR = op(1), op(2), op(4)
TS_ADMIN = op(11)


def as_(operator: str, tenant: str = ACME) -> dict[str, str]:
    return {"X-Tenant-ID": tenant, "X-Operator-ID": operator}


async def stored(db: asyncpg.Pool, tenant: str = ACME) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT priority_weight_alpha::float8 AS alpha, priority_weight_beta::float8 AS beta, "
        "updated_at, updated_by FROM tenants WHERE id = $1",
        UUID(tenant),
    )
    assert row is not None
    return row


# --- GET /tenant ----------------------------------------------------------------------------


async def test_get_returns_the_callers_tenant(client: httpx.AsyncClient) -> None:
    for path in (URL, URL + "/"):
        response = await client.get(path, headers=as_(ADMIN))
        assert response.status_code == 200
        data = Envelope[TenantOut].model_validate(response.json()).data
        assert (str(data.id), data.name) == (ACME, "Acme Corp")
        assert (data.priority_weight_alpha, data.priority_weight_beta) == (0.6, 0.4)
        assert "updated_by" not in response.json()["data"]
    techstart = await client.get(URL, headers=as_(TS_ADMIN, TECHSTART))
    ts = Envelope[TenantOut].model_validate(techstart.json()).data
    assert (str(ts.id), ts.name, ts.priority_weight_alpha) == (TECHSTART, "TechStart Inc", 0.5)


async def test_weights_are_json_numbers(client: httpx.AsyncClient) -> None:
    response = await client.get(URL, headers=as_(ADMIN))
    assert response.json()["data"]["priority_weight_alpha"] == 0.6
    assert b'"priority_weight_alpha":0.6' in response.content


@pytest.mark.parametrize("caller", [MANAGER, OPERATOR])
async def test_get_needs_an_admin(client: httpx.AsyncClient, caller: str) -> None:
    response = await client.get(URL, headers=as_(caller))
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"


async def test_another_tenants_admin_is_unauthorised(client: httpx.AsyncClient) -> None:
    response = await client.get(URL, headers=as_(TS_ADMIN, ACME))
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHORIZED"


# --- PUT /tenant/weights --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"alpha": 0.7, "beta": 0.3},
        {"weight_message_count": 0.7, "weight_wait_time": 0.3},
        {"alpha": 0.7, "weight_wait_time": 0.3},
        {"alpha": 0.7, "beta": 0.3, "weight_message_count": 0.1, "weight_wait_time": 0.9},
    ],
)
async def test_update_stores_the_weights_under_either_name(
    client: httpx.AsyncClient, db: asyncpg.Pool, body: dict[str, float]
) -> None:
    before = await stored(db)
    response = await client.put(WEIGHTS, headers=as_(ADMIN), json=body)
    assert response.status_code == 200
    data = Envelope[TenantOut].model_validate(response.json()).data
    assert (str(data.id), data.name) == (ACME, "Acme Corp")
    assert (data.priority_weight_alpha, data.priority_weight_beta) == (0.7, 0.3)
    after = await stored(db)
    assert (after["alpha"], after["beta"]) == (0.7, 0.3)
    assert after["updated_by"] == UUID(ADMIN)
    assert after["updated_at"] > before["updated_at"]
    assert data.updated_at == after["updated_at"]
    techstart = await stored(db, TECHSTART)
    assert (techstart["alpha"], techstart["beta"], techstart["updated_by"]) == (0.5, 0.5, None)


async def test_update_accepts_integers_and_a_missing_weight_as_zero(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.put(WEIGHTS, headers=as_(ADMIN), json={"alpha": 1})
    assert response.status_code == 200
    assert (await stored(db))["alpha"] == 1.0
    assert (await stored(db))["beta"] == 0.0
    nulls = await client.put(WEIGHTS, headers=as_(ADMIN), json={"alpha": None, "beta": 1})
    assert nulls.status_code == 200
    assert ((await stored(db))["alpha"], (await stored(db))["beta"]) == (0.0, 1.0)


async def test_update_responds_with_the_stored_rounded_values(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.put(
        WEIGHTS, headers=as_(ADMIN), json={"alpha": 0.12345, "beta": 0.87651}
    )
    assert response.status_code == 200
    data = Envelope[TenantOut].model_validate(response.json()).data
    # numeric(5,4) rounds half away from zero (the response shows what is stored).
    assert (data.priority_weight_alpha, data.priority_weight_beta) == (0.1235, 0.8765)
    after = await stored(db)
    assert (after["alpha"], after["beta"]) == (0.1235, 0.8765)
    get = Envelope[TenantOut].model_validate((await client.get(URL, headers=as_(ADMIN))).json())
    assert (get.data.priority_weight_alpha, get.data.priority_weight_beta) == (0.1235, 0.8765)


@pytest.mark.parametrize(
    "body",
    [
        {"alpha": 0.6, "beta": 0.41},  # sum 1.01
        {"alpha": 0.6, "beta": 0.39},  # sum 0.99
        {"alpha": 0.0, "beta": 1.0},
        {"alpha": 1.0, "beta": 0.0},
    ],
)
async def test_update_tolerates_a_sum_within_one_hundredth(
    client: httpx.AsyncClient, body: dict[str, float]
) -> None:
    response = await client.put(WEIGHTS, headers=as_(ADMIN), json=body)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "failed"),
    [
        ({"alpha": 0.6, "beta": 0.42}, ["alpha + beta"]),
        ({"alpha": 0.5, "beta": 0.3}, ["alpha + beta"]),
        ({"alpha": -0.1, "beta": 1.1}, ["alpha", "beta"]),
        ({"alpha": 1.2, "beta": -0.2}, ["alpha", "beta"]),
        ({"alpha": 2, "beta": 2}, ["alpha", "beta", "alpha + beta"]),
        ({"alpha": 1.5, "beta": 0}, ["alpha", "alpha + beta"]),
        ({}, ["alpha + beta"]),
        ({"weight_message_count": 0.5}, ["alpha + beta"]),
        ({"alpha_weight": 0.5, "beta_weight": 0.5}, ["alpha + beta"]),  # unknown names
    ],
)
async def test_update_reports_each_failed_rule(
    client: httpx.AsyncClient, db: asyncpg.Pool, body: dict[str, float], failed: list[str]
) -> None:
    response = await client.put(WEIGHTS, headers=as_(ADMIN), json=body)
    assert response.status_code == 400
    error = ErrorEnvelope.model_validate(response.json()).error
    assert error.code == "VALIDATION_ERROR"
    assert error.details is not None
    assert [d.split(":")[0] for d in error.details] == failed
    after = await stored(db)
    assert (after["alpha"], after["beta"], after["updated_by"]) == (0.6, 0.4, None)


@pytest.mark.parametrize(
    "content",
    [
        b'{"alpha": "0.6", "beta": 0.4}',
        b'{"alpha": true, "beta": 0.4}',
        b'{"weight_wait_time": [0.4], "alpha": 0.6}',
        b"{",
        b"",
        b"[0.6, 0.4]",
    ],
)
async def test_update_with_a_malformed_body_is_a_bad_request(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.put(WEIGHTS, headers=as_(ADMIN), content=content)
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


@pytest.mark.parametrize(
    "content",
    [b'{"alpha": NaN, "beta": 0.5}', b'{"alpha": 0.5, "beta": Infinity}', b'{"alpha": 1e400}'],
)
async def test_update_rejects_non_finite_numbers(
    client: httpx.AsyncClient, db: asyncpg.Pool, content: bytes
) -> None:
    response = await client.put(WEIGHTS, headers=as_(ADMIN), content=content)
    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"
    assert (await stored(db))["alpha"] == 0.6


@pytest.mark.parametrize("caller", [MANAGER, OPERATOR])
async def test_update_needs_an_admin(
    client: httpx.AsyncClient, db: asyncpg.Pool, caller: str
) -> None:
    response = await client.put(WEIGHTS, headers=as_(caller), json={"alpha": 0.5, "beta": 0.5})
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"
    assert (await stored(db))["alpha"] == 0.6


async def test_weights_path_has_no_trailing_slash_variant(client: httpx.AsyncClient) -> None:
    response = await client.put(WEIGHTS + "/", headers=as_(ADMIN), json={"alpha": 1})
    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"
