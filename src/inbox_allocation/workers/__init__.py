"""Background workers: asyncio tasks started with the app and stopped cleanly on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from inbox_allocation.config import Settings
from inbox_allocation.db.pool import CONNECTION_ERRORS, Database
from inbox_allocation.domain.errors import DatabaseUnavailable
from inbox_allocation.logging import get_logger
from inbox_allocation.services.event_retention import EventRetention
from inbox_allocation.services.grace import GraceSweeper
from inbox_allocation.services.idempotency import IdempotencyStore
from inbox_allocation.services.priority_keys import PriorityKeys
from inbox_allocation.services.queue_aging import QueueAging
from inbox_allocation.services.webhooks import WebhookDelivery

log = get_logger(__name__)

# A run that failed because the database is unavailable (logged as a warning, no trace).
_UNAVAILABLE: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, DatabaseUnavailable)

# How often the priority-keys worker looks for keys of older weights (one cheap index probe
# per tenant when there are none).
PRIORITY_KEYS_INTERVAL = timedelta(seconds=1)


class PeriodicTask:
    """Runs `job` every `interval` until stopped; a failed run is logged, never fatal."""

    def __init__(
        self,
        name: str,
        job: Callable[[], Awaitable[object]],
        interval: timedelta,
        *,
        run_immediately: bool,
    ) -> None:
        self.name = name
        self.job = job
        self.interval = interval.total_seconds()
        self.run_immediately = run_immediately
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Let the current run finish, then end the loop."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        if not self.run_immediately and await self._sleep():
            return
        while not self._stopping.is_set():
            try:
                await self.job()
            except _UNAVAILABLE as exc:
                log.warning("worker run failed: database unavailable", worker=self.name,
                            error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            except Exception:
                log.exception("worker run failed", worker=self.name)
            if await self._sleep():
                return

    async def _sleep(self) -> bool:
        """Wait one interval; True when asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), self.interval)
        except TimeoutError:
            return False
        return True


class BackgroundWorkers:
    """The service's periodic jobs (grace sweeper, queue aging, priority keys after a
    weights change, idempotency cleanup, event retention, webhook delivery)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        sweeper = GraceSweeper(db, settings.grace_period_batch_size)
        keys = IdempotencyStore(db, settings.idempotency_ttl)
        self.tasks = [
            # One pass at start-up, then every interval (docs/decisions.md#background-workers).
            PeriodicTask(
                "grace-sweeper", sweeper.sweep, settings.grace_period_interval,
                run_immediately=True,
            ),
            PeriodicTask(
                "queue-aging", QueueAging(db).sweep, settings.queue_aging_interval,
                run_immediately=True,
            ),
            PeriodicTask(
                "priority-keys", PriorityKeys(db).catch_up, PRIORITY_KEYS_INTERVAL,
                run_immediately=True,
            ),
            # First run after one interval (docs/decisions.md#background-workers).
            PeriodicTask(
                "idempotency-cleanup", keys.delete_expired,
                settings.idempotency_cleanup_interval, run_immediately=False,
            ),
            PeriodicTask(
                "events-retention", EventRetention(db, settings.events_retention).purge,
                settings.events_cleanup_interval, run_immediately=False,
            ),
            # Claims due webhooks with SKIP LOCKED and a lease: safe in every replica.
            PeriodicTask(
                "webhook-delivery", WebhookDelivery(db, settings).run_once,
                settings.webhook_poll_interval, run_immediately=False,
            ),
        ]  # fmt: skip

    def start(self) -> None:
        for task in self.tasks:
            task.start()

    async def stop(self) -> None:
        await asyncio.gather(*(task.stop() for task in self.tasks))
