"""Who may call what: every /api/v1 route × the three Acme roles, and the identity headers.

- Route guards (docs/decisions.md#roles): Manager → OPERATOR gets 403 FORBIDDEN; Admin → OPERATOR
and MANAGER get 403 FORBIDDEN. Service-level rules: deallocate/reassign/move_inbox by OPERATOR
  → 403 INSUFFICIENT_PERMISSIONS; label create/update/delete by OPERATOR → 403
  LABEL_PERMISSION_DENIED; subscription rules (claim → NOT_SUBSCRIBED_TO_INBOX, labels →
  LABEL_PERMISSION_DENIED). An allowed role gets the route's success status; a refused one
  changes nothing.
- Identity headers (docs/decisions.md#check-order: malformed headers, then missing
  tenant, then missing operator): missing X-Tenant-ID → 400 TENANT_REQUIRED, missing
  X-Operator-ID → 400 OPERATOR_REQUIRED, malformed either → 400 BAD_REQUEST, unknown
  operator or tenant → 401 UNAUTHORIZED, on every route, writing nothing.

The routes and their requests come from tests/support/route_catalog.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    INBOX_BILLING,
    INBOX_SUPPORT,
    TECH_ADMIN,
    conversation,
    label,
)
from tests.support.route_catalog import (
    ACME_CALLER,
    ROLES,
    ROUTE_IDS,
    ROUTES,
    Call,
    Role,
    Route,
    catalog_keys,
    diff,
    error_code,
    outcome,
    send,
    served_api_routes,
    snapshot_all,
)

UNKNOWN_OPERATOR = "30000000-0000-0000-0000-000000000999"
UNKNOWN_TENANT = "10000000-0000-0000-0000-000000000999"


# --- coverage -------------------------------------------------------------------------------


@pytest.mark.no_db
async def test_catalog_covers_every_api_route(app: FastAPI) -> None:
    served = served_api_routes(app)
    keys = set(catalog_keys())
    missing = sorted(served - keys)
    stale = sorted(keys - served)
    assert not missing, f"routes without a role entry (add them to ROUTES): {missing}"
    assert not stale, f"catalog routes the app does not serve: {stale}"


# --- role × route ---------------------------------------------------------------------------

MATRIX = [(route, role) for route in ROUTES for role in ROLES]
MATRIX_IDS = [f"{route.id} as {role}" for route, role in MATRIX]


@pytest.mark.parametrize(("route", "role"), MATRIX, ids=MATRIX_IDS)
async def test_role_matrix(
    client: httpx.AsyncClient, db: asyncpg.Pool, route: Route, role: Role
) -> None:
    refusal = route.refused.get(role)
    before = await snapshot_all(db) if refusal else {}
    response = await send(client, route.call, operator=ACME_CALLER[role])
    where = f"{role} {ACME_CALLER[role]}: {route.call.describe()} → {outcome(response)}"
    if refusal is None:
        assert response.status_code not in (401, 403), f"allowed role refused; {where}"
        assert response.status_code == route.ok_status, f"expected {route.ok_status}; {where}"
        return
    assert (response.status_code, error_code(response)) == (refusal.status, refusal.code), where
    changes = diff(before, await snapshot_all(db))
    assert not changes, f"a refused request changed rows: {changes}"


# --- rules that depend on the caller's subscriptions ----------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    operator: str
    call: Call
    status: int
    code: str | None = None


def _c(
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    body: dict[str, str] | None = None,
) -> Call:
    return Call(method, "/api/v1" + path, params or {}, body)


# Operator 3…04 is subscribed to inbox 1 only; manager 3…02 to inboxes 1 and 2.
SUBSCRIPTION_RULES = (
    Rule("OPERATOR claims in an unsubscribed inbox", ACME_OP4,
         _c("POST", "/claim", body={"conversation_id": conversation(16)}),
         403, "NOT_SUBSCRIBED_TO_INBOX"),
    Rule("MANAGER claims in an unsubscribed inbox", ACME_MANAGER,
         _c("POST", "/claim", body={"conversation_id": conversation(31)}),
         403, "NOT_SUBSCRIBED_TO_INBOX"),
    Rule("OPERATOR resolves another operator's conversation", ACME_OP4,
         _c("POST", "/resolve", body={"conversation_id": conversation(6)}),
         403, "INSUFFICIENT_PERMISSIONS"),
    # docs/decisions.md#lifecycle-transitions: resolving a RESOLVED conversation runs the same
    # permission checks.
    Rule("OPERATOR resolves another operator's resolved conversation", ACME_OP5,
         _c("POST", "/resolve", body={"conversation_id": conversation(8)}),
         403, "INSUFFICIENT_PERMISSIONS"),
    Rule("MANAGER resolves any conversation", ACME_MANAGER,
         _c("POST", "/resolve", body={"conversation_id": conversation(33)}), 200),
    Rule("OPERATOR lists labels of an unsubscribed inbox", ACME_OP4,
         _c("GET", "/labels", {"inbox_id": INBOX_SUPPORT}), 403, "LABEL_PERMISSION_DENIED"),
    Rule("MANAGER lists labels of an unsubscribed inbox", ACME_MANAGER,
         _c("GET", "/labels", {"inbox_id": INBOX_BILLING}), 200),
    Rule("OPERATOR attaches in an unsubscribed inbox", ACME_OP4,
         _c("POST", "/labels/attach", body={
             "conversation_id": conversation(19), "label_id": label(4)}),
         403, "LABEL_PERMISSION_DENIED"),
    Rule("OPERATOR detaches in an unsubscribed inbox", ACME_OP4,
         _c("POST", "/labels/detach", body={
             "conversation_id": conversation(16), "label_id": label(4)}),
         403, "LABEL_PERMISSION_DENIED"),
    Rule("MANAGER attaches in an unsubscribed inbox", ACME_MANAGER,
         _c("POST", "/labels/attach", body={
             "conversation_id": conversation(32), "label_id": label(8)}), 204),
    Rule("ADMIN detaches anywhere", ACME_ADMIN,
         _c("POST", "/labels/detach", body={
             "conversation_id": conversation(31), "label_id": label(8)}), 204),
    # Access denied to an OPERATOR is answered 404.
    Rule("OPERATOR reads a conversation of an unsubscribed inbox", ACME_OP4,
         _c("GET", f"/conversations/{conversation(16)}"), 404, "NOT_FOUND"),
    Rule("MANAGER reads a conversation of an unsubscribed inbox", ACME_MANAGER,
         _c("GET", f"/conversations/{conversation(31)}"), 200),
)  # fmt: skip


@pytest.mark.parametrize("rule", SUBSCRIPTION_RULES, ids=[r.name for r in SUBSCRIPTION_RULES])
async def test_subscription_rules(client: httpx.AsyncClient, db: asyncpg.Pool, rule: Rule) -> None:
    before = await snapshot_all(db)
    response = await send(client, rule.call, operator=rule.operator)
    where = f"{rule.operator}: {rule.call.describe()} → {outcome(response)}"
    if rule.code is None:
        assert response.status_code == rule.status, where
        return
    assert (response.status_code, error_code(response)) == (rule.status, rule.code), where
    changes = diff(before, await snapshot_all(db))
    assert not changes, f"a refused request changed rows: {changes}"


async def test_operator_visibility_in_lists(client: httpx.AsyncClient) -> None:
    """Role OPERATOR sees only its subscribed inboxes in list and search;
    MANAGER and ADMIN see the whole tenant."""
    listed = await send(
        client, _c("GET", "/conversations", {"inbox_id": INBOX_SUPPORT}), operator=ACME_OP4
    )
    assert listed.status_code == 200, outcome(listed)
    assert listed.json()["data"]["conversations"] == []
    searched = await send(
        client, _c("GET", "/search", {"phone": "+14155552001"}), operator=ACME_OP4
    )
    assert searched.status_code == 200, outcome(searched)
    assert searched.json()["data"]["conversations"] == []
    for manager in (ACME_MANAGER, ACME_ADMIN):
        found = await send(
            client, _c("GET", "/search", {"phone": "+14155553001"}), operator=manager
        )  # inbox 3: the manager is not subscribed, the admin is
        assert [c["id"] for c in found.json()["data"]["conversations"]] == [conversation(31)]


# --- identity headers -----------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderCase:
    name: str
    tenant: str | None  # None: header absent
    operator: str | None
    status: int
    code: str


HEADER_CASES = (
    HeaderCase("no headers", None, None, 400, "TENANT_REQUIRED"),
    HeaderCase("no tenant", None, ACME_ADMIN, 400, "TENANT_REQUIRED"),
    HeaderCase("empty tenant", "", ACME_ADMIN, 400, "TENANT_REQUIRED"),
    HeaderCase("no operator", ACME, None, 400, "OPERATOR_REQUIRED"),
    HeaderCase("empty operator", ACME, "", 400, "OPERATOR_REQUIRED"),
    HeaderCase("malformed tenant", "acme", ACME_ADMIN, 400, "BAD_REQUEST"),
    HeaderCase("malformed operator", ACME, "admin-1", 400, "BAD_REQUEST"),
    HeaderCase("both malformed", "acme", "admin-1", 400, "BAD_REQUEST"),
    HeaderCase("malformed tenant, no operator", "acme", None, 400, "BAD_REQUEST"),
    # Malformed headers are checked (docs/decisions.md#check-order) before a missing tenant (step
    # 7).
    HeaderCase("malformed operator, no tenant", None, "admin-1", 400, "BAD_REQUEST"),
    HeaderCase("tenant with a bad last digit", ACME[:-1] + "x", ACME_ADMIN, 400, "BAD_REQUEST"),
    HeaderCase("unknown operator", ACME, UNKNOWN_OPERATOR, 401, "UNAUTHORIZED"),
    HeaderCase("unknown tenant", UNKNOWN_TENANT, ACME_ADMIN, 401, "UNAUTHORIZED"),
)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_identity_headers(client: httpx.AsyncClient, db: asyncpg.Pool, route: Route) -> None:
    before = await snapshot_all(db)
    problems = []
    for case in HEADER_CASES:
        response = await send(
            client,
            route.call,
            operator=case.operator,
            tenant=case.tenant,
            idempotency_key="identity-headers",
        )
        if (response.status_code, error_code(response)) != (case.status, case.code):
            problems.append(
                f"{case.name} (X-Tenant-ID={case.tenant!r}, X-Operator-ID={case.operator!r}): "
                f"expected {case.status} {case.code}, got {outcome(response)}"
            )
    changes = diff(before, await snapshot_all(db))
    assert not problems, f"{route.call.describe()}\n" + "\n".join(problems)
    assert not changes, f"a refused request changed rows: {changes}"


BODY_ROUTES = [route for route in ROUTES if route.call.method in ("POST", "PUT")]


@pytest.mark.no_db  # refused before anything is read; the next test reseeds anyway
@pytest.mark.parametrize("route", BODY_ROUTES, ids=[route.id for route in BODY_ROUTES])
async def test_identity_is_checked_before_the_body(client: httpx.AsyncClient, route: Route) -> None:
    """docs/decisions.md#check-order: identity headers (steps 5–8) and route guards (step 9) are
    checked before the handler parses the body, so they win over a body that is not JSON."""
    cases: list[tuple[str | None, str | None, int, str]] = [
        (None, ACME_ADMIN, 400, "TENANT_REQUIRED"),
        (ACME, None, 400, "OPERATOR_REQUIRED"),
        (ACME, UNKNOWN_OPERATOR, 401, "UNAUTHORIZED"),
        (ACME, TECH_ADMIN, 401, "UNAUTHORIZED"),
    ]
    cases += [
        (ACME, ACME_CALLER[role], refusal.status, refusal.code)
        for role, refusal in route.refused.items()
        if refusal.code == "FORBIDDEN"  # route guards; service-level rules come after the body
    ]
    problems = []
    for tenant, operator, status, code in cases:
        response = await send(
            client, route.call, operator=operator, tenant=tenant, raw_body=b'{"broken'
        )
        if (response.status_code, error_code(response)) != (status, code):
            problems.append(
                f"X-Tenant-ID={tenant!r}, X-Operator-ID={operator!r}, body not JSON: expected "
                f"{status} {code}, got {outcome(response)}"
            )
    assert not problems, f"{route.call.describe()}\n" + "\n".join(problems)
