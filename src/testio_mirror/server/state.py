"""What the MCP server keeps for its lifetime: the App, the start-up sync, the refresh loop, and a
cached health check.

The start-up sync runs in the background, so the server answers ``initialize`` and ``tools/list``
at once. The refresh loop syncs every ``TESTIO_REFRESH_INTERVAL_SECONDS`` (0: never), skips a
tick while a sync runs, and waits longer after failures (doubling, at most 8 intervals). Shutdown
cancels both; a cancelled run is recorded as ``cancelled`` and releases the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from testio_mirror.app import App
from testio_mirror.sync.lock import SyncLockBusyError
from testio_mirror.sync.models import SyncResult, SyncStatus, SyncTrigger
from testio_mirror.upstream.health import HealthReport

logger = logging.getLogger("testio_mirror.server")

HEALTH_CACHE_SECONDS = 60.0
MAX_BACKOFF_FACTOR = 8

OnRunEnd = Callable[[SyncResult], Awaitable[None]]


class ServerState:
    """The App plus the server's background work."""

    def __init__(self, app: App, *, initial_sync: bool = True) -> None:
        self.app = app
        self._initial_sync = initial_sync and app.settings.customer_api_token is not None
        self._tasks: list[asyncio.Task[None]] = []
        self._health: HealthReport | None = None
        self._health_checked = 0.0
        self._health_lock = asyncio.Lock()
        self.next_refresh_at: datetime | None = None
        self.run_end_listeners: list[OnRunEnd] = []

    @property
    def has_token(self) -> bool:
        return self.app.settings.customer_api_token is not None

    def start(self) -> None:
        """Start the background work; returns at once."""
        if self._initial_sync:
            self._tasks.append(asyncio.create_task(self._startup_sync(), name="startup-sync"))
        interval = self.app.settings.refresh_interval_seconds
        if interval > 0 and self.has_token:
            self._tasks.append(asyncio.create_task(self._refresh_forever(interval), name="refresh"))

    async def stop(self) -> None:
        """Cancel the background work and any run in flight; waits until they ended."""
        for task in self._tasks:
            task.cancel()
        await self.app.sync.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def run_ended(self, result: SyncResult) -> None:
        """Tell listeners (the status resource) that a run ended."""
        for listener in list(self.run_end_listeners):
            try:
                await listener(result)
            except Exception:
                logger.exception("a run-end listener failed")

    async def health(self) -> HealthReport:
        """The last health check, refreshed when older than a minute."""
        async with self._health_lock:
            stale = time.monotonic() - self._health_checked > HEALTH_CACHE_SECONDS
            if self._health is None or stale:
                self._health = await self.app.client.check_health()
                self._health_checked = time.monotonic()
            return self._health

    async def _startup_sync(self) -> None:
        await self._sync(SyncTrigger.STARTUP)

    async def _sync(self, trigger: SyncTrigger) -> SyncResult | None:
        try:
            result = await self.app.sync.execute_sync(trigger=trigger)
        except SyncLockBusyError as exc:
            logger.info("%s sync skipped: %s", trigger.value, exc)
            return None
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s sync crashed", trigger.value)
            return None
        await self.run_ended(result)
        return result

    async def _refresh_forever(self, interval: float) -> None:
        failures = 0
        while True:
            delay = interval * min(2**failures, MAX_BACKOFF_FACTOR)
            self.next_refresh_at = datetime.now(UTC) + timedelta(seconds=delay)
            await asyncio.sleep(delay)
            if self.app.sync.current is not None:
                logger.info("refresh skipped: a sync is running")
                continue
            result = await self._sync(SyncTrigger.SCHEDULE)
            ok = result is not None and result.status is SyncStatus.SUCCESS
            failures = 0 if ok else failures + 1
