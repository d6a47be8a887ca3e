"""Hostile and malformed input: always a clear 4xx in the error envelope, never a 500."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    INBOX_SALES,
    conversation,
)
from tests.support.http import headers

ONE_MIB = 1024 * 1024


def assert_client_error(response: httpx.Response, status: int | None = None) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, response.text[:300]
    body = response.json()
    assert body["success"] is False
    return str(body["error"]["code"])


async def test_bodies_over_one_mib_are_refused(client: httpx.AsyncClient) -> None:
    big = b'{"conversation_id": "' + b"x" * ONE_MIB + b'"}'
    response = await client.post("/api/v1/claim", headers=headers(ACME_OP4), content=big)
    assert assert_client_error(response, 413) == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"x" * (ONE_MIB // 10)

    streamed = await client.post("/api/v1/claim", headers=headers(ACME_OP4), content=chunks())
    assert assert_client_error(streamed, 413) == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("depth", [1_000, 100_000])
async def test_deeply_nested_json(client: httpx.AsyncClient, depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    response = await client.post("/api/v1/claim", headers=headers(ACME_OP4), content=nested)
    assert assert_client_error(response, 400) == "BAD_REQUEST"
    inside = b'{"conversation_id": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    response = await client.post("/api/v1/claim", headers=headers(ACME_OP4), content=inside)
    assert assert_client_error(response, 400) == "BAD_REQUEST"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "multipart/form-data; boundary=x", "", "application/json"],
)
async def test_any_content_type_is_read_as_json(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/api/v1/claim",
        headers=headers(ACME_OP4, **{"Content-Type": content_type}),
        content=b'{"conversation_id": "' + conversation(1).encode() + b'"}',
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\xfd", b'{"conversation_id": "\xc3\x28"}', b"\x00", b'{"a": 1}{"b": 2}', b"nul"],
)
async def test_undecodable_bodies(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/api/v1/claim", headers=headers(ACME_OP4), content=body)
    assert assert_client_error(response, 400) == "BAD_REQUEST"


async def test_nul_bytes_and_oversized_strings_never_reach_postgres_as_500(
    client: httpx.AsyncClient,
) -> None:
    manager = headers(ACME_MANAGER)
    cases = [
        ("/api/v1/inboxes", {"phone_number": "+15550007777", "display_name": "a\u0000b"}),
        ("/api/v1/labels", {"inbox_id": INBOX_SALES, "name": "bad\u0000name"}),
        ("/api/v1/conversations", {"inbox_id": INBOX_SALES, "external_conversation_id": "x\u0000",
                                   "customer_phone_number": "+14155550100"}),
        ("/api/v1/inboxes", {"phone_number": "+15550007777", "display_name": "é" * 10_000}),
        ("/api/v1/conversations", {"inbox_id": INBOX_SALES,
                                   "external_conversation_id": "x" * 100_000,
                                   "customer_phone_number": "+14155550100"}),
    ]  # fmt: skip
    for path, body in cases:
        assert_client_error(await client.post(path, headers=manager, json=body))


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/conversations", {"per_page": "9" * 400}),
        ("/api/v1/conversations", {"per_page": "-" + "9" * 400}),
        ("/api/v1/conversations", {"cursor": "A" * 60_000}),
        ("/api/v1/conversations", {"cursor": "%%%%"}),
        ("/api/v1/conversations", {"state": "Q" * 60_000}),
        ("/api/v1/conversations", {"inbox_id": "1" * 10_000}),
        ("/api/v1/conversations", {"sort": "\u0000"}),
        ("/api/v1/search", {"phone": "1" * 60_000}),
        ("/api/v1/search", {"phone": "\u0000\u0001\u0002"}),
        ("/api/v1/inboxes", {"page": "9" * 400, "per_page": "9" * 400}),
        ("/api/v1/labels", {"inbox_id": "x" * 50_000}),
    ],
)
async def test_huge_and_odd_query_values(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, headers=headers(ACME_ADMIN), params=params)
    assert response.status_code < 500, response.text[:300]
    assert response.json()["success"] is (response.status_code < 400)


@pytest.mark.parametrize(
    "value",
    [
        conversation(1).upper(),
        conversation(1).replace("-", ""),
        "{" + conversation(1) + "}",
        "urn:uuid:" + conversation(1),
        "URN:UUID:" + conversation(1).upper(),
    ],
)
async def test_accepted_uuid_forms_everywhere(client: httpx.AsyncClient, value: str) -> None:
    by_path = await client.get(f"/api/v1/conversations/{value}", headers=headers(ACME_ADMIN))
    assert by_path.status_code == 200
    assert by_path.json()["data"]["id"] == conversation(1)
    by_query = await client.get(
        "/api/v1/conversations", headers=headers(ACME_ADMIN), params={"inbox_id": value}
    )
    assert by_query.status_code == 200
    tenant_header = headers(ACME_ADMIN)
    tenant_header["X-Tenant-ID"] = "{" + ACME + "}"
    assert (await client.get("/api/v1/operator/status", headers=tenant_header)).status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        conversation(1) + "0",
        conversation(1)[:-1],
        "7000-0000-0000-0000-0000-0000-0000-0001",  # hyphens in the wrong places
        "{" + conversation(1),
        "urn:" + conversation(1),
        " " * 36,
        "g" * 32,
        "00000000-0000-0000-0000-000000000000-",
        " " + conversation(1),  # surrounding spaces are no part of any accepted form
    ],
)
async def test_rejected_uuid_forms(client: httpx.AsyncClient, value: str) -> None:
    by_path = await client.get(f"/api/v1/conversations/{value}", headers=headers(ACME_ADMIN))
    assert assert_client_error(by_path, 400) == "BAD_REQUEST"
    in_body = await client.post(
        "/api/v1/claim", headers=headers(ACME_OP4), json={"conversation_id": value}
    )
    assert assert_client_error(in_body, 400) == "BAD_REQUEST"
    as_header = await client.get(
        "/api/v1/operator/status", headers={"X-Tenant-ID": value, "X-Operator-ID": ACME_OP4}
    )
    assert assert_client_error(as_header, 400) == "BAD_REQUEST"


async def test_odd_header_values(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    weird = "x\u00e9\u00ff" + "\t" + "y" * 5000  # obs-text, a tab and a long value
    request_headers = {k.encode(): v.encode() for k, v in headers(ACME_OP4).items()}
    request_headers[b"X-Request-ID"] = weird.encode("latin-1")
    response = await client.get("/api/v1/operator/status", headers=request_headers)
    assert response.status_code == 200
    echoed = dict(response.headers.raw)[b"x-request-id"]
    assert echoed == weird.encode("latin-1")
    for key in ("bad\u0001key", "nul\u0000key", "k" * 256):
        refused = await client.post(
            "/api/v1/allocate", headers=headers(ACME_OP4, **{"Idempotency-Key": key})
        )
        assert assert_client_error(refused, 400) == "VALIDATION_ERROR"
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_path_oddities(client: httpx.AsyncClient) -> None:
    for path in (
        "/api/v1/inboxes/%00",
        "/api/v1/../../etc/passwd",
        "/api/v1/inboxes/" + "a" * 10_000,
        "/api/v1/operators/\u2603",
        "/api/v1//inboxes",
        "/API/V1/INBOXES",
    ):
        response = await client.get(path, headers=headers(ACME_ADMIN))
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.json()["success"] is False
    long_post = await client.post(
        "/api/v1/inboxes/" + "a" * 300 + "/operators",
        headers=headers(ACME_MANAGER, **{"Idempotency-Key": "long-path"}),
        json={"operator_id": ACME_OP4},
    )
    assert assert_client_error(long_post, 400) == "BAD_REQUEST"


async def test_wrong_json_types_everywhere(client: httpx.AsyncClient) -> None:
    manager = headers(ACME_MANAGER)
    cases = [
        ("POST", "/api/v1/claim", [conversation(1)]),
        ("POST", "/api/v1/claim", "string body"),
        ("POST", "/api/v1/claim", 42),
        ("POST", "/api/v1/claim", None),
        ("PUT", "/api/v1/operator/status", {"status": ["AVAILABLE"]}),
        ("PUT", "/api/v1/tenant/weights", {"alpha": "0.5", "beta": 0.5}),
        ("POST", "/api/v1/reassign", {"conversation_id": True, "operator_id": 1.5}),
        ("POST", "/api/v1/inboxes", {"phone_number": 15550001, "display_name": {}}),
    ]
    admin = headers(ACME_ADMIN)
    for method, path, body in cases:
        response = await client.request(
            method, path, headers=admin if "weights" in path else manager, json=body
        )
        assert assert_client_error(response, 400) in {"BAD_REQUEST", "VALIDATION_ERROR"}


async def test_burst_of_garbage_leaves_the_service_healthy(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    garbage = [b"", b"{", b"[]", b"\x00" * 1000, b'{"conversation_id": null}', b"{}" * 5000]
    responses = await asyncio.gather(
        *(client.post("/api/v1/claim", headers=headers(ACME_OP4), content=g) for g in garbage * 10)
    )
    assert all(400 <= r.status_code < 500 for r in responses)
    assert (await client.get("/ready")).status_code == 200
    assert uuid.UUID(conversation(1))  # the seed is intact: a normal request still works
    ok = await client.post("/api/v1/claim", headers=headers(ACME_OP4),
                           json={"conversation_id": conversation(1)})  # fmt: skip
    assert ok.status_code == 200
