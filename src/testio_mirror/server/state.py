"""What the MCP server keeps for its lifetime: the App, the start-up sync, the refresh loop, and a
cached health check.

Nothing slow stands between a client and the server's first answers: the App (mirror, client,
sync service, and the modules behind them: httpx, aiosqlite, the store) is loaded and opened in
the background, so ``initialize`` and ``tools/list`` are answered at once; a tool called before
the App is open waits for it. The start-up sync follows in the background. The refresh loop syncs
every ``TESTIO_REFRESH_INTERVAL_SECONDS`` (0: never), skips a tick while a sync runs, and waits
longer after failures (doubling, at most 8 intervals). Shutdown cancels both; the run it stops is
recorded as ``interrupted`` (not ``cancelled``: nobody asked) and releases the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from testio_mirror.errors import MirrorError
from testio_mirror.server.triage_confirm import ConfirmationTokens
from testio_mirror.settings import Settings
from testio_mirror.sync.models import (
    DEFAULT_PHASES,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)

if TYPE_CHECKING:
    from testio_mirror.app import App
    from testio_mirror.upstream.health import HealthReport

logger = logging.getLogger("testio_mirror.server")

HEALTH_CACHE_SECONDS = 60.0
MAX_BACKOFF_FACTOR = 8

OnRunEnd = Callable[[SyncResult], Awaitable[None]]


def _load_app_modules() -> None:
    """Import what the App needs; run in a thread while the event loop answers the client."""
    import testio_mirror.app  # noqa: F401


class ServerState:
    """The App (opened in the background) plus the server's background work."""

    def __init__(self, settings: Settings, *, initial_sync: bool = True) -> None:
        self.settings = settings
        self._initial_sync = initial_sync and settings.customer_api_token is not None
        self._app_scope = contextlib.AsyncExitStack()
        self._opening: asyncio.Task[App] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._health: HealthReport | None = None
        self._health_checked = 0.0
        self._health_lock = asyncio.Lock()
        self.next_refresh_at: datetime | None = None
        self.run_end_listeners: list[OnRunEnd] = []
        self._stopping = False
        # One-time tokens of triage_bugs' needs_confirmation answers (server/triage_confirm.py).
        self.confirmations = ConfirmationTokens()

    @property
    def has_token(self) -> bool:
        return self.settings.customer_api_token is not None

    def start(self) -> None:
        """Start opening the App and the background work; returns at once."""
        self._opening = asyncio.create_task(self._open_app(), name="open-app")
        if self._initial_sync:
            self._tasks.append(asyncio.create_task(self._startup_sync(), name="startup-sync"))
        interval = self.settings.refresh_interval_seconds
        if interval > 0 and self.has_token:
            self._tasks.append(asyncio.create_task(self._refresh_forever(interval), name="refresh"))

    async def app(self) -> App:
        """The open App, once it is open.

        Raises:
            StoreError: the mirror could not be opened (each call tries again: a busy mirror
                waits for the other writer up to TESTIO_MIRROR_BUSY_TIMEOUT_SECONDS).
        """
        if self._opening is None:
            raise RuntimeError("ServerState.start() was not called")
        failed = self._opening.done() and (
            self._opening.cancelled() or self._opening.exception() is not None
        )
        if failed and not self._stopping:
            # Opening failed (the mirror was busy, damaged, ...): this call tries again, so the
            # server serves once the cause is gone, without a restart.
            self._opening = asyncio.create_task(self._open_app(), name="open-app")
        # Shielded: a cancelled tool call must not cancel the opening for everyone else.
        return await asyncio.shield(self._opening)

    @property
    def opened_app(self) -> App | None:
        """The App if it is open already (for answers that must not wait)."""
        if self._opening is None or not self._opening.done() or self._opening.cancelled():
            return None
        return None if self._opening.exception() else self._opening.result()

    async def stop(self) -> None:
        """Cancel the background work and any run in flight, close the App; waits for all.
        A run stopped here is recorded ``interrupted`` (resumable), not ``cancelled``: nobody
        asked for it to stop, and it must not pose as the last result."""
        self._stopping = True
        app = self.opened_app
        if app is not None:
            # Before the tasks are cancelled: the run must learn why it stops first.
            await app.sync.cancel(shutting_down=True)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._opening is not None:
            # Let an opening in progress finish, so what it opened is closed below.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._opening
        await self._app_scope.aclose()

    async def _open_app(self) -> App:
        await asyncio.to_thread(_load_app_modules)
        from testio_mirror.app import open_app

        try:
            app = await self._app_scope.enter_async_context(open_app(self.settings))
        except MirrorError as exc:
            # The user's reason, with the file's path: for the log, not for the agent.
            logger.error("the mirror could not be opened: %s", exc)
            raise
        except Exception:
            logger.exception("the mirror could not be opened")
            raise
        # Every run that ends is announced, also one nobody awaits (wait=false, a caller gone).
        app.sync.finish_listeners.append(self.run_ended)
        return app

    async def run_ended(self, result: SyncResult) -> None:
        """Tell listeners (the status resource) that a run ended (the sync service calls this
        for every run that ends on its own)."""
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
                app = await self.app()
                self._health = await app.client.check_health()
                self._health_checked = time.monotonic()
                if app.mirror.gate is not None:  # queries stop waiting on a TestIO known down
                    app.mirror.gate.health.record(self._health)
            return self._health

    async def _startup_sync(self) -> None:
        await self._sync(SyncTrigger.STARTUP)

    async def _sync(self, trigger: SyncTrigger) -> SyncResult | None:
        from testio_mirror.sync.lock import SyncLockBusyError

        try:
            app = await self.app()
        except Exception:
            return None  # _open_app logged why; tools answer with the reason
        try:
            result = await app.sync.execute_sync(*self._background_run(), trigger=trigger)
        except SyncLockBusyError as exc:
            logger.info("%s sync skipped: %s", trigger.value, exc)
            return None
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s sync crashed", trigger.value)
            return None
        return result

    def _background_run(self) -> tuple[list[SyncPhase], SyncScope]:
        """The phases and scope of the start-up sync and the refreshes: the default phases,
        and the bugs of tests running or ended within ``recent_bug_days`` (bounded: a new
        mirror's ``list_bugs`` and ``bug_stats`` answer about recent work at once, without the
        whole history's bugs)."""
        days = self.settings.recent_bug_days
        if days == 0:
            return list(DEFAULT_PHASES), SyncScope()
        horizon = datetime.now(UTC) - timedelta(days=days)
        return [*DEFAULT_PHASES, SyncPhase.BUGS], SyncScope(bugs_since=horizon)

    async def _refresh_forever(self, interval: float) -> None:
        failures = 0
        while True:
            delay = interval * min(2**failures, MAX_BACKOFF_FACTOR)
            self.next_refresh_at = datetime.now(UTC) + timedelta(seconds=delay)
            await asyncio.sleep(delay)
            app = self.opened_app
            if app is not None and app.sync.current is not None:
                logger.info("refresh skipped: a sync is running")
                continue
            result = await self._sync(SyncTrigger.SCHEDULE)
            ok = result is not None and result.status is SyncStatus.SUCCESS
            failures = 0 if ok else failures + 1
