"""Webhooks: management (ADMIN routes), target checks, and the delivery worker.

Delivery follows the Standard Webhooks specification: a POST of the event JSON with
`webhook-id` (the event id), `webhook-timestamp` (Unix seconds) and `webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the bytes of the secret (the
base64 after `whsec_`). Each webhook receives its events one at a time in cursor order, at
least once: an event is retried with exponential backoff and jitter until it succeeds or
WEBHOOK_MAX_ATTEMPTS tries have failed (then it is given up and logged, and the next event
goes); a webhook that has kept failing for WEBHOOK_DISABLE_AFTER is disabled with a reason.

Targets: http/https only; loopback, private, link-local (and other non-global) addresses
are refused unless WEBHOOK_ALLOW_PRIVATE=true, at creation and again at every delivery after
resolving the name; redirects are never followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx
from tenacity import RetryCallState, wait_exponential_jitter

from inbox_allocation.api.responses import dumps
from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import ValidationFailed, WebhookNotFound
from inbox_allocation.logging import get_logger
from inbox_allocation.services.events import render_event
from inbox_allocation.sql import maintenance
from inbox_allocation.sql import webhooks as sql

log = get_logger(__name__)

TIMEOUT_SECONDS = 5.0
LEASE_SECONDS = 30.0  # > one try (5 s) and the bookkeeping around it
CLAIM_BATCH = 20
EVENTS_PER_ROUND = 50
DELIVERIES_SHOWN = 100

# Backoff between tries of one event: 1 s doubling up to 1 h, plus up to 1 s of jitter.
BACKOFF = wait_exponential_jitter(initial=1, max=3600, exp_base=2, jitter=1)


def backoff_seconds(attempt: int) -> float:
    """The wait after the `attempt`-th failed try (tenacity's strategy, used as a formula:
    the wait is stored as the webhook's next attempt time, not slept in a process)."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(BACKOFF(state))


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class UnsafeTarget(ValueError):
    """The URL is not an http(s) URL, or it resolves to a refused address."""


def _refused(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_target(url: str, *, allow_private: bool) -> None:
    """Raises UnsafeTarget unless `url` is http(s) and every address it resolves to is
    allowed. The delivery worker calls it before every try (DNS may change meanwhile)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("url must be an absolute http or https URL")
    if parts.username or parts.password:
        raise UnsafeTarget("url must not carry credentials")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except (OSError, ValueError) as exc:
        raise UnsafeTarget(f"url host cannot be resolved: {exc}") from None
    for info in infos:
        if _refused(str(info[4][0])):
            raise UnsafeTarget("url resolves to a loopback, private or link-local address")


class WebhookService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def create(
        self, *, tenant_id: UUID, url: str, event_types: list[str] | None, description: str | None
    ) -> dict[str, Any]:
        try:
            await check_target(url, allow_private=self.settings.webhook_allow_private)
        except UnsafeTarget as exc:
            raise ValidationFailed(details=[f"url: {exc}"]) from None
        secret = new_secret()
        # A statement of its own outside any transaction (not db.fetchval, which runs in one
        # under an idempotency key): on Citus only so is the watermark read on the tenant's node.
        async with self.db.connection() as conn:
            watermark = await conn.fetchval(sql.CURRENT_WATERMARK, tenant_id)
        row = await self.db.fetchrow(
            sql.CREATE, tenant_id, url, event_types, description, secret, watermark
        )
        assert row is not None
        # The secret is shown once, here; it stays stored (it signs every delivery).
        return {**render_webhook(row), "secret": secret}

    async def list_all(self, tenant_id: UUID) -> list[dict[str, Any]]:
        return [render_webhook(row) for row in await self.db.fetch(sql.LIST, tenant_id)]

    async def get(self, tenant_id: UUID, webhook_id: UUID) -> dict[str, Any]:
        row = await self.db.fetchrow(sql.GET, tenant_id, webhook_id)
        if row is None:
            raise WebhookNotFound()
        return render_webhook(row)

    async def delete(self, tenant_id: UUID, webhook_id: UUID) -> None:
        status = await self.db.execute(sql.DELETE, tenant_id, webhook_id)
        if status.endswith(" 0"):
            raise WebhookNotFound()

    async def deliveries(self, tenant_id: UUID, webhook_id: UUID) -> list[dict[str, Any]]:
        await self.get(tenant_id, webhook_id)
        rows = await self.db.fetch(sql.DELIVERIES, tenant_id, webhook_id, DELIVERIES_SHOWN)
        return [dict(row) for row in rows]


def render_webhook(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "event_types": row["event_types"],
        "description": row["description"],
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "created_at": row["created_at"],
    }


class WebhookDelivery:
    """The delivery worker: one round claims due webhooks and sends their next events."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._rounds = 0

    async def run_once(self) -> int:
        """Claims due webhooks and works on them concurrently; returns how many."""
        lease = datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS)
        # Tenant by tenant (each claim locks one tenant's rows, as every worker does), each
        # round starting at another tenant so that one tenant's many due webhooks cannot keep
        # the others' waiting.
        tenants = [row["id"] for row in await self.db.fetch(maintenance.ALL_TENANT_IDS)]
        start = self._rounds % len(tenants) if tenants else 0
        self._rounds += 1
        claimed: list[asyncpg.Record] = []
        for tenant_id in tenants[start:] + tenants[:start]:
            if len(claimed) >= CLAIM_BATCH:
                break
            claimed += await self.db.fetch(sql.CLAIM, tenant_id, CLAIM_BATCH - len(claimed), lease)
        if claimed:
            async with httpx.AsyncClient(
                timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
            ) as http:
                await asyncio.gather(*(self._round(http, dict(hook)) for hook in claimed))
        return len(claimed)

    async def _round(self, http: httpx.AsyncClient, hook: dict[str, Any]) -> None:
        try:
            for _ in range(EVENTS_PER_ROUND):
                if not await self._step(http, hook):
                    return
            # More may be waiting: due again at once (for this or another replica).
            position = (hook["position_xid"], hook["position_seq"])
            await self._settle(
                hook, position, attempt=0, failing_since=None, next_at=datetime.now(UTC)
            )
        except LeaseLost:
            log.warning("webhook lease lost", webhook_id=str(hook["id"]))
        except Exception:
            log.exception("webhook round failed", webhook_id=str(hook["id"]))

    async def _step(self, http: httpx.AsyncClient, hook: dict[str, Any]) -> bool:
        """Handles the webhook's next event; True to go on with the next one at once."""
        tenant_id, position = hook["tenant_id"], (hook["position_xid"], hook["position_seq"])
        async with self.db.connection() as conn:
            watermark = await conn.fetchval(sql.CURRENT_WATERMARK, tenant_id)
            row = await conn.fetchrow(
                sql.NEXT_EVENT, tenant_id, *position, hook["event_types"], watermark
            )
        assert row is not None
        now = datetime.now(UTC)
        poll = now + self.settings.webhook_poll_interval
        if row["xid"] is None:
            # Nothing to send: skip ahead to the watermark, look again after a poll interval.
            await self._settle(
                hook,
                max(position, (row["watermark"], 0)),
                attempt=0,
                failing_since=hook["failing_since"],
                next_at=poll,
            )
            return False
        event = render_event(row)
        result = await self._send(http, hook, event)
        status, error, _ = result
        attempt = hook["attempt"] + 1
        sent = (row["xid"], row["seq"])
        if status is not None and 200 <= status < 300:
            await self._log(hook, event["id"], attempt, result, next_at=None)
            # Still leased: this round goes on with the next event.
            await self._settle(hook, sent, attempt=0, failing_since=None, next_at=hook["lease"])
            return True
        failing_since = hook["failing_since"] or now
        if now - failing_since >= self.settings.webhook_disable_after:
            reason = (
                f"disabled after failing since {failing_since.isoformat()}: "
                f"{error or f'HTTP {status}'}"
            )
            await self._log(hook, event["id"], attempt, result, next_at=None)
            await self._settle(
                hook, position, attempt=attempt, failing_since=failing_since, next_at=now,
                reason=reason,
            )  # fmt: skip
            log.warning("webhook disabled", webhook_id=str(hook["id"]), reason=reason)
            return False
        if attempt >= self.settings.webhook_max_attempts:
            # Given up on this event (logged); the next one goes on the next round.
            await self._log(hook, event["id"], attempt, result, next_at=None)
            await self._settle(hook, sent, attempt=0, failing_since=failing_since, next_at=now)
            return False
        retry_at = now + timedelta(seconds=backoff_seconds(attempt))
        await self._log(hook, event["id"], attempt, result, next_at=retry_at)
        await self._settle(
            hook, position, attempt=attempt, failing_since=failing_since, next_at=retry_at
        )
        return False

    async def _send(
        self, http: httpx.AsyncClient, hook: dict[str, Any], event: dict[str, Any]
    ) -> tuple[int | None, str | None, int]:
        started = time.monotonic()
        body = dumps(event)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event["id"],
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(hook["secret"], event["id"], timestamp, body),
        }
        status: int | None = None
        error: str | None = None
        try:
            await check_target(hook["url"], allow_private=self.settings.webhook_allow_private)
            response = await http.post(hook["url"], content=body, headers=headers)
            status = response.status_code
            if 300 <= status < 400:
                error = "redirects are not followed"
        except UnsafeTarget as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        return status, error, round((time.monotonic() - started) * 1000)

    async def _settle(
        self, hook: dict[str, Any], position: tuple[int, int], *, attempt: int,
        failing_since: datetime | None, next_at: datetime, reason: str | None = None,
    ) -> None:  # fmt: skip
        status = await self.db.execute(
            sql.SETTLE, hook["tenant_id"], hook["id"], hook["lease"], position[0], position[1],
            attempt, failing_since, next_at, reason,
        )  # fmt: skip
        if status.endswith(" 0"):
            raise LeaseLost()
        # The round goes on with the new state (the lease now ends at `next_at`).
        hook.update(position_xid=position[0], position_seq=position[1], attempt=attempt,
                    failing_since=failing_since, lease=next_at)  # fmt: skip

    async def _log(
        self, hook: dict[str, Any], event_id: str, attempt: int,
        result: tuple[int | None, str | None, int], *, next_at: datetime | None,
    ) -> None:  # fmt: skip
        """One line of the webhook's deliveries log: this try (status, error, duration) and
        when the next one is due."""
        status, error, elapsed_ms = result
        await self.db.execute(
            sql.LOG_DELIVERY, hook["tenant_id"], hook["id"], event_id, attempt, status, error,
            elapsed_ms, next_at,
        )  # fmt: skip


class LeaseLost(Exception):
    """Another replica took the webhook over (our lease ran out): stop this round."""
