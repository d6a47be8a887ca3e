"""One entry per /api/v1 route: the shared table of tests/api/test_tenant_isolation.py and
tests/api/test_role_matrix.py.

Adding a route to the app makes both files' coverage checks fail until the route gets an
entry here (`ROUTES`): a valid Acme request, the roles it refuses (docs/decisions.md#roles,
docs/decisions.md#identity-and-tenants) and its cross-tenant cases.

Every entry's `call` is a request with Acme ids that succeeds (`ok_status`) on the seed data
(docs/decisions.md#demo-data) for every Acme role it does not refuse: OPERATOR 3…04, MANAGER
3…02 and ADMIN 3…01, all AVAILABLE and subscribed to inbox 2…01.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import asyncpg
import httpx
from fastapi import FastAPI

from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    ACME_WEBHOOK,
    INBOX_BILLING,
    INBOX_SALES,
    INBOX_SUPPORT,
    INBOX_TECH_GENERAL,
    TECH_ADMIN,
    TECH_OP14,
    TECHSTART_WEBHOOK,
    conversation,
    label,
)
from tests.support.auth import seed_token_id
from tests.support.http import headers

API_PREFIX = "/api/v1"

Role = Literal["OPERATOR", "MANAGER", "ADMIN"]
ROLES: tuple[Role, ...] = ("OPERATOR", "MANAGER", "ADMIN")
ACME_CALLER: dict[Role, str] = {"OPERATOR": ACME_OP4, "MANAGER": ACME_MANAGER, "ADMIN": ACME_ADMIN}

MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE"})

# TechStart objects named by the isolation cases (docs/decisions.md#demo-data).
TS_INBOX = INBOX_TECH_GENERAL  # 2…04
TS_OPERATOR = TECH_OP14  # 3…14, OPERATOR, AVAILABLE, inboxes 4 and 5
TS_ADMIN = TECH_ADMIN  # 3…11, TechStart's only ADMIN
TS_QUEUED = conversation(41)  # inbox 4, label 6…10 attached
TS_ALLOCATED = conversation(43)  # inbox 4, ALLOCATED to 3…14, grace row 9…04
TS_QUEUED_LABELLED = conversation(39)  # inbox 4, QUEUED, label 6…09 attached
TS_RESOLVED = conversation(45)  # inbox 4, RESOLVED by 3…14
TS_LABEL = label(9)  # "New Customer", inbox 4
TS_LABEL_TECHNICAL = label(10)  # "Technical", inbox 4
TS_INBOX_PHONE = "+15559876001"  # phone number of inbox 2…04
TS_CUSTOMER_PHONE = "+14155554001"  # customer of conversation 7…39
TS_WEBHOOK = TECHSTART_WEBHOOK  # the demo webhooks (disabled)
PUBLIC_URL = "https://93.184.215.14/hook"  # a public address: no DNS needed to check it


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One concrete request: method, path, query and JSON body (None = no body)."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None

    def strings(self) -> Iterator[str]:
        """Every string the request carries (path, query values, body values)."""
        yield self.path
        yield from self.params.values()
        if self.body is not None:
            yield from (value for value in self.body.values() if isinstance(value, str))

    def substitute(self, mapping: Mapping[str, str]) -> Call:
        """The same request with every occurrence of each key replaced by its value."""

        def sub(text: str) -> str:
            for old, new in mapping.items():
                text = text.replace(old, new)
            return text

        body = None
        if self.body is not None:
            body = {k: sub(v) if isinstance(v, str) else v for k, v in self.body.items()}
        return replace(
            self,
            path=sub(self.path),
            params={k: sub(v) for k, v in self.params.items()},
            body=body,
        )

    def describe(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.method} {self.path}{'?' + query if query else ''} body={self.body}"


async def send(
    client: httpx.AsyncClient,
    call: Call,
    *,
    operator: str | None,
    tenant: str | None = ACME,
    extra_headers: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    raw_body: bytes | None = None,
) -> httpx.Response:
    """Send `call`; operator/tenant None leave the identity header out."""
    sent: dict[str, str] = {}
    if tenant is not None:
        sent["X-Tenant-ID"] = tenant
    if operator is not None:
        sent["X-Operator-ID"] = operator
    if idempotency_key is not None and call.method in MUTATING_METHODS:
        sent["Idempotency-Key"] = idempotency_key
    sent.update(extra_headers or {})
    if raw_body is not None:
        return await client.request(
            call.method, call.path, params=dict(call.params), content=raw_body, headers=sent
        )
    return await client.request(
        call.method,
        call.path,
        params=dict(call.params),
        json=dict(call.body) if call.body is not None else None,
        headers=sent,
    )


def acme_headers(operator: str) -> dict[str, str]:
    return headers(operator, ACME)


def error_code(response: httpx.Response) -> str | None:
    """The envelope's `error.code`, or None when the body is not an error envelope."""
    try:
        payload = response.json()
    except ValueError:
        return None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        code = payload["error"].get("code")
        return str(code) if code is not None else None
    return None


