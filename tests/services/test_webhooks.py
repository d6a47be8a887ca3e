"""Webhooks: management routes, SSRF refusals, signed in-order delivery to a local receiver,
retries, giving up, disabling, redirects, and no double sending between two workers.

The receiver is a real HTTP server on 127.0.0.1 (so these tests allow private targets);
the delivery worker's rounds are run explicitly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI

from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed_ids import ACME as TENANT
from inbox_allocation.db.seed_ids import ACME_ADMIN, ACME_MANAGER
from inbox_allocation.db.seed_ids import ACME_WEBHOOK as ACME_DEMO_WEBHOOK
from inbox_allocation.services.webhooks import WebhookDelivery, backoff_seconds

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = {"X-Tenant-ID": TENANT, "X-Operator-ID": ACME_ADMIN}
MANAGER = {"X-Tenant-ID": TENANT, "X-Operator-ID": ACME_MANAGER}


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    # Status codes to answer, in order; 204 once they run out.
    answers: list[int] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.requests.append(({**headers, ":path": self.path}, body))
            status = state.answers.pop(0) if state.answers else 204
            self.send_response(status)
            if status == 302:
                self.send_header("location", "http://127.0.0.1:1/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def private_allowed(app: FastAPI, settings: Settings) -> Iterator[Settings]:
    allowed = settings.model_copy(update={"webhook_allow_private": True})
    app.state.settings = allowed
    try:
        yield allowed
    finally:
        app.state.settings = settings


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side of the Standard Webhooks signature."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(part.removeprefix("v1,"), expected)
        for part in headers["webhook-signature"].split()
    )


async def add_event(db: asyncpg.Pool, n: int, kind: str = "operator.status_changed") -> None:
    await db.execute(
        "INSERT INTO events (tenant_id, type, data) "
        "VALUES ($1, $2, jsonb_build_object('n', $3::int))",
        TENANT, kind, n,
    )  # fmt: skip


async def create(client: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/webhooks", json={"url": url, **extra}, headers=ADMIN)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def make_due(db: asyncpg.Pool) -> None:
    """Skip the backoff wait (the schedule itself is checked separately)."""
    await db.execute("UPDATE webhooks SET next_attempt_at = now() WHERE enabled")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "ftp://example.com/hook",
        "not a url",
        "http://user:pw@example.com/hook",
    ],
)
async def test_refused_targets_are_400(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post("/api/v1/webhooks", json={"url": url}, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_creation_is_never_stored_for_idempotent_replay(
    client: httpx.AsyncClient, db: asyncpg.Pool, private_allowed: Settings
) -> None:
    """The response holds the signing secret: it must not be kept in idempotency_keys."""
    sent = {**ADMIN, "Idempotency-Key": "webhook-1"}
    body = {"url": "http://127.0.0.1:9/in"}
    first = await client.post("/api/v1/webhooks", json=body, headers=sent)
    second = await client.post("/api/v1/webhooks", json=body, headers=sent)
    assert first.status_code == second.status_code == 201
    assert first.json()["data"]["secret"] != second.json()["data"]["secret"]
    assert "idempotent-replayed" not in second.headers
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_management_routes(client: httpx.AsyncClient, private_allowed: Settings) -> None:
    assert (await client.get("/api/v1/webhooks", headers=MANAGER)).status_code == 403
    bad = await client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1/x", "event_types": ["nope"]},
        headers=ADMIN,
    )  # fmt: skip
    assert bad.status_code == 400
    hook = await create(client, "http://127.0.0.1:9/x", description="desk",
                        event_types=["conversation.queued"])  # fmt: skip
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"].removeprefix("whsec_"))) == 32
    assert hook["enabled"] is True
    assert hook["event_types"] == ["conversation.queued"]
    listed = (await client.get("/api/v1/webhooks", headers=ADMIN)).json()["data"]
    assert [item["id"] for item in listed] == [ACME_DEMO_WEBHOOK, hook["id"]]
    assert all("secret" not in item for item in listed)
    one = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=ADMIN)
    assert one.json()["data"]["description"] == "desk"
    assert "secret" not in one.json()["data"]
    logs = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=ADMIN)
    assert logs.json()["data"] == []
    assert (await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=ADMIN)).status_code == 204
    gone = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=ADMIN)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "WEBHOOK_NOT_FOUND"


async def test_signed_delivery_in_order_with_retries(
    client: httpx.AsyncClient, db: asyncpg.Pool, app: FastAPI, receiver: Receiver,
    private_allowed: Settings,
) -> None:  # fmt: skip
    await add_event(db, 0)  # before the webhook: never sent
    hook = await create(client, receiver.url)
    for n in (1, 2, 3):
        await add_event(db, n)
    receiver.answers = [500, 503]  # event 1 fails twice, then everything succeeds
    worker = WebhookDelivery(Database(app.state.db.pool), private_allowed)
    for _ in range(3):
        await worker.run_once()
        await make_due(db)
    await worker.run_once()
    bodies = [orjson.loads(body) for _, body in receiver.requests]
    assert [body["data"]["n"] for body in bodies] == [1, 1, 1, 2, 3]
    for headers, body in receiver.requests:
        assert verify(hook["secret"], headers, body)
        assert headers["webhook-id"] == orjson.loads(body)["id"]
        assert headers["content-type"] == "application/json"
    assert not verify(hook["secret"], receiver.requests[0][0], b"tampered")
    logs = (await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=ADMIN)).json()[
        "data"
    ]
    oldest_first = list(reversed(logs))
    assert [(d["attempt"], d["status_code"]) for d in oldest_first] == [
        (1, 500), (2, 503), (3, 204), (1, 204), (1, 204),
    ]  # fmt: skip
    assert oldest_first[0]["next_attempt_at"] is not None
    assert oldest_first[2]["next_attempt_at"] is None


@pytest.mark.no_db
async def test_backoff_grows_exponentially_with_jitter() -> None:
    waits = [backoff_seconds(attempt) for attempt in range(1, 8)]
    for attempt, wait in enumerate(waits, start=1):
        base = 2 ** (attempt - 1)
        assert base <= wait <= base + 1


async def test_gives_up_after_max_attempts_then_disables_after_a_day(
    client: httpx.AsyncClient, db: asyncpg.Pool, app: FastAPI, receiver: Receiver,
    private_allowed: Settings,
) -> None:  # fmt: skip
    hook = await create(client, receiver.url)
    await add_event(db, 1)
    await add_event(db, 2)
    receiver.answers = [500, 302]  # a redirect is a failure, never followed
    limited = private_allowed.model_copy(update={"webhook_max_attempts": 2})
    worker = WebhookDelivery(Database(app.state.db.pool), limited)
    await worker.run_once()
    await make_due(db)
    await worker.run_once()  # second failure: event 1 given up, event 2 goes next
    await make_due(db)
    await worker.run_once()
    assert [orjson.loads(body)["data"]["n"] for _, body in receiver.requests] == [1, 1, 2]
    logs = (await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=ADMIN)).json()[
        "data"
    ]
    assert logs[1]["error"] == "redirects are not followed"
    # Failing for longer than WEBHOOK_DISABLE_AFTER: disabled with a reason.
    await add_event(db, 3)
    await db.execute("UPDATE webhooks SET failing_since = now() - interval '25 hours'")
    receiver.answers = [500]
    await make_due(db)
    await worker.run_once()
    data = (await client.get(f"/api/v1/webhooks/{hook['id']}", headers=ADMIN)).json()["data"]
    assert data["enabled"] is False
    assert "HTTP 500" in data["disabled_reason"]
    await make_due(db)
    sent = len(receiver.requests)
    await worker.run_once()
    assert len(receiver.requests) == sent  # a disabled webhook gets nothing


async def test_private_target_refused_at_delivery_when_not_allowed(
    client: httpx.AsyncClient, db: asyncpg.Pool, app: FastAPI, receiver: Receiver,
    private_allowed: Settings, settings: Settings,
) -> None:  # fmt: skip
    hook = await create(client, receiver.url)  # allowed when created...
    await add_event(db, 1)
    worker = WebhookDelivery(Database(app.state.db.pool), settings)  # ...not any more
    await worker.run_once()
    assert receiver.requests == []
    logs = (await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=ADMIN)).json()[
        "data"
    ]
    assert "private" in logs[0]["error"]


async def test_two_workers_never_send_an_event_twice(
    client: httpx.AsyncClient, db: asyncpg.Pool, app: FastAPI, receiver: Receiver,
    private_allowed: Settings,
) -> None:  # fmt: skip
    for i in range(3):
        await create(client, f"{receiver.url}?hook={i}")
    for n in range(1, 6):
        await add_event(db, n)
    workers = [WebhookDelivery(Database(app.state.db.pool), private_allowed) for _ in range(2)]
    for _ in range(3):
        await asyncio.gather(*(worker.run_once() for worker in workers))
        await make_due(db)
    ids = [(headers[":path"], headers["webhook-id"]) for headers, _ in receiver.requests]
    assert len(ids) == 15  # 3 webhooks × 5 events
    assert len(set(ids)) == 15


async def test_only_the_webhooks_event_types_are_sent(
    client: httpx.AsyncClient, db: asyncpg.Pool, app: FastAPI, receiver: Receiver,
    private_allowed: Settings,
) -> None:  # fmt: skip
    await create(client, receiver.url, event_types=["conversation.queued"])
    await add_event(db, 1, "operator.status_changed")
    await add_event(db, 2, "conversation.queued")
    await add_event(db, 3, "conversation.resolved")
    await add_event(db, 4, "conversation.queued")
    worker = WebhookDelivery(Database(app.state.db.pool), private_allowed)
    await worker.run_once()
    assert [orjson.loads(body)["data"]["n"] for _, body in receiver.requests] == [2, 4]
