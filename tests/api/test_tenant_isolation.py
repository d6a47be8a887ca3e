"""Tenant isolation on every /api/v1 route (docs/decisions.md#identity-and-tenants).

(a) An operator of another tenant naming Acme in X-Tenant-ID is 401 UNAUTHORIZED on every
    route, and nothing in the database changes (idempotency keys included).
(b) A legitimate Acme member naming TechStart objects gets exactly the answer a missing id
    gets (404 with the route's code, or an empty list): never a 2xx on the object, never a
    403 or 409 that would reveal it exists, no TechStart id or name in the body, and no
    TechStart row changes.

The routes and their requests come from tests/support/route_catalog.py; a route the app serves
without an entry there fails `test_catalog_covers_every_api_route`.
"""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    TECH_ADMIN,
    TECH_OP14,
    TECHSTART,
    conversation,
)
from tests.support.route_catalog import (
    ROUTE_IDS,
    ROUTES,
    TS_QUEUED,
    Call,
    Foreign,
    Route,
    catalog_keys,
    diff,
    error_code,
    leaked,
    outcome,
    send,
    served_api_routes,
    snapshot_all,
    snapshot_tenant,
    tenant_tokens,
)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# --- coverage -------------------------------------------------------------------------------


@pytest.mark.no_db
async def test_catalog_covers_every_api_route(app: FastAPI) -> None:
    keys = catalog_keys()
    assert len(keys) == len(set(keys)), "a route is listed twice in tests/support/route_catalog.py"
    served = served_api_routes(app)
    missing = sorted(served - set(keys))
    stale = sorted(set(keys) - served)
    assert not missing, f"routes without an isolation case (add them to ROUTES): {missing}"
    assert not stale, f"catalog routes the app does not serve: {stale}"
    assert all(route.foreign for route in ROUTES)
    misplaced = [
        f"{route.id}: {call.describe()}"
        for route in ROUTES
        for call in (route.call, *(case.call for case in route.foreign))
        if not route.matches(call)
    ]
    assert not misplaced, f"catalog requests that do not match their route: {misplaced}"


# --- (a) the operator must belong to the X-Tenant-ID tenant -----------------------------------

# (caller, X-Tenant-ID): TechStart's ADMIN and OPERATOR claiming Acme, and Acme's ADMIN
# claiming TechStart. The request itself is the route's valid Acme request.
FOREIGN_IDENTITIES = (
    (TECH_ADMIN, ACME),
    (TECH_OP14, ACME),
    (ACME_ADMIN, TECHSTART),
)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_operator_of_another_tenant_is_unauthorized(
    client: httpx.AsyncClient, db: asyncpg.Pool, route: Route
) -> None:
    before = await snapshot_all(db)
    problems = []
    for operator, tenant in FOREIGN_IDENTITIES:
        response = await send(
            client,
            route.call,
            operator=operator,
            tenant=tenant,
            idempotency_key=f"isolation-{uuid.uuid4()}",
        )
        body = response.json() if response.content else None
        if (response.status_code, error_code(response)) != (401, "UNAUTHORIZED") or (
            isinstance(body, dict) and "data" in body
        ):
            problems.append(
                f"operator {operator} in tenant {tenant}: {route.call.describe()} "
                f"→ {outcome(response)}"
            )
    if changes := diff(before, await snapshot_all(db)):
        problems.append(f"the refused requests changed the database: {changes}")
    assert not problems, "expected 401 UNAUTHORIZED and no change:\n" + "\n".join(problems)


# --- (b) another tenant's ids look exactly like missing ids -----------------------------------

FOREIGN_CASES = [(route, case) for route in ROUTES for case in route.foreign]
FOREIGN_IDS = [f"{route.id} [{case.name}]" for route, case in FOREIGN_CASES]