def outcome(response: httpx.Response) -> str:
    """`status code` (or `status`) plus a short body excerpt, for assertion messages."""
    return f"{response.status_code} {error_code(response) or ''} {response.text[:300]}".strip()


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str


FORBIDDEN = Refusal(403, "FORBIDDEN")
MANAGER_GUARD: dict[Role, Refusal] = {"OPERATOR": FORBIDDEN}
ADMIN_GUARD: dict[Role, Refusal] = {"OPERATOR": FORBIDDEN, "MANAGER": FORBIDDEN}


def operator_refused(code: str) -> dict[Role, Refusal]:
    """A service-level rule refusing role OPERATOR with 403 `code`."""
    return {"OPERATOR": Refusal(403, code)}


@dataclass(frozen=True)
class Foreign:
    """A request by a legitimate Acme member naming TechStart objects (or none at all).

    Expected: `status` (+ `code` for errors). `empty`: the key under `data` that must be an
    empty list (list/search routes). The answer must equal the one for never-existing ids
    (the TechStart ids replaced by random UUIDs), and the body must show nothing of TechStart.
    `callers`: Acme operators that make the request, one after the other.
    """

    name: str
    call: Call
    status: int
    code: str | None = None
    empty: str | None = None
    callers: tuple[str, ...] = (ACME_ADMIN,)


def not_found(name: str, call: Call, code: str, *callers: str) -> Foreign:
    return Foreign(name, call, 404, code, callers=callers or (ACME_ADMIN,))


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # the path as the app declares it
    call: Call  # a valid Acme request, succeeding for every role not in `refused`
    ok_status: int
    refused: Mapping[Role, Refusal]
    foreign: tuple[Foreign, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.template)

    @property
    def id(self) -> str:
        return f"{self.method} {self.template}"

    def matches(self, call: Call) -> bool:
        """Whether `call` is a request to this route (method and path template)."""
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.template))
        return call.method == self.method and re.fullmatch(pattern, call.path) is not None


def _p(path: str) -> str:
    return API_PREFIX + path


def _route(
    method: str,
    template: str,
    ok_status: int,
    *,
    path: str | None = None,
    params: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    refused: Mapping[Role, Refusal] | None = None,
    foreign: tuple[Foreign, ...],
) -> Route:
    call = Call(method, _p(path or template), dict(params or {}), body)
    return Route(method, _p(template), call, ok_status, dict(refused or {}), foreign)


def _c(
    method: str,
    path: str,
    params: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
) -> Call:
    return Call(method, _p(path), dict(params or {}), body)


_OPS_AND_ADMIN = (ACME_ADMIN, ACME_OP4)
# The token routes' calls name ACME_OP4: itself and the ADMIN may, the MANAGER may not.
_OTHERS_TOKENS: dict[Role, Refusal] = {"MANAGER": FORBIDDEN}

