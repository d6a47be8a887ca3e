"""The load generator: 64 concurrent operator loops and the ingest loops, over real HTTP.

Every loop is sequential (one request of its own in flight, except deliberate concurrent
duplicates of an Idempotency-Key and the allocate-while-leaving race) and has its own
httpx.AsyncClient. What the loops know about conversations (`TenantHints`) is only used to
choose plausible requests; the checker never trusts it.

Behaviour (weights in `AVAILABLE_WEIGHTS`, `MANAGER_WEIGHTS`, `BUSY_WEIGHTS`):
- operators allocate, claim (mostly QUEUED conversations of their inboxes), resolve what they
  hold, list, read their status, and flip AVAILABLE/BUSY/OFFLINE; an OFFLINE spell lasts up to
  `offline_max` seconds, i.e. often longer than the grace period, so the sweeper releases;
  sometimes an operator allocates and goes OFFLINE/BUSY at the same moment (`race_status`);
- managers also deallocate, reassign (never to a capped operator: the capacity check wants
  allocate/claim as the only way in) and move conversations between inboxes;
- ingest loops (the tenant's gateway, a MANAGER) create conversations up to a cap and add
  messages to existing ones, preferring resolved ones (reopen);
- about 1 % of actions are cross-tenant probes (another tenant's conversation, inbox,
  operator or customer phone), which must never succeed nor show the other tenant's data;
- one churn loop per tenant (its ADMIN, `ChurnAgent`) deletes scratch inboxes and scratch
  operators while they are worked on, unsubscribes and re-subscribes staff operators, changes
  the weights and attaches labels: every write path of the lock order (sql/locking.py);
- `race_take` sends two allocations (or allocation + claim) of one operator at once
  (capacity and exclusivity under a same-operator race);
- a share of mutating requests carries an Idempotency-Key; some are retried after the
  answer (the replay must be identical), some are sent twice at once, and any request without
  a definitive answer is retried with its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import random
import ssl
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from stress.checker import definitive
from stress.eventlog import Event, EventLogWriter, body_ids, project_data
from stress.model import OperatorSpec, TenantSpec, World

API = "/api/v1"
PREFILL_STREAMS = 8  # concurrent ingest streams per tenant for the initial backlog

# httpcore asks `import sniffio` on every request; without the package installed each failed
# import scans sys.path (~0.3 ms, a third of the generator's CPU). A None entry makes the
# import fail at once, which httpcore reads as "asyncio", the truth here.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

AVAILABLE_WEIGHTS: dict[str, float] = {
    "allocate": 28,
    "claim": 14,
    "resolve": 24,
    "list": 6,
    "refresh": 3,
    "get_status": 3,
    "go_busy": 3,
    "go_offline": 5,
    "race_status": 2,
    "race_take": 2,
}
MANAGER_WEIGHTS: dict[str, float] = {
    "deallocate": 6,
    "reassign": 7,
    "move": 5,
    "resolve_any": 4,
}
BUSY_WEIGHTS: dict[str, float] = {
    "resolve": 35,
    "allocate": 8,
    "list": 15,
    "get_status": 5,
    "go_available": 25,
    "go_offline": 7,
}


@dataclass(frozen=True)
class LoadProfile:
    duration: float
    think_max: float = 0.03  # seconds between an operator's actions: uniform(0, think_max)
    ingest_loops_per_tenant: int = 2
    ingest_think_max: float = 0.03
    conversation_cap_per_tenant: int = 500  # distinct external ids per tenant
    prefill_per_tenant: int = 60
    p_new_conversation: float = 0.35
    p_key: float = 0.2  # share of mutating requests with an Idempotency-Key
    p_retry: float = 0.35  # of those: sent again after the answer (must replay)
    p_concurrent_duplicate: float = 0.1  # of those: sent twice at once
    p_probe: float = 0.01
    offline_max: float = 6.0
    http_timeout: float = 60.0
    snapshot_every: float = 2.0  # consistent row snapshots during the load (rows invariants)
    churn: bool = True  # one ChurnAgent per tenant (deletes, unsubscribes, weights, labels)


@dataclass(slots=True)
class ConversationHint:
    inbox: str
    state: str
    operator: str | None
    external: str


class TenantHints:
    """What the tenant's loops have seen; used to pick plausible ids, never trusted."""

    def __init__(self, tenant: TenantSpec) -> None:
        self.tenant = tenant
        self.conversations: dict[str, ConversationHint] = {}
        self.ids: list[str] = []
        self.externals: list[str] = []
        self.external_inbox: dict[str, str] = {}
        self.external_phone: dict[str, str] = {}
        self.resolved_externals: deque[str] = deque(maxlen=256)
        self.created = 0

    def observe(self, item: dict[str, Any]) -> None:
        conversation_id, state = item.get("id"), item.get("state")
        if not isinstance(conversation_id, str) or not isinstance(state, str):
            return
        if item.get("tenant_id") not in (None, self.tenant.id):
            return
        known = self.conversations.get(conversation_id)
        external = item.get("external_conversation_id") or (known.external if known else "")
        inbox = item.get("inbox_id") or (known.inbox if known else "")
        if known is None:
            self.ids.append(conversation_id)
        self.conversations[conversation_id] = ConversationHint(
            inbox=str(inbox),
            state=state,
            operator=item.get("assigned_operator_id"),
            external=str(external),
        )
        # Reopening sends a message to a resolved conversation's external id. Not to a churn
        # conversation: its scratch inbox is deleted with it, and a message after that rightly
        # creates a new conversation, which the checker would count as a duplicate.
        if state == "RESOLVED" and external and not str(external).startswith("churn-"):
            self.resolved_externals.append(str(external))

    def pick(
        self, rng: random.Random, wanted: Callable[[ConversationHint], bool], tries: int = 16
    ) -> str | None:
        if not self.ids:
            return None
        for _ in range(tries):
            conversation_id = rng.choice(self.ids)
            if wanted(self.conversations[conversation_id]):
                return conversation_id
        return None

    def any(self, rng: random.Random) -> str | None:
        return rng.choice(self.ids) if self.ids else None