def _check(case: Foreign, caller: str, response: httpx.Response, tokens: set[str]) -> list[str]:
    """What is wrong with the answer to `case` (empty when nothing)."""
    where = f"caller {caller}: {case.call.describe()} → {outcome(response)}"
    problems = []
    expected = (case.status, case.code)
    actual = (response.status_code, error_code(response) if case.code else None)
    if actual != expected:
        problems.append(f"expected {expected}; {where}")
    if response.status_code == 403:
        problems.append(f"403 reveals that the object exists; {where}")
    if case.empty is not None and response.status_code == 200:
        items = response.json()["data"][case.empty]
        if items != []:
            problems.append(f"expected no {case.empty}; {where}")
    if found := leaked(response, tokens, case.call):
        problems.append(f"TechStart data in the body {found}; {where}")
    return problems


@pytest.mark.parametrize(("route", "case"), FOREIGN_CASES, ids=FOREIGN_IDS)
async def test_ids_of_another_tenant_look_missing(
    client: httpx.AsyncClient, db: asyncpg.Pool, route: Route, case: Foreign
) -> None:
    assert case.call.method == route.method
    tokens = await tenant_tokens(db, TECHSTART)
    techstart_before = await snapshot_tenant(db, TECHSTART)
    everything_before = await snapshot_all(db, skip=("idempotency_keys",))

    problems: list[str] = []
    answers: dict[str, tuple[int, str | None]] = {}
    for caller in case.callers:
        response = await send(
            client, case.call, operator=caller, idempotency_key=f"isolation-{uuid.uuid4()}"
        )
        answers[caller] = (response.status_code, error_code(response))
        problems += _check(case, caller, response, tokens)

    techstart_changes = diff(techstart_before, await snapshot_tenant(db, TECHSTART))
    everything_changes = diff(everything_before, await snapshot_all(db, skip=("idempotency_keys",)))

    # The same request with never-existing ids instead of TechStart's must be answered alike.
    sent = " ".join(case.call.strings())
    foreign_ids = sorted(token for token in tokens if _is_uuid(token) and token in sent)
    if foreign_ids:
        twin = case.call.substitute({old: str(uuid.uuid4()) for old in foreign_ids})
        for caller in case.callers:
            response = await send(client, twin, operator=caller)
            missing = (response.status_code, error_code(response))
            if missing != answers[caller]:
                problems.append(
                    f"caller {caller}: TechStart ids answered {answers[caller]}, missing ids "
                    f"answered {missing} ({twin.describe()})"
                )

    if techstart_changes:
        problems.append(f"TechStart rows changed: {techstart_changes}")
    if case.status >= 400 and everything_changes:
        problems.append(f"a refused request changed rows: {everything_changes}")
    assert not problems, "\n".join(problems)


# --- idempotency keys are per tenant and operator -------------------------------------------


async def test_idempotency_key_never_replays_across_tenants(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """docs/decisions.md#idempotency: the key's scope is (tenant, operator, method, path, key).
    Another tenant's operator reusing a key must neither get the stored Acme response replayed nor
    be refused as a reuse (422), which would reveal that Acme used the key."""
    key = f"shared-{uuid.uuid4()}"
    acme_call = Call("POST", "/api/v1/claim", body={"conversation_id": conversation(1)})
    first = await send(client, acme_call, operator=ACME_ADMIN, idempotency_key=key)
    assert first.status_code == 200, outcome(first)

    # The same request and key by TechStart's ADMIN naming Acme: refused, not replayed.
    foreign = await send(client, acme_call, operator=TECH_ADMIN, idempotency_key=key)
    assert (foreign.status_code, error_code(foreign)) == (401, "UNAUTHORIZED"), outcome(foreign)
    assert "idempotent-replayed" not in foreign.headers

    # The same key in TechStart's own tenant is an unrelated key: its request runs.
    techstart_call = Call("POST", "/api/v1/claim", body={"conversation_id": TS_QUEUED})
    own = await send(
        client, techstart_call, operator=TECH_ADMIN, tenant=TECHSTART, idempotency_key=key
    )
    assert own.status_code == 200, outcome(own)
    assert "idempotent-replayed" not in own.headers
    assert own.json()["data"]["id"] == TS_QUEUED
    acme_tokens = await tenant_tokens(db, ACME)
    assert not leaked(own, acme_tokens, techstart_call)