ROUTES: tuple[Route, ...] = (
    # --- operator status ----------------------------------------------------
    _route(
        "GET", "/operator/status", 200,
        foreign=(Foreign("own status only", _c("GET", "/operator/status"), 200,
                         callers=_OPS_AND_ADMIN),),
    ),
    _route(
        "PUT", "/operator/status", 200, body={"status": "OFFLINE"},
        foreign=(Foreign("own status only", _c("PUT", "/operator/status", body={
            "status": "OFFLINE"}), 200, callers=_OPS_AND_ADMIN),),
    ),
    # --- inboxes -----------------------------------------------------------------
    _route(
        "GET", "/inboxes", 200,
        foreign=(Foreign("acme inboxes only", _c("GET", "/inboxes"), 200,
                         callers=_OPS_AND_ADMIN),),
    ),
    _route(
        "POST", "/inboxes", 201,
        body={"phone_number": "+15551234999", "display_name": "Acme Returns"},
        refused=MANAGER_GUARD,
        foreign=(
            # Phone numbers are unique per tenant: TechStart's number is free in Acme.
            Foreign("phone number of a techstart inbox", _c("POST", "/inboxes", body={
                "phone_number": TS_INBOX_PHONE, "display_name": "Acme Mirror"}), 201),
        ),
    ),
    _route(
        "GET", "/inboxes/{inbox_id}", 200, path=f"/inboxes/{INBOX_SALES}",
        refused=MANAGER_GUARD,
        foreign=(not_found("techstart inbox", _c("GET", f"/inboxes/{TS_INBOX}"),
                           "INBOX_NOT_FOUND"),),
    ),
    _route(
        "PUT", "/inboxes/{inbox_id}", 200, path=f"/inboxes/{INBOX_SALES}",
        body={"display_name": "Acme Sales EMEA"},
        refused=MANAGER_GUARD,
        foreign=(
            not_found("techstart inbox", _c("PUT", f"/inboxes/{TS_INBOX}", body={
                "display_name": "Renamed"}), "INBOX_NOT_FOUND"),
            not_found("techstart inbox, its own phone", _c("PUT", f"/inboxes/{TS_INBOX}", body={
                "phone_number": TS_INBOX_PHONE}), "INBOX_NOT_FOUND"),
            Foreign("acme inbox gets a techstart phone number", _c(
                "PUT", f"/inboxes/{INBOX_SALES}", body={"phone_number": TS_INBOX_PHONE}), 200),
        ),
    ),
    _route(
        "DELETE", "/inboxes/{inbox_id}", 204, path=f"/inboxes/{INBOX_BILLING}",
        refused=MANAGER_GUARD,
        foreign=(not_found("techstart inbox", _c("DELETE", f"/inboxes/{TS_INBOX}"),
                           "INBOX_NOT_FOUND"),),
    ),
    # --- subscriptions (both unsubscribe forms) ---------------------------
    _route(
        "GET", "/inboxes/{inbox_id}/operators", 200, path=f"/inboxes/{INBOX_SALES}/operators",
        refused=MANAGER_GUARD,
        foreign=(not_found("techstart inbox", _c("GET", f"/inboxes/{TS_INBOX}/operators"),
                           "INBOX_NOT_FOUND"),),
    ),
    _route(
        "POST", "/inboxes/{inbox_id}/operators", 201, path=f"/inboxes/{INBOX_SUPPORT}/operators",
        body={"operator_id": ACME_OP4},
        refused=MANAGER_GUARD,
        foreign=(
            not_found("techstart inbox and operator", _c(
                "POST", f"/inboxes/{TS_INBOX}/operators", body={"operator_id": TS_OPERATOR}),
                "INBOX_NOT_FOUND"),
            # Already subscribed in TechStart: a 201 with the existing row would leak it.
            not_found("techstart inbox, acme operator", _c(
                "POST", f"/inboxes/{TS_INBOX}/operators", body={"operator_id": ACME_OP4}),
                "INBOX_NOT_FOUND"),
            not_found("acme inbox, techstart operator", _c(
                "POST", f"/inboxes/{INBOX_SUPPORT}/operators", body={"operator_id": TS_OPERATOR}),
                "NOT_FOUND"),
        ),
    ),
    _route(
        "DELETE", "/inboxes/{inbox_id}/operators/{operator_id}", 204,
        path=f"/inboxes/{INBOX_SALES}/operators/{ACME_OP5}",
        refused=MANAGER_GUARD,
        foreign=(
            not_found("techstart subscription", _c(
                "DELETE", f"/inboxes/{TS_INBOX}/operators/{TS_OPERATOR}"), "INBOX_NOT_FOUND"),
            # An operator that is not subscribed is a no-op 204 (docs/decisions.md#subscriptions):
            # the same for another tenant's operator as for a missing one.
            Foreign("acme inbox, techstart operator", _c(
                "DELETE", f"/inboxes/{INBOX_SALES}/operators/{TS_OPERATOR}"), 204),
        ),
    ),
    _route(
        "DELETE", "/inboxes/{inbox_id}/operators", 204, path=f"/inboxes/{INBOX_SALES}/operators",
        params={"operator_id": ACME_OP5},
        refused=MANAGER_GUARD,
        foreign=(
            not_found("techstart subscription", _c(
                "DELETE", f"/inboxes/{TS_INBOX}/operators", {"operator_id": TS_OPERATOR}),
                "INBOX_NOT_FOUND"),
            Foreign("acme inbox, techstart operator", _c(
                "DELETE", f"/inboxes/{INBOX_SALES}/operators", {"operator_id": TS_OPERATOR}), 204),
        ),
    ),
    # --- operators -------------------------------------------------------------
    _route(
        "GET", "/operators", 200, refused=ADMIN_GUARD,
        foreign=(Foreign("acme operators only", _c("GET", "/operators"), 200),),
    ),
    _route(
        "POST", "/operators", 201, body={"role": "OPERATOR"}, refused=ADMIN_GUARD,
        foreign=(Foreign("created in acme", _c("POST", "/operators", body={"role": "ADMIN"}),
                         201),),
    ),
    _route(
        "GET", "/operators/{operator_id}", 200, path=f"/operators/{ACME_OP5}", refused=ADMIN_GUARD,
        foreign=(not_found("techstart operator", _c("GET", f"/operators/{TS_OPERATOR}"),
                           "NOT_FOUND"),),
    ),
    _route(
        "PUT", "/operators/{operator_id}", 200, path=f"/operators/{ACME_OP5}",
        body={"role": "MANAGER"}, refused=ADMIN_GUARD,
        foreign=(
            not_found("techstart operator", _c("PUT", f"/operators/{TS_OPERATOR}", body={
                "role": "MANAGER"}), "NOT_FOUND"),
            # TechStart's only ADMIN: 409 LAST_ADMIN would reveal it.
            not_found("techstart last admin", _c("PUT", f"/operators/{TS_ADMIN}", body={
                "role": "OPERATOR"}), "NOT_FOUND"),
        ),
    ),
    _route(
        "DELETE", "/operators/{operator_id}", 204, path=f"/operators/{ACME_OP5}",
        refused=ADMIN_GUARD,
        foreign=(
            not_found("techstart operator", _c("DELETE", f"/operators/{TS_OPERATOR}"),
                      "NOT_FOUND"),
            not_found("techstart last admin", _c("DELETE", f"/operators/{TS_ADMIN}"),
                      "NOT_FOUND"),
        ),
    ),
    _route(
        "GET", "/operators/{operator_id}/inboxes", 200, path=f"/operators/{ACME_OP5}/inboxes",
        refused=ADMIN_GUARD,
        foreign=(not_found("techstart operator", _c("GET", f"/operators/{TS_OPERATOR}/inboxes"),
                           "NOT_FOUND"),),
    ),
    # --- API tokens (docs/authentication.md): ADMIN for anyone, every operator for itself --------
    _route(
        "GET", "/operators/{operator_id}/tokens", 200, path=f"/operators/{ACME_OP4}/tokens",
        refused=_OTHERS_TOKENS,
        foreign=(not_found("techstart operator", _c("GET", f"/operators/{TS_OPERATOR}/tokens"),
                           "NOT_FOUND"),),
    ),
    _route(
        "POST", "/operators/{operator_id}/tokens", 201, path=f"/operators/{ACME_OP4}/tokens",
        body={"name": "laptop", "expires_in_days": 90}, refused=_OTHERS_TOKENS,
        foreign=(not_found("techstart operator", _c("POST", f"/operators/{TS_OPERATOR}/tokens",
                                                    body={"name": "x"}), "NOT_FOUND"),),
    ),
    _route(
        "DELETE", "/operators/{operator_id}/tokens/{token_id}", 200,
        path=f"/operators/{ACME_OP4}/tokens/{seed_token_id(ACME_OP4)}", refused=_OTHERS_TOKENS,
        foreign=(
            not_found("techstart operator and token", _c(
                "DELETE", f"/operators/{TS_OPERATOR}/tokens/{seed_token_id(TS_OPERATOR)}"),
                "NOT_FOUND"),
            not_found("techstart token under an acme operator", _c(
                "DELETE", f"/operators/{ACME_OP4}/tokens/{seed_token_id(TS_OPERATOR)}"),
                "NOT_FOUND", ACME_ADMIN, ACME_OP4),
        ),
    ),
    # --- tenant ---------------------------------------------------------------------------
    _route(
        "GET", "/tenant", 200, refused=ADMIN_GUARD,
        foreign=(Foreign("acme tenant only", _c("GET", "/tenant"), 200),),
    ),
    _route(
        "PUT", "/tenant/weights", 200, body={"alpha": 0.7, "beta": 0.3}, refused=ADMIN_GUARD,
        foreign=(Foreign("acme weights only", _c("PUT", "/tenant/weights", body={
            "alpha": 0.2, "beta": 0.8}), 200),),
    ),
    # --- conversations (docs/decisions.md#visibility)
    # ---------------------------------------------------------
    _route(
        "GET", "/conversations", 200,
        foreign=(
            Foreign("techstart inbox filter", _c("GET", "/conversations", {
                "inbox_id": TS_INBOX}), 200, empty="conversations", callers=_OPS_AND_ADMIN),
            Foreign("techstart operator filter", _c("GET", "/conversations", {
                "operator_id": TS_OPERATOR}), 200, empty="conversations", callers=_OPS_AND_ADMIN),
            Foreign("techstart label filter", _c("GET", "/conversations", {
                "label_id": TS_LABEL}), 200, empty="conversations", callers=_OPS_AND_ADMIN),
            Foreign("all techstart filters", _c("GET", "/conversations", {
                "inbox_id": TS_INBOX, "operator_id": TS_OPERATOR, "label_id": TS_LABEL,
                "state": "ALLOCATED"}), 200, empty="conversations"),
            Foreign("whole queue by priority", _c("GET", "/conversations", {
                "state": "QUEUED", "sort": "priority", "per_page": "100"}), 200,
                callers=_OPS_AND_ADMIN),
        ),
    ),
    # Ingestion (docs/decisions.md#ingestion: manager-level caller).
    _route(
        "POST", "/conversations", 201,
        body={"inbox_id": INBOX_SALES, "external_conversation_id": "ext-acme-new",
              "customer_phone_number": "+14155559999"},
        refused=MANAGER_GUARD,
        foreign=(
            not_found("techstart inbox", _c("POST", "/conversations", body={
                "inbox_id": TS_INBOX, "external_conversation_id": "ext-acme-new",
                "customer_phone_number": "+14155559999"}), "INBOX_NOT_FOUND"),
            # An Acme conversation has this external id: not updated through another inbox.
            not_found("techstart inbox, existing acme conversation", _c(
                "POST", "/conversations", body={
                    "inbox_id": TS_INBOX, "external_conversation_id": "ext-001",
                    "customer_phone_number": "+14155551001"}), "INBOX_NOT_FOUND"),
            # External ids are unique per tenant: TechStart's ext-041 is a new Acme conversation.
            Foreign("external id of a techstart conversation", _c(
                "POST", "/conversations", body={
                    "inbox_id": INBOX_SALES, "external_conversation_id": "ext-041",
                    "customer_phone_number": "+14155554003"}), 201),
        ),
    ),
    _route(
        "GET", "/conversations/{id}", 200, path=f"/conversations/{conversation(1)}",
        foreign=(
            not_found("techstart queued", _c("GET", f"/conversations/{TS_QUEUED}"), "NOT_FOUND",
                      *_OPS_AND_ADMIN),
            not_found("techstart allocated", _c("GET", f"/conversations/{TS_ALLOCATED}"),
                      "NOT_FOUND"),
        ),
    ),
    _route(
        "GET", "/search", 200, params={"phone": "+14155551001"},
        foreign=(
            Foreign("techstart customer", _c("GET", "/search", {"phone": TS_CUSTOMER_PHONE}),
                    200, empty="conversations", callers=_OPS_AND_ADMIN),
            Foreign("techstart customer via q", _c("GET", "/search", {"q": TS_CUSTOMER_PHONE}),
                    200, empty="conversations"),
        ),
    ),
    # --- allocation ------------------------------------------------------------
    _route(
        "POST", "/allocate", 200,
        foreign=(Foreign("allocates acme only", _c("POST", "/allocate"), 200,
                         callers=_OPS_AND_ADMIN),),
    ),
    _route(
        "POST", "/claim", 200, body={"conversation_id": conversation(1)},
        foreign=(
            not_found("techstart queued", _c("POST", "/claim", body={
                "conversation_id": TS_QUEUED}), "NOT_FOUND", *_OPS_AND_ADMIN),
            # 409 CONVERSATION_NOT_QUEUED would reveal it.
            not_found("techstart allocated", _c("POST", "/claim", body={
                "conversation_id": TS_ALLOCATED}), "NOT_FOUND", *_OPS_AND_ADMIN),
        ),
    ),
    # --- lifecycle -------------------------------------------------------------
    _route(
        "POST", "/resolve", 200, body={"conversation_id": conversation(5)},  # assigned to 3…04
        foreign=(
            not_found("techstart allocated", _c("POST", "/resolve", body={
                "conversation_id": TS_ALLOCATED}), "CONVERSATION_NOT_FOUND", *_OPS_AND_ADMIN),
            # 409 CONVERSATION_NOT_ALLOCATED would reveal it.
            not_found("techstart queued", _c("POST", "/resolve", body={
                "conversation_id": TS_QUEUED}), "CONVERSATION_NOT_FOUND", *_OPS_AND_ADMIN),
            not_found("techstart resolved", _c("POST", "/resolve", body={
                "conversation_id": TS_RESOLVED}), "CONVERSATION_NOT_FOUND", *_OPS_AND_ADMIN),
        ),
    ),
    _route(
        "POST", "/deallocate", 200, body={"conversation_id": conversation(6)},
        refused=operator_refused("INSUFFICIENT_PERMISSIONS"),
        foreign=(
            not_found("techstart allocated", _c("POST", "/deallocate", body={
                "conversation_id": TS_ALLOCATED}), "CONVERSATION_NOT_FOUND"),
            not_found("techstart queued", _c("POST", "/deallocate", body={
                "conversation_id": TS_QUEUED}), "CONVERSATION_NOT_FOUND"),
        ),
    ),
    _route(
        "POST", "/reassign", 200,
        body={"conversation_id": conversation(6), "operator_id": ACME_OP4},
        refused=operator_refused("INSUFFICIENT_PERMISSIONS"),
        foreign=(
            # Already assigned to the target: a 200 "unchanged" would reveal it.
            not_found("techstart conversation to its own assignee", _c("POST", "/reassign", body={
                "conversation_id": TS_ALLOCATED, "operator_id": TS_OPERATOR}),
                "CONVERSATION_NOT_FOUND"),
            not_found("techstart conversation to acme operator", _c("POST", "/reassign", body={
                "conversation_id": TS_ALLOCATED, "operator_id": ACME_OP4}),
                "CONVERSATION_NOT_FOUND"),
            not_found("acme conversation to techstart operator", _c("POST", "/reassign", body={
                "conversation_id": conversation(6), "operator_id": TS_OPERATOR}),
                "OPERATOR_NOT_FOUND"),
            not_found("acme conversation via target_operator_id", _c("POST", "/reassign", body={
                "conversation_id": conversation(6), "target_operator_id": TS_OPERATOR}),
                "OPERATOR_NOT_FOUND"),
        ),
    ),
    _route(
        "POST", "/move_inbox", 200,
        body={"conversation_id": conversation(6), "inbox_id": INBOX_SUPPORT},
        refused=operator_refused("INSUFFICIENT_PERMISSIONS"),
        foreign=(
            # Already in the target inbox: a 200 "unchanged" would reveal it.
            not_found("techstart conversation to its own inbox", _c("POST", "/move_inbox", body={
                "conversation_id": TS_ALLOCATED, "inbox_id": TS_INBOX}),
                "CONVERSATION_NOT_FOUND"),
            not_found("techstart conversation to acme inbox", _c("POST", "/move_inbox", body={
                "conversation_id": TS_ALLOCATED, "inbox_id": INBOX_SUPPORT}),
                "CONVERSATION_NOT_FOUND"),
            # docs/decisions.md#foreign-ids-are-missing-ids: another tenant's inbox is a missing
            # inbox (not the Go service's 400).
            not_found("acme conversation to techstart inbox", _c("POST", "/move_inbox", body={
                "conversation_id": conversation(6), "inbox_id": TS_INBOX}), "INBOX_NOT_FOUND"),
            not_found("acme conversation via target_inbox_id", _c("POST", "/move_inbox", body={
                "conversation_id": conversation(1), "target_inbox_id": TS_INBOX}),
                "INBOX_NOT_FOUND"),
        ),
    ),
    # --- queue statistics (docs/decisions.md#queue-statistics)
    # --------------------
    _route(
        "GET", "/stats", 200, refused=MANAGER_GUARD,
        foreign=(Foreign("acme inboxes only", _c("GET", "/stats"), 200),),
    ),
    # --- events and webhooks (docs/events.md) -------------------------------------------------
    _route(
        "GET", "/events", 200, params={"after": "0" * 32},
        foreign=(Foreign("techstart inbox filter", _c("GET", "/events", {
            "after": "0" * 32, "inbox_id": TS_INBOX}), 200, empty="events",
            callers=_OPS_AND_ADMIN),),
    ),
    _route(
        "POST", "/webhooks", 201, body={"url": PUBLIC_URL}, refused=ADMIN_GUARD,
        foreign=(Foreign("created in acme", _c("POST", "/webhooks", body={
            "url": PUBLIC_URL + "/2"}), 201),),
    ),
    _route(
        "GET", "/webhooks", 200, refused=ADMIN_GUARD,
        foreign=(Foreign("acme webhooks only", _c("GET", "/webhooks"), 200),),
    ),
    _route(
        "GET", "/webhooks/{id}", 200, path=f"/webhooks/{ACME_WEBHOOK}", refused=ADMIN_GUARD,
        foreign=(not_found("techstart webhook", _c("GET", f"/webhooks/{TS_WEBHOOK}"),
                           "WEBHOOK_NOT_FOUND"),),
    ),
    _route(
        "GET", "/webhooks/{id}/deliveries", 200, path=f"/webhooks/{ACME_WEBHOOK}/deliveries",
        refused=ADMIN_GUARD,
        foreign=(not_found("techstart webhook", _c(
            "GET", f"/webhooks/{TS_WEBHOOK}/deliveries"), "WEBHOOK_NOT_FOUND"),),
    ),
    _route(
        "DELETE", "/webhooks/{id}", 204, path=f"/webhooks/{ACME_WEBHOOK}", refused=ADMIN_GUARD,
        foreign=(not_found("techstart webhook", _c("DELETE", f"/webhooks/{TS_WEBHOOK}"),
                           "WEBHOOK_NOT_FOUND"),),
    ),
    # --- labels ------------------------------------------------------------------------------
    _route(
        "POST", "/labels", 201, body={"inbox_id": INBOX_SALES, "name": "VIP", "color": "#123456"},
        refused=operator_refused("LABEL_PERMISSION_DENIED"),
        foreign=(
            not_found("techstart inbox", _c("POST", "/labels", body={
                "inbox_id": TS_INBOX, "name": "VIP"}), "INBOX_NOT_FOUND"),
            # TechStart's inbox has this name: 409 LABEL_NAME_CONFLICT would reveal it.
            not_found("techstart inbox, existing name", _c("POST", "/labels", body={
                "inbox_id": TS_INBOX, "name": "New Customer"}), "INBOX_NOT_FOUND"),
        ),
    ),
    _route(
        "GET", "/labels", 200, params={"inbox_id": INBOX_SALES},
        foreign=(not_found("techstart inbox", _c("GET", "/labels", {"inbox_id": TS_INBOX}),
                           "INBOX_NOT_FOUND", *_OPS_AND_ADMIN),),
    ),
    _route(
        "PUT", "/labels/{id}", 200, path=f"/labels/{label(1)}", body={"name": "Hot Lead!"},
        refused=operator_refused("LABEL_PERMISSION_DENIED"),
        foreign=(
            not_found("techstart label", _c("PUT", f"/labels/{TS_LABEL}", body={
                "color": "#000000"}), "LABEL_NOT_FOUND"),
            not_found("techstart label, sibling's name", _c("PUT", f"/labels/{TS_LABEL}", body={
                "name": "Technical"}), "LABEL_NOT_FOUND"),
        ),
    ),
    _route(
        "DELETE", "/labels/{id}", 204, path=f"/labels/{label(2)}",
        refused=operator_refused("LABEL_PERMISSION_DENIED"),
        foreign=(not_found("techstart label", _c("DELETE", f"/labels/{TS_LABEL}"),
                           "LABEL_NOT_FOUND"),),
    ),
    _route(
        "POST", "/labels/attach", 204,
        body={"conversation_id": conversation(1), "label_id": label(2)},
        foreign=(
            not_found("techstart conversation and label", _c("POST", "/labels/attach", body={
                "conversation_id": TS_QUEUED, "label_id": TS_LABEL}),
                "CONVERSATION_NOT_FOUND", *_OPS_AND_ADMIN),
            not_found("acme conversation, techstart label", _c("POST", "/labels/attach", body={
                "conversation_id": conversation(1), "label_id": TS_LABEL}),
                "LABEL_NOT_FOUND", *_OPS_AND_ADMIN),
            not_found("techstart conversation, acme label", _c("POST", "/labels/attach", body={
                "conversation_id": TS_QUEUED, "label_id": label(1)}),
                "CONVERSATION_NOT_FOUND", *_OPS_AND_ADMIN),
        ),
    ),
    _route(
        "POST", "/labels/detach", 204,
        body={"conversation_id": conversation(1), "label_id": label(1)},
        foreign=(
            # Attached in TechStart (8…14).
            not_found("techstart attachment", _c("POST", "/labels/detach", body={
                "conversation_id": TS_QUEUED_LABELLED, "label_id": TS_LABEL}),
                "CONVERSATION_NOT_FOUND", *_OPS_AND_ADMIN),
            not_found("acme conversation, techstart label", _c("POST", "/labels/detach", body={
                "conversation_id": conversation(1), "label_id": TS_LABEL}),
                "LABEL_NOT_FOUND", *_OPS_AND_ADMIN),
            not_found("techstart conversation, acme label", _c("POST", "/labels/detach", body={
                "conversation_id": TS_QUEUED_LABELLED, "label_id": label(1)}),
                "CONVERSATION_NOT_FOUND", *_OPS_AND_ADMIN),
        ),
    ),
)  # fmt: skip

