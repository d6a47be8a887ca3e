"""Plain data shared by the harness and the checker: the provisioned world and the final rows.

Both are written to the run directory as JSON, so the checker can be re-run on a finished
run (`python -m stress.run --check-only RUN_DIR`) and unit-tested with hand-made values.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

ROLES_MANAGER_LEVEL = frozenset({"MANAGER", "ADMIN"})


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    id: str
    tenant_id: str
    role: str  # OPERATOR | MANAGER | ADMIN
    max_concurrent: int | None  # capacity (operators.max_concurrent_conversations)
    initial_status: str  # AVAILABLE | BUSY | OFFLINE
    inboxes: tuple[str, ...]  # subscriptions
    gateway: bool = False  # the tenant's ingest identity (never allocates)

    @property
    def manager_level(self) -> bool:
        return self.role in ROLES_MANAGER_LEVEL


@dataclass(frozen=True, slots=True)
class TenantSpec:
    id: str
    name: str
    alpha: float
    beta: float
    inboxes: tuple[str, ...]
    operators: tuple[OperatorSpec, ...]  # the simulated operators and the gateway

    @property
    def gateway(self) -> OperatorSpec:
        return next(op for op in self.operators if op.gateway)

    @property
    def staff(self) -> tuple[OperatorSpec, ...]:
        return tuple(op for op in self.operators if not op.gateway)


@dataclass(frozen=True)
class World:
    tenants: tuple[TenantSpec, ...]
    grace_period_seconds: float = 2.0
    grace_interval_seconds: float = 1.0
    _owner: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _operators: dict[str, OperatorSpec] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for tenant in self.tenants:
            self._owner[tenant.id] = tenant.id
            for inbox in tenant.inboxes:
                self._owner[inbox] = tenant.id
            for op in tenant.operators:
                self._owner[op.id] = tenant.id
                self._operators[op.id] = op

    def owner(self, any_id: str) -> str | None:
        """The tenant a tenant, inbox or operator id belongs to (None: not ours)."""
        return self._owner.get(any_id)

    def operator(self, operator_id: str) -> OperatorSpec | None:
        return self._operators.get(operator_id)

    def tenant(self, tenant_id: str) -> TenantSpec:
        return next(t for t in self.tenants if t.id == tenant_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenants": [asdict(t) for t in self.tenants],
            "grace_period_seconds": self.grace_period_seconds,
            "grace_interval_seconds": self.grace_interval_seconds,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> World:
        tenants = tuple(
            TenantSpec(
                id=t["id"],
                name=t["name"],
                alpha=t["alpha"],
                beta=t["beta"],
                inboxes=tuple(t["inboxes"]),
                operators=tuple(
                    OperatorSpec(**{**op, "inboxes": tuple(op["inboxes"])}) for op in t["operators"]
                ),
            )
            for t in raw["tenants"]
        )
        return cls(
            tenants=tenants,
            grace_period_seconds=raw.get("grace_period_seconds", 2.0),
            grace_interval_seconds=raw.get("grace_interval_seconds", 1.0),
        )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_world(
    rng: random.Random,
    *,
    operators: int = 64,
    tenants: int = 2,
    inboxes_per_tenant: int = 4,
    grace_period_seconds: float = 2.0,
    grace_interval_seconds: float = 1.0,
) -> World:
    """The operators are split evenly; per tenant: one ADMIN, 4 MANAGERs (one in eight
    overall), the rest OPERATORs; three OPERATORs have a capacity (1, 2, 3); everyone starts
    AVAILABLE except one operator in eight (OFFLINE). OPERATORs subscribe to one or two
    inboxes, MANAGERs to two or three, ADMINs to all; every inbox has subscribers."""
    specs: list[TenantSpec] = []
    per_tenant = [
        operators // tenants + (1 if i < operators % tenants else 0) for i in range(tenants)
    ]
    for t_index in range(tenants):
        tenant_id = _uuid(rng)
        inboxes = tuple(_uuid(rng) for _ in range(inboxes_per_tenant))
        ops: list[OperatorSpec] = []
        managers = max(1, per_tenant[t_index] // 8)
        capped = [1, 2, 3]
        for o_index in range(per_tenant[t_index]):
            if o_index == 0:
                role = "ADMIN"
            elif o_index <= managers:
                role = "MANAGER"
            else:
                role = "OPERATOR"
            if role == "ADMIN":
                subscribed = inboxes
            elif role == "MANAGER":
                subscribed = tuple(
                    sorted(rng.sample(inboxes, min(len(inboxes), rng.choice([2, 3]))))
                )
            else:
                first = inboxes[o_index % len(inboxes)]
                extra = rng.choice(inboxes) if rng.random() < 0.5 else first
                subscribed = tuple(sorted({first, extra}))
            cap = capped.pop(0) if role == "OPERATOR" and capped else None
            status = "OFFLINE" if role == "OPERATOR" and o_index % 8 == 7 else "AVAILABLE"
            ops.append(
                OperatorSpec(
                    id=_uuid(rng),
                    tenant_id=tenant_id,
                    role=role,
                    max_concurrent=cap,
                    initial_status=status,
                    inboxes=subscribed,
                )
            )
        ops.append(
            OperatorSpec(
                id=_uuid(rng),
                tenant_id=tenant_id,
                role="MANAGER",
                max_concurrent=None,
                initial_status="OFFLINE",
                inboxes=(),
                gateway=True,
            )
        )
        alpha = 0.6 if t_index % 2 == 0 else 0.5
        specs.append(
            TenantSpec(
                id=tenant_id,
                name=f"stress-tenant-{t_index + 1}-{tenant_id[:8]}",
                alpha=alpha,
                beta=round(1 - alpha, 4),
                inboxes=inboxes,
                operators=tuple(ops),
            )
        )
    return World(
        tenants=tuple(specs),
        grace_period_seconds=grace_period_seconds,
        grace_interval_seconds=grace_interval_seconds,
    )


# --- final rows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: str
    tenant_id: str
    inbox_id: str
    external_id: str
    state: str
    operator: str | None  # assigned_operator_id
    message_count: int
    resolved_at: str | None


@dataclass(frozen=True, slots=True)
class GraceRow:
    conversation_id: str
    operator_id: str
    expired_seconds: float  # now - expires_at at snapshot time (negative: still running)


@dataclass(frozen=True, slots=True)
class OperatorRow:
    id: str
    tenant_id: str
    status: str | None  # None: no status row
    max_concurrent: int | None


@dataclass(frozen=True)
class FinalRows:
    conversations: tuple[ConversationRow, ...]
    grace: tuple[GraceRow, ...]
    operators: tuple[OperatorRow, ...]
    inboxes: dict[str, str] = field(default_factory=dict)  # inbox id -> tenant id
    # The snapshot's instant lies in [taken_at, taken_until] (time.monotonic() of the harness,
    # the event log's clock): before the first query was sent and after it was answered.
    taken_at: float = 0.0
    taken_until: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "taken_until": self.taken_until,
            "conversations": [asdict(c) for c in self.conversations],
            "grace": [asdict(g) for g in self.grace],
            "operators": [asdict(o) for o in self.operators],
            "inboxes": self.inboxes,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FinalRows:
        return cls(
            conversations=tuple(ConversationRow(**c) for c in raw["conversations"]),
            grace=tuple(GraceRow(**g) for g in raw["grace"]),
            operators=tuple(OperatorRow(**o) for o in raw["operators"]),
            inboxes=dict(raw.get("inboxes", {})),
            taken_at=float(raw.get("taken_at", 0.0)),
            taken_until=float(raw.get("taken_until", raw.get("taken_at", 0.0))),
        )