class Recorder:
    """Sends one request, records it (and its answer) in the event log."""

    def __init__(self, log: EventLogWriter, hints: dict[str, TenantHints]) -> None:
        self.log = log
        self.hints = hints
        self.seq = log.count  # sequence numbers continue over several phases of one log
        self.inflight = 0

    async def call(
        self,
        client: httpx.AsyncClient,
        actor: OperatorSpec,
        action: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        idem_key: str | None = None,
        attempt: int = 1,
        expect: dict[str, Any] | None = None,
    ) -> Event:
        self.seq += 1
        event = Event(
            expect=expect,
            seq=self.seq,
            action=action,
            tenant=actor.tenant_id,
            operator=actor.id,
            method=method,
            path=path,
            query=query,
            body=body,
            idem_key=idem_key,
            attempt=attempt,
        )
        headers = {
            "X-Tenant-ID": actor.tenant_id,
            "X-Operator-ID": actor.id,
            "X-Request-ID": f"stress-{event.seq}",
        }
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        if idem_key is not None:
            headers["Idempotency-Key"] = idem_key
        self.inflight += 1
        event.wall_send = time.time()
        event.t_send = time.monotonic()
        try:
            response = await client.request(
                method, path, content=content, params=query, headers=headers
            )
        except (httpx.HTTPError, asyncio.CancelledError) as exc:
            event.error = f"{type(exc).__name__}: {exc}"
            self.log.write(event)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return event
        finally:
            self.inflight -= 1
        event.t_recv = time.monotonic()
        event.wall_recv = time.time()
        raw = response.content
        event.status = response.status_code
        event.replayed = response.headers.get("idempotent-replayed") == "true"
        parsed: Any = None
        if raw:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
        if isinstance(parsed, dict):
            error = parsed.get("error")
            if isinstance(error, dict):
                event.code = error.get("code")
                event.data = error
            else:
                event.data = project_data(path, method, parsed.get("data"))
        event.body_ids = body_ids(raw)
        if idem_key is not None:
            event.body_sha256 = hashlib.sha256(raw).hexdigest()
        self.log.write(event)
        if 200 <= event.status < 300:
            self._observe(actor.tenant_id, event.data)
        return event

    def _observe(self, tenant_id: str, data: Any) -> None:
        hints = self.hints.get(tenant_id)
        if hints is None or not isinstance(data, dict):
            return
        items = data.get("conversations")
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    hints.observe(item)
        else:
            hints.observe(data)