ROUTE_IDS = [route.id for route in ROUTES]


# --- what the app serves --------------------------------------------------------------------


def served_api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every /api/v1 route of the app, without trailing-slash aliases
    (a hidden route whose path minus the slash is served with the same method)."""
    from fastapi.routing import iter_route_contexts  # noqa: PLC0415 - FastAPI ≥ 0.160 API

    pairs: set[tuple[str, str]] = set()
    hidden: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        path = route.path
        if not isinstance(path, str) or not path.startswith(API_PREFIX + "/"):
            continue
        for method in route.methods or ():
            pairs.add((method, path))
            if not route.include_in_schema:
                hidden.add((method, path))
    aliases = {
        (method, path)
        for method, path in hidden
        if path.endswith("/") and (method, path.rstrip("/")) in pairs
    }
    return pairs - aliases


def catalog_keys() -> list[tuple[str, str]]:
    return [route.key for route in ROUTES]


# --- database snapshots ---------------------------------------------------------------------

TABLES = (
    "tenants",
    "inboxes",
    "operators",
    "operator_status",
    "operator_inbox_subscriptions",
    "conversation_refs",
    "labels",
    "conversation_labels",
    "grace_period_assignments",
    "idempotency_keys",
    "api_tokens",
    "api_token_lookup",
)

# Tables whose snapshot is not `SELECT *` by id: last_used_at changes on every successful
# use of a token (at most once a minute), which is not a change the tests look for.
_ALL_ROWS = {
    "api_tokens": """SELECT tenant_id, id, operator_id, name, token_hash, created_at,
                            expires_at, revoked_at FROM api_tokens ORDER BY id""",
    "api_token_lookup": "SELECT * FROM api_token_lookup ORDER BY token_hash",
}

Snapshot = dict[str, list[tuple[Any, ...]]]


async def snapshot_all(db: asyncpg.Pool, *, skip: tuple[str, ...] = ()) -> Snapshot:
    """Every row of every table, ordered by id."""
    async with db.acquire() as conn:
        return {
            table: [
                tuple(row)
                for row in await conn.fetch(
                    _ALL_ROWS.get(table, f"SELECT * FROM {table} ORDER BY id")
                )
            ]
            for table in TABLES
            if table not in skip
        }


# Rows owned by a tenant ($1), also reached through its inboxes, operators, conversations and
# labels (so a row moved into or out of the tenant shows up as a difference).
_TENANT_ROWS: dict[str, str] = {
    "tenants": "SELECT * FROM tenants WHERE id = $1",
    "inboxes": "SELECT * FROM inboxes WHERE tenant_id = $1",
    "operators": "SELECT * FROM operators WHERE tenant_id = $1",
    "operator_status": """
        SELECT s.* FROM operator_status s
        WHERE s.operator_id IN (SELECT id FROM operators WHERE tenant_id = $1)""",
    "operator_inbox_subscriptions": """
        SELECT s.* FROM operator_inbox_subscriptions s
        WHERE s.operator_id IN (SELECT id FROM operators WHERE tenant_id = $1)
           OR s.inbox_id IN (SELECT id FROM inboxes WHERE tenant_id = $1)""",
    "conversation_refs": """
        SELECT c.* FROM conversation_refs c
        WHERE c.tenant_id = $1
           OR c.inbox_id IN (SELECT id FROM inboxes WHERE tenant_id = $1)
           OR c.assigned_operator_id IN (SELECT id FROM operators WHERE tenant_id = $1)""",
    "labels": """
        SELECT l.* FROM labels l
        WHERE l.tenant_id = $1 OR l.inbox_id IN (SELECT id FROM inboxes WHERE tenant_id = $1)""",
    "conversation_labels": """
        SELECT cl.* FROM conversation_labels cl
        WHERE cl.conversation_id IN (SELECT id FROM conversation_refs WHERE tenant_id = $1)
           OR cl.label_id IN (SELECT id FROM labels WHERE tenant_id = $1)""",
    "grace_period_assignments": """
        SELECT g.* FROM grace_period_assignments g
        WHERE g.conversation_id IN (SELECT id FROM conversation_refs WHERE tenant_id = $1)
           OR g.operator_id IN (SELECT id FROM operators WHERE tenant_id = $1)""",
    "idempotency_keys": "SELECT * FROM idempotency_keys WHERE tenant_id = $1",
    "api_tokens": """
        SELECT tenant_id, id, operator_id, name, token_hash, created_at, expires_at, revoked_at
        FROM api_tokens WHERE tenant_id = $1""",
    "api_token_lookup": """
        SELECT l.token_id AS id, l.* FROM api_token_lookup l WHERE l.tenant_id = $1""",
}


async def snapshot_tenant(db: asyncpg.Pool, tenant: str) -> Snapshot:
    """Every row belonging to `tenant`, ordered by id."""
    tenant_id = uuid.UUID(tenant)
    async with db.acquire() as conn:
        return {
            table: [tuple(row) for row in await conn.fetch(f"{query} ORDER BY id", tenant_id)]
            for table, query in _TENANT_ROWS.items()
        }


def diff(before: Snapshot, after: Snapshot) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Per changed table: the rows that disappeared and the rows that appeared."""
    changes: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for table in before.keys() | after.keys():
        old, new = before.get(table, []), after.get(table, [])
        gone = [row for row in old if row not in new]
        came = [row for row in new if row not in old]
        if gone or came:
            changes[table] = {"removed": gone, "added": came}
    return changes


