"""Operators of a tenant: list, create (with an OFFLINE status), read, change role, delete.

Role changes and deletions run under a lock on the tenant row, so the rule "the tenant
keeps at least one ADMIN" holds under concurrency (decisions.md; D-44 fixed).
"""

from __future__ import annotations

from typing import Any, TypedDict
from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Connection, Database
from inbox_allocation.domain.enums import Role
from inbox_allocation.domain.errors import CannotModifySelf, Forbidden, LastAdmin, NotFound
from inbox_allocation.services.pagination import fetch_page
from inbox_allocation.sql import operators as sql


class AdminCensus(TypedDict):
    """The tenant's ADMINs, counted under the tenant lock."""

    admins: int
    caller_is_admin: bool


class OperatorService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_all(
        self, *, tenant_id: UUID, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The tenant's operators, newest first."""
        async with self.db.connection() as conn:
            return await fetch_page(
                conn,
                sql.LIST_OPERATORS,
                sql.COUNT_OPERATORS,
                tenant_id,
                page=page,
                per_page=per_page,
            )

    async def get(self, *, tenant_id: UUID, operator_id: UUID) -> asyncpg.Record:
        row = await self.db.fetchrow(sql.GET_OPERATOR, tenant_id, operator_id)
        if row is None:
            raise NotFound("operator not found")
        return row

    async def create(
        self, *, tenant_id: UUID, role: Role, capacity: int | None = None
    ) -> asyncpg.Record:
        """The operator and its OFFLINE status row, in one transaction."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(sql.INSERT_OPERATOR, tenant_id, uuid7(), role.value, capacity)
            assert row is not None  # INSERT … RETURNING without a condition
            await conn.execute(sql.INSERT_OFFLINE_STATUS, tenant_id, row["id"], uuid7())
            return row

    async def update(
        self,
        *,
        tenant_id: UUID,
        caller_id: UUID,
        operator_id: UUID,
        role: Role | None,
        set_capacity: bool = False,
        capacity: int | None = None,
    ) -> asyncpg.Record:
        """Change the role and/or the capacity (role None = unchanged; capacity only when
        `set_capacity`, None = unlimited).

        Order: 404 → demoting oneself (409 CANNOT_MODIFY_SELF) → demoting the last ADMIN
        (409 LAST_ADMIN) → update. Setting the current role again only bumps `updated_at`.
        """
        async with self.db.transaction() as conn:
            census = await self._lock_tenant(conn, tenant_id=tenant_id, caller_id=caller_id)
            target = await conn.fetchrow(sql.LOCK_OPERATOR_FOR_UPDATE, tenant_id, operator_id)
            if target is None:
                raise NotFound("operator not found")
            demotes_admin = (
                target["role"] == Role.ADMIN and role is not None and role is not Role.ADMIN
            )
            if demotes_admin and operator_id == caller_id:
                raise CannotModifySelf("an operator cannot demote itself")
            if demotes_admin and census["admins"] <= 1:
                raise LastAdmin("the tenant's last ADMIN cannot be demoted")
            _still_admin(census)
            row = await conn.fetchrow(
                sql.UPDATE_OPERATOR, tenant_id, operator_id,
                role.value if role else None, set_capacity, capacity,
            )  # fmt: skip
            assert row is not None  # the target row is locked by this transaction
            return row

    async def delete(self, *, tenant_id: UUID, caller_id: UUID, operator_id: UUID) -> None:
        """Order: 404 → deleting oneself (409 CANNOT_MODIFY_SELF) → deleting the last ADMIN
        (409 LAST_ADMIN) → re-queue its ALLOCATED conversations (D-36) → clear it from the
        conversations it resolved and the labels it created → delete.
        """
        async with self.db.transaction() as conn:
            census = await self._lock_tenant(conn, tenant_id=tenant_id, caller_id=caller_id)
            await conn.execute(sql.LOCK_STATUS_FOR_DELETE, tenant_id, operator_id)
            target = await conn.fetchrow(sql.LOCK_OPERATOR_FOR_DELETE, tenant_id, operator_id)
            if target is None:
                raise NotFound("operator not found")
            if operator_id == caller_id:
                raise CannotModifySelf("an operator cannot delete itself")
            if target["role"] == Role.ADMIN and census["admins"] <= 1:
                raise LastAdmin("the tenant's last ADMIN cannot be deleted")
            _still_admin(census)
            await conn.execute(sql.REQUEUE_OPERATOR_CONVERSATIONS, tenant_id, operator_id)
            await conn.execute(sql.CLEAR_CONVERSATION_ASSIGNEE, tenant_id, operator_id)
            await conn.execute(sql.CLEAR_LABEL_CREATOR, tenant_id, operator_id)
            await conn.execute(sql.DELETE_OPERATOR, tenant_id, operator_id)

    @staticmethod
    async def _lock_tenant(conn: Connection, *, tenant_id: UUID, caller_id: UUID) -> AdminCensus:
        """Lock the tenant row, serialising role changes and deletions in the tenant, then
        count its ADMINs (and whether the caller is still one) under that lock.
        """
        if await conn.fetchval(sql.LOCK_TENANT, tenant_id) is None:
            raise NotFound("tenant not found")
        census = await conn.fetchrow(sql.ADMIN_CENSUS, tenant_id, caller_id)
        assert census is not None  # an aggregate always returns one row
        return AdminCensus(admins=int(census["admins"]), caller_is_admin=census["caller_is_admin"])


def _still_admin(census: AdminCensus) -> None:
    """The caller's ADMIN role was checked before the tenant lock; a concurrent request may
    have demoted or deleted it since (403 FORBIDDEN). Checked after LAST_ADMIN, so of two
    admins demoting each other the loser hears the business reason.
    """
    if not census["caller_is_admin"]:
        raise Forbidden("this route needs an ADMIN")