@dataclass
class LoadContext:
    world: World
    profile: LoadProfile
    recorder: Recorder
    hints: dict[str, TenantHints]
    base_url: str = ""
    deadline: float = 0.0
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    _ssl: ssl.SSLContext | None = None

    def done(self) -> bool:
        return time.monotonic() >= self.deadline

    def new_client(self) -> httpx.AsyncClient:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # loaded once, shared (never used: http)
        client = httpx.AsyncClient(
            base_url=self.base_url,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            timeout=httpx.Timeout(self.profile.http_timeout),
            verify=self._ssl,
        )
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients))
        self.clients.clear()


class Agent:
    """Shared request helpers of operator and ingest loops. Each agent has its own client
    (like a real operator's browser): httpcore scans every pooled connection per request, so
    one shared pool of a hundred connections would make the generator the bottleneck."""

    def __init__(self, ctx: LoadContext, spec: OperatorSpec, rng: random.Random) -> None:
        self.ctx = ctx
        self.client = ctx.new_client()
        self.spec = spec
        self.rng = rng
        self.tenant = ctx.world.tenant(spec.tenant_id)
        self.hints = ctx.hints[spec.tenant_id]

    def _key(self) -> str:
        return f"stress-{self.rng.getrandbits(64):016x}"

    async def send(
        self, action: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> Event:
        """A mutating request; sometimes with an Idempotency-Key, retried and duplicated."""
        rec = self.ctx.recorder
        profile = self.ctx.profile
        if self.rng.random() >= profile.p_key:
            return await rec.call(self.client, self.spec, action, method, path, body=body)
        key = self._key()

        def attempt(n: int) -> Awaitable[Event]:
            return rec.call(
                self.client, self.spec, action, method, path, body=body, idem_key=key, attempt=n
            )

        if self.rng.random() < profile.p_concurrent_duplicate:
            first, second = await asyncio.gather(attempt(1), attempt(2))
            return first if definitive(first) else second
        event = await attempt(1)
        tries = 1
        while not definitive(event) and tries < 3:
            tries += 1
            await asyncio.sleep(0.05 * tries)
            event = await attempt(tries)
        if definitive(event) and self.rng.random() < profile.p_retry:
            await asyncio.sleep(self.rng.uniform(0, 0.05))
            await attempt(tries + 1)  # must be an identical replay
        return event

    def other_tenant(self) -> TenantSpec | None:
        others = [t for t in self.ctx.world.tenants if t.id != self.spec.tenant_id]
        return self.rng.choice(others) if others else None


class OperatorAgent(Agent):
    def __init__(self, ctx: LoadContext, spec: OperatorSpec, rng: random.Random) -> None:
        super().__init__(ctx, spec, rng)
        self.status = spec.initial_status
        self.held: set[str] = set()
        self.offline_until = 0.0
        weights = dict(AVAILABLE_WEIGHTS)
        if spec.manager_level:
            weights.update(MANAGER_WEIGHTS)
        self.available_actions = list(weights)
        self.available_weights = list(weights.values())
        self.busy_actions = list(BUSY_WEIGHTS)
        self.busy_weights = list(BUSY_WEIGHTS.values())
        self.capped_ids = {op.id for op in self.tenant.operators if op.max_concurrent is not None}

    async def run(self) -> None:
        if self.status == "OFFLINE":
            self.offline_until = time.monotonic() + self.rng.uniform(
                0.2, self.ctx.profile.offline_max
            )
        while not self.ctx.done():
            await asyncio.sleep(self.rng.uniform(0, self.ctx.profile.think_max))
            if self.ctx.done():
                break
            if self.rng.random() < self.ctx.profile.p_probe:
                await self.probe()
                continue
            if self.status == "OFFLINE":
                await self.offline_step()
                continue
            if self.status == "BUSY":
                action = self.rng.choices(self.busy_actions, self.busy_weights)[0]
            else:
                action = self.rng.choices(self.available_actions, self.available_weights)[0]
            await getattr(self, f"do_{action}")()

    # -- status ------------------------------------------------------------------------------

    async def set_status(self, status: str) -> None:
        event = await self.send(
            f"status_{status.lower()}", "PUT", f"{API}/operator/status", {"status": status}
        )
        if event.status == 200 and isinstance(event.data, dict):
            self.status = str(event.data.get("status", self.status))
            if self.status == "OFFLINE":
                self.offline_until = time.monotonic() + self.rng.uniform(
                    0.2, self.ctx.profile.offline_max
                )

    async def do_go_busy(self) -> None:
        await self.set_status("BUSY")

    async def do_go_offline(self) -> None:
        await self.set_status("OFFLINE")

    async def do_go_available(self) -> None:
        await self.set_status("AVAILABLE")

    async def do_race_status(self) -> None:
        """Allocate (or claim) and leave (OFFLINE/BUSY) at the same time: whichever commits
        first, an allocation that succeeds must end up with a grace row or be refused."""
        leave = "OFFLINE" if self.rng.random() < 0.7 else "BUSY"
        take = self.do_allocate() if self.rng.random() < 0.7 else self.do_claim()
        await asyncio.gather(take, self.set_status(leave))

    async def do_race_take(self) -> None:
        """Two allocations (or an allocation and a claim) of one operator at once: capacity
        and exclusivity must hold whichever wins."""
        second = self.do_allocate() if self.rng.random() < 0.6 else self.do_claim()
        await asyncio.gather(self.do_allocate(), second)

    async def offline_step(self) -> None:
        remaining = self.offline_until - time.monotonic()
        if remaining <= 0:
            await self.set_status("AVAILABLE" if self.rng.random() < 0.8 else "BUSY")
            return
        roll = self.rng.random()
        if roll < 0.1:
            await self.do_allocate()  # expected: 400 OPERATOR_NOT_AVAILABLE
        elif roll < 0.25:
            await self.do_resolve()
        else:
            await asyncio.sleep(min(remaining, self.rng.uniform(0.05, 0.4)))

    async def do_get_status(self) -> None:
        await self.ctx.recorder.call(
            self.client, self.spec, "get_status", "GET", f"{API}/operator/status"
        )

    # -- conversations ---------------------------------------------------------------------------

    async def do_allocate(self) -> None:
        event = await self.send("allocate", "POST", f"{API}/allocate")
        if event.status == 200 and isinstance(event.data, dict):
            self.held.add(str(event.data.get("id")))

    async def do_claim(self) -> None:
        inboxes = set(self.spec.inboxes)
        target = self.hints.pick(
            self.rng, lambda h: h.state == "QUEUED" and h.inbox in inboxes
        ) or self.hints.any(self.rng)
        if target is None:
            await self.do_allocate()
            return
        event = await self.send("claim", "POST", f"{API}/claim", {"conversation_id": target})
        if event.status == 200:
            self.held.add(target)

    async def do_resolve(self) -> None:
        if self.held:
            target: str | None = self.rng.choice(sorted(self.held))
        else:
            me = self.spec.id
            target = self.hints.pick(
                self.rng, lambda h: h.state == "ALLOCATED" and h.operator == me
            )
        if target is None:
            return
        await self.resolve(target, "resolve")

    async def resolve(self, target: str, action: str) -> None:
        event = await self.send(action, "POST", f"{API}/resolve", {"conversation_id": target})
        if event.status is not None and event.status < 500:
            self.held.discard(target)

    async def do_resolve_any(self) -> None:
        target = self.hints.pick(self.rng, lambda h: h.state == "ALLOCATED")
        if target is not None:
            await self.resolve(target, "resolve_any")

    async def do_list(self) -> None:
        query = {"per_page": "20"}
        roll = self.rng.random()
        if roll < 0.5:
            query["state"] = "QUEUED"
            query["sort"] = "priority"
        elif roll < 0.7:
            query["inbox_id"] = self.rng.choice(self.tenant.inboxes)
        await self.ctx.recorder.call(
            self.client, self.spec, "list", "GET", f"{API}/conversations", query=query
        )

    async def do_refresh(self) -> None:
        """Re-learn what the caller holds (the sweeper or a manager may have taken some)."""
        query = {"operator_id": self.spec.id, "state": "ALLOCATED", "per_page": "100"}
        event = await self.ctx.recorder.call(
            self.client, self.spec, "list_mine", "GET", f"{API}/conversations", query=query
        )
        if event.status == 200 and isinstance(event.data, dict):
            items = event.data.get("conversations") or []
            self.held = {str(item.get("id")) for item in items if isinstance(item, dict)}

    # -- manager actions -------------------------------------------------------------------------

    async def do_deallocate(self) -> None:
        target = self.hints.pick(self.rng, lambda h: h.state == "ALLOCATED") or self.hints.any(
            self.rng
        )
        if target is not None:
            await self.send("deallocate", "POST", f"{API}/deallocate", {"conversation_id": target})

    async def do_reassign(self) -> None:
        target = self.hints.pick(self.rng, lambda h: h.state == "ALLOCATED")
        if target is None:
            return
        hint = self.hints.conversations[target]
        candidates = [
            op
            for op in self.tenant.staff
            if op.id not in self.capped_ids and op.id != hint.operator
        ]
        subscribed = [op for op in candidates if hint.inbox in op.inboxes]
        pool = subscribed if subscribed and self.rng.random() < 0.85 else candidates
        if not pool:
            return
        body = {"conversation_id": target, "operator_id": self.rng.choice(pool).id}
        await self.send("reassign", "POST", f"{API}/reassign", body)

    async def do_move(self) -> None:
        target = self.hints.pick(self.rng, lambda h: h.state != "RESOLVED") or self.hints.any(
            self.rng
        )
        if target is None:
            return
        current = self.hints.conversations[target].inbox
        inboxes = [i for i in self.tenant.inboxes if i != current] or list(self.tenant.inboxes)
        body = {"conversation_id": target, "inbox_id": self.rng.choice(inboxes)}
        await self.send("move", "POST", f"{API}/move_inbox", body)

    # -- cross-tenant probes ---------------------------------------------------------------------

    async def probe(self) -> None:
        """Another tenant's ids in every place an id goes. `probe_*` actions must never
        succeed; the list/search probes may answer 200 but never with the other's data."""
        other = self.other_tenant()
        if other is None:
            return
        foreign = self.ctx.hints[other.id].any(self.rng)
        own = self.hints.any(self.rng)
        choices = ["claim", "get", "resolve", "list", "search"]
        if self.spec.manager_level and own is not None:
            choices += ["move", "reassign"]
        kind = self.rng.choice(choices)
        rec = self.ctx.recorder
        if kind == "move" and own is not None:
            body = {"conversation_id": own, "inbox_id": self.rng.choice(other.inboxes)}
            await self.send("probe_move", "POST", f"{API}/move_inbox", body)
        elif kind == "reassign" and own is not None:
            body = {"conversation_id": own, "operator_id": self.rng.choice(other.staff).id}
            await self.send("probe_reassign", "POST", f"{API}/reassign", body)
        elif kind == "list":
            query = (
                {"inbox_id": self.rng.choice(other.inboxes)}
                if self.rng.random() < 0.5
                else {"operator_id": self.rng.choice(other.staff).id}
            )
            await rec.call(
                self.client, self.spec, "foreign_list", "GET", f"{API}/conversations", query=query
            )
        elif kind == "search":
            phones = list(self.ctx.hints[other.id].external_phone.values())
            if phones:
                query = {"phone": self.rng.choice(phones)}
                await rec.call(
                    self.client, self.spec, "foreign_search", "GET", f"{API}/search", query=query
                )
        elif foreign is None:
            return
        elif kind == "get":
            await rec.call(
                self.client, self.spec, "probe_get", "GET", f"{API}/conversations/{foreign}"
            )
        elif kind == "claim":
            await self.send("probe_claim", "POST", f"{API}/claim", {"conversation_id": foreign})
        else:
            await self.send("probe_resolve", "POST", f"{API}/resolve", {"conversation_id": foreign})


class IngestAgent(Agent):
    """The tenant's messaging gateway: new conversations and messages to existing ones."""

    def __init__(
        self, ctx: LoadContext, tenant: TenantSpec, index: int, rng: random.Random
    ) -> None:
        super().__init__(ctx, tenant.gateway, rng)
        self.index = index
        self.counter = 0

    def _new_external(self) -> tuple[str, str, str]:
        self.counter += 1
        external = f"{self.tenant.name[-8:]}-{self.index}-{self.counter}"
        inbox = self.rng.choice(self.tenant.inboxes)
        phone = f"+1415{self.rng.randrange(10**6, 10**7)}"
        return external, inbox, phone

    async def ingest(self, *, new: bool) -> None:
        hints = self.hints
        if new or not hints.externals:
            external, inbox, phone = self._new_external()
            hints.created += 1
            action = "ingest_new"
        else:
            if hints.resolved_externals and self.rng.random() < 0.4:
                external = hints.resolved_externals.popleft()
            else:
                external = self.rng.choice(hints.externals)
            inbox = hints.external_inbox.get(external) or self.rng.choice(self.tenant.inboxes)
            if self.rng.random() < 0.1:
                inbox = self.rng.choice(self.tenant.inboxes)  # ignored for existing ones
            phone = hints.external_phone.get(external, "+14155550000")
            action = "ingest_message"
        body: dict[str, Any] = {
            "inbox_id": inbox,
            "external_conversation_id": external,
            "customer_phone_number": phone,
        }
        if self.rng.random() < 0.2:
            # Up to 36 h back: conversations waiting over 24 h take allocation's "aged" path.
            at = datetime.now(UTC) - timedelta(seconds=self.rng.uniform(0, 36 * 3600))
            body["message_at"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = await self.send(action, "POST", f"{API}/conversations", body)
        if event.status in (200, 201) and external not in hints.external_inbox:
            hints.externals.append(external)
            hints.external_inbox[external] = inbox
            hints.external_phone[external] = phone

    async def probe(self) -> None:
        other = self.other_tenant()
        if other is None:
            return
        external, _inbox, phone = self._new_external()
        body = {
            "inbox_id": self.rng.choice(other.inboxes),
            "external_conversation_id": f"probe-{external}",
            "customer_phone_number": phone,
        }
        await self.send("probe_ingest", "POST", f"{API}/conversations", body)

    async def run(self) -> None:
        profile = self.ctx.profile
        while not self.ctx.done():
            await asyncio.sleep(self.rng.uniform(0, profile.ingest_think_max))
            if self.ctx.done():
                break
            if self.rng.random() < profile.p_probe:
                await self.probe()
                continue
            under_cap = self.hints.created < profile.conversation_cap_per_tenant
            await self.ingest(new=under_cap and self.rng.random() < profile.p_new_conversation)


CHURN_WEIGHTS: dict[str, float] = {
    "inbox_cycle": 2,
    "operator_cycle": 2,
    "unsubscribe_cycle": 3,
    "weights": 2,
    "labels": 4,
}


class ChurnAgent(Agent):
    """The tenant's ADMIN changing the world under the operators' feet (every write path of
    the lock order, sql/locking.py, meets allocations, claims and lifecycle calls):

    - inbox_cycle: a scratch inbox, six staff operators subscribed to it, a few
      conversations ingested into it (operators allocate them), then the inbox is deleted
      while they work; its conversations vanish with it (the checker allows exactly that);
    - operator_cycle: a scratch OPERATOR goes AVAILABLE, subscribes to a tenant inbox and
      allocates while the ADMIN deletes it (its conversations go back to the queue);
    - unsubscribe_cycle: a staff operator leaves one of its inboxes (its conversations there
      go back to the queue) and is subscribed again before the action ends, so the world's
      subscriptions hold again for the quiet phase;
    - weights: PUT /tenant/weights;
    - labels: attach (or detach) a label of its inbox to a known conversation.
    """

    def __init__(self, ctx: LoadContext, tenant: TenantSpec, rng: random.Random) -> None:
        admin = next(op for op in tenant.staff if op.role == "ADMIN")
        super().__init__(ctx, admin, rng)
        self.gateway = tenant.gateway
        self.labels: dict[str, list[str]] = {}  # inbox -> label ids

    async def run(self) -> None:
        actions, weights = list(CHURN_WEIGHTS), list(CHURN_WEIGHTS.values())
        first = self.rng.sample(actions, len(actions))  # every action once, then at random
        while not self.ctx.done():
            await asyncio.sleep(self.rng.uniform(0, 0.05))
            if self.ctx.done():
                break
            action = first.pop() if first else self.rng.choices(actions, weights)[0]
            await getattr(self, f"do_{action}")()

    def _name(self) -> str:
        # Unique across tenants and across the phases of one run (each phase seeds its agents
        # alike, so a seeded name would repeat).
        return f"churn-{uuid.uuid4().hex[:16]}"

    async def _call(
        self, action: str, method: str, path: str, body: dict[str, Any] | None = None,
        actor: OperatorSpec | None = None,
    ) -> Event:  # fmt: skip
        return await self.ctx.recorder.call(
            self.client, actor or self.spec, action, method, path, body=body
        )

    async def do_inbox_cycle(self) -> None:
        phone = f"+1999{self.rng.randrange(10**7, 10**8)}"
        created = await self._call(
            "churn_inbox_create", "POST", f"{API}/inboxes",
            {"phone_number": phone, "display_name": self._name()},
        )  # fmt: skip
        if created.status != 201 or not isinstance(created.data, dict):
            return
        inbox = str(created.data["id"])
        staff = [op for op in self.tenant.staff if op.role != "ADMIN"]
        for op in self.rng.sample(staff, min(6, len(staff))):
            await self._call(
                "churn_subscribe", "POST", f"{API}/inboxes/{inbox}/operators",
                {"operator_id": op.id},
            )  # fmt: skip
        for _ in range(self.rng.randint(5, 20)):
            body = {
                "inbox_id": inbox,
                "external_conversation_id": self._name(),
                "customer_phone_number": f"+1415{self.rng.randrange(10**6, 10**7)}",
            }
            await self._call("ingest_new", "POST", f"{API}/conversations", body, self.gateway)
        await asyncio.sleep(self.rng.uniform(0, 0.3))
        await self._call("churn_inbox_delete", "DELETE", f"{API}/inboxes/{inbox}")

    async def do_operator_cycle(self) -> None:
        created = await self._call(
            "churn_operator_create", "POST", f"{API}/operators", {"role": "OPERATOR"}
        )
        if created.status != 201 or not isinstance(created.data, dict):
            return
        inbox = self.rng.choice(self.tenant.inboxes)
        scratch = OperatorSpec(
            id=str(created.data["id"]), tenant_id=self.tenant.id, role="OPERATOR",
            max_concurrent=None, initial_status="OFFLINE", inboxes=(inbox,),
        )  # fmt: skip
        await self._call(
            "churn_subscribe", "POST", f"{API}/inboxes/{inbox}/operators",
            {"operator_id": scratch.id},
        )  # fmt: skip
        await self._call(
            "status_available", "PUT", f"{API}/operator/status", {"status": "AVAILABLE"}, scratch
        )

        async def work() -> None:
            for _ in range(self.rng.randint(1, 4)):
                await self._call("allocate", "POST", f"{API}/allocate", None, scratch)

        async def delete() -> None:
            await asyncio.sleep(self.rng.uniform(0, 0.05))
            await self._call("churn_operator_delete", "DELETE", f"{API}/operators/{scratch.id}")

        await asyncio.gather(work(), delete())

    async def do_unsubscribe_cycle(self) -> None:
        members = [op for op in self.tenant.staff if op.inboxes and op.id != self.spec.id]
        if not members:
            return
        op = self.rng.choice(members)
        inbox = self.rng.choice(op.inboxes)
        path = f"{API}/inboxes/{inbox}/operators"
        await self._call("churn_unsubscribe", "DELETE", f"{path}/{op.id}")
        await asyncio.sleep(self.rng.uniform(0, 0.3))
        for _ in range(10):  # the world's subscriptions must hold again afterwards
            event = await self._call("churn_subscribe", "POST", path, {"operator_id": op.id})
            if event.status == 201:
                return
            await asyncio.sleep(0.1)

    async def do_weights(self) -> None:
        alpha = round(self.rng.uniform(0.2, 0.8), 2)
        body = {"alpha": alpha, "beta": round(1 - alpha, 2)}
        await self._call("churn_weights", "PUT", f"{API}/tenant/weights", body)

    async def do_labels(self) -> None:
        target = self.hints.pick(self.rng, lambda h: h.inbox in self.tenant.inboxes)
        if target is None:
            return
        inbox = self.hints.conversations[target].inbox
        if inbox not in self.labels:
            event = await self._call(
                "churn_label_create", "POST", f"{API}/labels",
                {"inbox_id": inbox, "name": self._name()},
            )  # fmt: skip
            if event.status != 201 or not isinstance(event.data, dict):
                return
            self.labels[inbox] = [str(event.data["id"])]
        verb = "attach" if self.rng.random() < 0.7 else "detach"
        body = {"conversation_id": target, "label_id": self.rng.choice(self.labels[inbox])}
        await self._call(f"churn_label_{verb}", "POST", f"{API}/labels/{verb}", body)


async def prefill(ctx: LoadContext, rng: random.Random, per_tenant: int) -> None:
    """An initial backlog per tenant (logged like every other request)."""

    async def fill(agent: IngestAgent, count: int) -> None:
        for _ in range(count):
            await agent.ingest(new=True)

    agents = []
    for tenant in ctx.world.tenants:
        for index in range(PREFILL_STREAMS):
            agent = IngestAgent(ctx, tenant, 100 + index, random.Random(rng.getrandbits(64)))  # noqa: S311
            share = per_tenant // PREFILL_STREAMS + (
                1 if index < per_tenant % PREFILL_STREAMS else 0
            )
            agents.append(fill(agent, share))
    await asyncio.gather(*agents)


@dataclass
class LoadResult:
    requests: int
    started: float
    finished: float


async def run_load(
    world: World,
    base_url: str,
    log: EventLogWriter,
    profile: LoadProfile,
    seed: int,
) -> LoadResult:
    """Prefill, then every loop for `profile.duration` seconds; returns when all loops ended."""
    rng = random.Random(seed)  # noqa: S311 - load shaping, not security
    hints = {tenant.id: TenantHints(tenant) for tenant in world.tenants}
    recorder = Recorder(log, hints)
    ctx = LoadContext(
        world=world, profile=profile, recorder=recorder, hints=hints, base_url=base_url
    )
    try:
        ctx.deadline = time.monotonic() + 3600  # prefill is not limited by the run time
        await prefill(ctx, rng, profile.prefill_per_tenant)
        agents: list[OperatorAgent | IngestAgent | ChurnAgent] = [
            OperatorAgent(ctx, op, random.Random(rng.getrandbits(64)))  # noqa: S311
            for tenant in world.tenants
            for op in tenant.staff
        ]
        agents += [
            IngestAgent(ctx, tenant, index, random.Random(rng.getrandbits(64)))  # noqa: S311
            for tenant in world.tenants
            for index in range(profile.ingest_loops_per_tenant)
        ]
        if profile.churn:
            agents += [
                ChurnAgent(ctx, tenant, random.Random(rng.getrandbits(64)))  # noqa: S311
                for tenant in world.tenants
                if any(op.role == "ADMIN" for op in tenant.staff)
            ]
        started = time.monotonic()
        ctx.deadline = started + profile.duration
        tasks = [asyncio.create_task(agent.run()) for agent in agents]
        # Loops finish their current action after the deadline; a stuck one is cancelled (its
        # request is then logged without an answer, which the checker reports).
        done, pending = await asyncio.wait(
            tasks, timeout=profile.duration + profile.http_timeout + 30
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
        finished = time.monotonic()
    finally:
        await ctx.close_clients()
    log.flush()
    return LoadResult(requests=recorder.seq, started=started, finished=finished)