# --- what must never show: TechStart's ids and names ----------------------------------------

_TENANT_TOKENS = """
SELECT t.id::text AS token FROM tenants t WHERE t.id = $1
UNION SELECT t.name FROM tenants t WHERE t.id = $1
UNION SELECT i.id::text FROM inboxes i WHERE i.tenant_id = $1
UNION SELECT i.phone_number FROM inboxes i WHERE i.tenant_id = $1
UNION SELECT i.display_name FROM inboxes i WHERE i.tenant_id = $1
UNION SELECT o.id::text FROM operators o WHERE o.tenant_id = $1
UNION SELECT s.id::text FROM operator_status s
      JOIN operators o ON o.tenant_id = s.tenant_id AND o.id = s.operator_id
      WHERE o.tenant_id = $1
UNION SELECT s.id::text FROM operator_inbox_subscriptions s
      JOIN operators o ON o.tenant_id = s.tenant_id AND o.id = s.operator_id
      WHERE o.tenant_id = $1
UNION SELECT c.id::text FROM conversation_refs c WHERE c.tenant_id = $1
UNION SELECT c.external_conversation_id FROM conversation_refs c WHERE c.tenant_id = $1
UNION SELECT c.customer_phone_number FROM conversation_refs c WHERE c.tenant_id = $1
UNION SELECT l.id::text FROM labels l WHERE l.tenant_id = $1
UNION SELECT l.name FROM labels l WHERE l.tenant_id = $1
UNION SELECT cl.id::text FROM conversation_labels cl
      JOIN labels l ON l.tenant_id = cl.tenant_id AND l.id = cl.label_id
      WHERE l.tenant_id = $1
UNION SELECT g.id::text FROM grace_period_assignments g
      JOIN operators o ON o.tenant_id = g.tenant_id AND o.id = g.operator_id
      WHERE o.tenant_id = $1
UNION SELECT t.id::text FROM api_tokens t WHERE t.tenant_id = $1
"""


async def tenant_tokens(db: asyncpg.Pool, tenant: str) -> set[str]:
    """Ids (lower-case text), names and phone numbers of the tenant's rows, plus the first
    word of its name ("TechStart")."""
    rows = await db.fetch(_TENANT_TOKENS, uuid.UUID(tenant))
    tokens = {str(row["token"]) for row in rows}
    name = await db.fetchval("SELECT name FROM tenants WHERE id = $1", uuid.UUID(tenant))
    if name:
        tokens.add(str(name).split()[0])
    return tokens


def leaked(response: httpx.Response, tokens: set[str], call: Call) -> list[str]:
    """Tokens of `tokens` in the response body, except those the request itself carried
    (echoing what the caller sent reveals nothing)."""
    sent = " ".join(call.strings())
    text = response.text
    return sorted(token for token in tokens if token and token not in sent and token in text)
