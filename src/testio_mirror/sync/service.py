"""``SyncService``: every sync, whoever asks (server start-up, refresh loop, tool, CLI).

A run holds the cross-process sync lock, runs its phases (``sync/phases.py``) in the order
PRODUCTS -> FEATURES -> NEW_TESTS -> BUGS, and records itself in ``sync_events``
(``sync/run.py``). In one process there is one run at a time: a request that the run in flight
covers joins it, one asking for more runs after it.

Example::

    service = SyncService(settings, client, mirror)
    result = await service.execute_sync(trigger=SyncTrigger.CLI, on_progress=show)
    result.status, result.summary()
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from testio_mirror.errors import StoreError
from testio_mirror.settings import Settings
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.sqlite.db import COMMIT_GUARD
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.store.sync_state import mark_interrupted
from testio_mirror.sync.lock import LockOwner, SyncLock, SyncLockLostError
from testio_mirror.sync.models import (
    DEFAULT_PHASES,
    PHASE_ORDER,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
    UnknownProductsError,
)
from testio_mirror.sync.phases import PhaseRunner
from testio_mirror.sync.progress import OnProgress
from testio_mirror.sync.push import Pusher, PushLockBusyError
from testio_mirror.sync.run import (
    DIED,
    SHUT_DOWN,
    ActiveRun,
    RunContext,
    RunRecorder,
    RunView,
    run_result,
)
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import UpstreamError
from testio_mirror.upstream.models import SKIPPED_OBJECTS

logger = logging.getLogger("testio_mirror.sync")


def normalize_phases(phases: Iterable[SyncPhase | str] | None) -> list[SyncPhase]:
    """Phases in the one order they run, duplicates dropped (None: the default phases).

    Raises:
        ValueError: an unknown phase.
    """
    chosen = {SyncPhase(p) for p in (phases if phases is not None else DEFAULT_PHASES)}
    return [phase for phase in PHASE_ORDER if phase in chosen]


class SyncService:
    """Runs syncs: one at a time per data directory, joined when asked twice in one process."""

    def __init__(
        self,
        settings: Settings,
        client: CustomerApiClient,
        mirror: Mirror,
        *,
        lock: SyncLock | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._mirror = mirror
        self._lock = lock or SyncLock(settings.mirror_home)
        self.pusher = Pusher(settings, client, mirror, clock=clock)
        self._clock = clock
        self._phases = PhaseRunner(settings, client, mirror, clock)
        self._recorder = RunRecorder(mirror.db)
        self._inflight: asyncio.Task[SyncResult] | None = None
        self._active: ActiveRun | None = None
        self._background: set[asyncio.Task[SyncResult]] = set()
        self.last_result: SyncResult | None = None
        # Told of every run that ends on its own, whoever waits for it (or nobody: a run
        # started in the background, a caller gone away); a failing listener is logged.
        self.finish_listeners: list[Callable[[SyncResult], Awaitable[None]]] = []

    @property
    def lock(self) -> SyncLock:
        return self._lock

    @property
    def current(self) -> RunView | None:
        """The run in flight in this process, if any."""
        if self._inflight is None or self._inflight.done() or self._active is None:
            return None
        if self._active.ended:
            return None  # only telling its listeners: a new request starts a new run
        return self._active.view

    async def recover(self) -> int:
        """At start: runs left ``running`` by a dead process become ``interrupted``; returns
        how many. Does nothing while another live process holds the sync lock."""
        running = await self._mirror.sync_state.running_run_ids()
        if not running:
            return 0
        # Only now look at the lock: a run is recorded once its process holds the lock and
        # leaves "running" before releasing it, so a sync starting between the two looks is
        # seen holding the lock, never declared dead.
        if await asyncio.to_thread(self._lock.holder) is not None:
            return 0
        async with self._mirror.db.transaction() as conn:
            count = await mark_interrupted(conn, running, self._clock(), DIED)
        logger.warning("marked %d sync run(s) left running by a dead process as interrupted", count)
        return count

    async def check_products(self, product_ids: Sequence[int] | None) -> None:
        """Refuse, before any run, products the account does not have (the mirror's product
        list answers; it is fetched when it lacks one of them).

        Raises:
            UnknownProductsError: some of ``product_ids`` are not in the account.
            UpstreamError: the product list was needed and could not be fetched.
        """
        if product_ids:
            await self._phases.products_in_scope(product_ids)

    async def execute_sync(
        self,
        phases: Iterable[SyncPhase | str] | None = None,
        scope: SyncScope | None = None,
        options: SyncOptions | None = None,
        trigger: SyncTrigger = SyncTrigger.TOOL,
        on_progress: OnProgress | None = None,
        *,
        wait_for_lock: bool = True,
        detached: bool = False,
    ) -> SyncResult:
        """Run a sync and return its result; a call while one runs in this process joins it.

        Cancelling the caller cancels the run it started, unless ``detached``: then the run
        goes on in the background (``cancel()`` still stops it) and only the caller's wait
        ends. A joiner giving up never cancels the run.

        Raises:
            SyncLockBusyError: another process syncs and did not finish within the lock timeout
                (at once with ``wait_for_lock=False``).
            ValueError: unknown phases.
        """
        while True:
            running = self._active if self.current is not None else None
            if running is not None and not _covers(running, phases, scope, options):
                # The run in flight does less than asked: let it finish, then run ours.
                await asyncio.gather(asyncio.shield(self._inflight_task()), return_exceptions=True)
                continue
            task, joined = self._start(phases, scope, options, trigger, on_progress, wait_for_lock)
            if not joined and not detached:
                return await task
            if not joined:
                self._keep_in_background(task)
            assert self._active is not None
            run = self._active
            try:
                # Shielded: a caller giving up must not cancel the run for the others.
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if (me is not None and me.cancelling()) or not task.cancelled():
                    # This caller was cancelled; the run goes on without its listener.
                    if on_progress is not None and on_progress in run.listeners:
                        run.listeners.remove(on_progress)
                    raise
                last = self.last_result
                if last is None or last.run_id != run.run_id:
                    raise
                return last  # the run was cancelled: the caller hears how it ended

    def start_sync(
        self,
        phases: Iterable[SyncPhase | str] | None = None,
        scope: SyncScope | None = None,
        options: SyncOptions | None = None,
        trigger: SyncTrigger = SyncTrigger.TOOL,
        *,
        wait_for_lock: bool = True,
    ) -> tuple[str, bool]:
        """Start (or join) a run in the background; returns its run id and whether it joined.
        A run in flight that does less than asked is not joined: ours runs after it.

        Raises:
            ValueError: unknown phases.
        """
        running = self._active if self.current is not None else None
        if running is not None and not _covers(running, phases, scope, options):
            run_id = self._new_run_id()
            queued = asyncio.create_task(
                self._after_current(phases, scope, options, trigger, wait_for_lock, run_id)
            )
            self._keep_in_background(queued)
            return run_id, False
        task, joined = self._start(phases, scope, options, trigger, None, wait_for_lock)
        if not joined:
            self._keep_in_background(task)
        assert self._active is not None
        return self._active.run_id, joined

    async def cancel(self, *, shutting_down: bool = False) -> bool:
        """Cancel the run in flight in this process; True when there was one.

        ``shutting_down``: the process is ending (a server stopping), not a user asking; the
        run is recorded ``interrupted`` (resumable, like a run whose process died), so it does
        not pose as the last result a user should act on."""
        task = self._inflight
        if shutting_down:
            if self._active is not None:
                self._active.shutting_down = True
            # Runs queued after this one must not start while the process ends.
            queued = [t for t in self._background if t is not task]
            for waiting in queued:
                waiting.cancel()
            await asyncio.gather(*queued, return_exceptions=True)
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    def _inflight_task(self) -> asyncio.Task[SyncResult]:
        assert self._inflight is not None
        return self._inflight

    def _new_run_id(self) -> str:
        return f"{self._clock():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

    def _keep_in_background(self, task: asyncio.Task[SyncResult]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_background_failure)

    async def _after_current(
        self,
        phases: Iterable[SyncPhase | str] | None,
        scope: SyncScope | None,
        options: SyncOptions | None,
        trigger: SyncTrigger,
        wait_for_lock: bool,
        run_id: str,
    ) -> SyncResult:
        while self.current is not None:
            await asyncio.gather(asyncio.shield(self._inflight_task()), return_exceptions=True)
        task, _ = self._start(phases, scope, options, trigger, None, wait_for_lock, run_id)
        return await task

    def _start(
        self,
        phases: Iterable[SyncPhase | str] | None,
        scope: SyncScope | None,
        options: SyncOptions | None,
        trigger: SyncTrigger,
        on_progress: OnProgress | None,
        wait_for_lock: bool,
        run_id: str | None = None,
    ) -> tuple[asyncio.Task[SyncResult], bool]:
        """The task of the run in flight (joined: True), or of a new run started now."""
        if self.current is not None and self._inflight is not None:
            if on_progress is not None and self._active is not None:
                self._active.listeners.append(on_progress)
            return self._inflight, True
        chosen = normalize_phases(phases)
        if options is not None and not options.direction.pulls:
            chosen = []  # a push alone: no phase runs
        self._active = ActiveRun.create(
            run_id=run_id or self._new_run_id(),
            trigger=trigger,
            phases=chosen,
            scope=scope or SyncScope(),
            options=options or SyncOptions(),
            started_at=self._clock(),
            listener=on_progress,
        )
        self._inflight = asyncio.create_task(self._execute(self._active, wait_for_lock))
        return self._inflight, False

    async def _execute(self, run: ActiveRun, wait_for_lock: bool) -> SyncResult:
        context = run.context
        status = SyncStatus.RUNNING
        me = asyncio.current_task()

        def lost(holder: LockOwner | None) -> None:
            run.lost_lock = SyncLockLostError(holder)
            if me is not None:
                me.cancel()

        async def entering(phase: SyncPhase) -> None:
            run.view.phase = phase
            await self._recorder.phase(run.run_id, phase)

        timeout = self._settings.sync_lock_timeout_seconds if wait_for_lock else 0.0
        result: SyncResult | None = None
        try:
            async with self._lock.hold(run.run_id, wait_seconds=timeout, on_lost=lost) as claim:
                # The run starts once it holds the lock: waiting for another is not part of it.
                started_at = self._clock()
                started = time.perf_counter()
                run.view.started_at = started_at
                try:
                    await self._recorder.begin(run, started_at, claim)
                    # Every commit of this run and of the tasks it starts first checks that the
                    # lock is still ours: a run that hung and was taken over commits nothing more.
                    guarded = COMMIT_GUARD.set(lambda: self._lock.ensure_held(claim.owner))
                    skipped: list[str] = []
                    told = SKIPPED_OBJECTS.set(skipped)
                    try:
                        if context.options.nuke:
                            await self._mirror.empty()
                            context.warnings.append(
                                "the mirror was emptied (nuke) before this sync"
                            )
                        if context.options.direction.pushes:
                            await self._push(context)
                        await self._phases.run(context, run.phases, entering)
                    finally:
                        SKIPPED_OBJECTS.reset(told)
                        COMMIT_GUARD.reset(guarded)
                        _report_skipped(context.warnings, context.errors, skipped)
                    status = context.outcome()
                except asyncio.CancelledError:
                    status = SyncStatus.CANCELLED
                    if run.shutting_down:
                        status = SyncStatus.INTERRUPTED
                        context.warnings.append(SHUT_DOWN)
                    elif run.lost_lock is not None and me is not None and me.uncancel() == 0:
                        # Cancelled by the heartbeat alone: the run ends failed, with its result.
                        context.errors.append(str(run.lost_lock))
                        status = SyncStatus.FAILED
                    else:
                        raise
                except SyncLockLostError as exc:
                    context.errors.append(str(exc))
                    status = SyncStatus.FAILED
                except (UpstreamError, UnknownProductsError) as exc:
                    # Auth errors, failures no single product could absorb (the product list), and
                    # products the account does not have: nothing more can be done.
                    context.errors.append(str(exc))
                    status = SyncStatus.FAILED
                except StoreError as exc:
                    # Busy, damaged, full: the user's own words for it; the caller maps it to an
                    # exit code or a tool error.
                    context.errors.append(exc.for_agent)
                    status = SyncStatus.FAILED
                    raise
                except Exception as exc:
                    context.errors.append(f"internal error: {type(exc).__name__}: {exc}")
                    status = SyncStatus.FAILED
                    raise
                finally:
                    result = run_result(run, status, started_at, time.perf_counter() - started)
                    await asyncio.shield(self._finish(run, result))
        finally:
            if result is not None:
                # Announced once the lock is released and the run can no longer be joined: a
                # listener that starts the next sync gets a new run, not this one.
                run.ended = True
                await asyncio.shield(self._announce(result))
        return result

    async def _push(self, context: RunContext) -> None:
        """The push before the pull: its summary goes into the run's result, and what a person
        must know into its warnings (a push that could not finish is an error of the run)."""
        try:
            summary = await self.pusher.push(tracker=context.tracker)
        except PushLockBusyError as exc:
            context.errors.append(str(exc))
            return
        if summary.considered or summary.stopped:
            context.push = summary  # an empty outbox leaves the result as a pull's
        if summary.stopped:
            context.errors.append(f"push: {summary.stopped}")
        if summary.applied:
            context.succeeded_units += 1
        if summary.conflicts:
            context.warnings.append(
                f"{summary.conflicts} triage change(s) wait for a person: TestIO's bug changed "
                "since they were asked for (list_changes state=conflict, then resolve_conflict)"
            )
        if summary.failed:
            context.warnings.append(
                f"{summary.failed} triage change(s) failed: TestIO refused them "
                "(list_changes state=failed says why)"
            )

    async def _finish(self, run: ActiveRun, result: SyncResult) -> None:
        await self._recorder.finish(run, result)
        level = logging.INFO if result.status is SyncStatus.SUCCESS else logging.WARNING
        logger.log(level, result.summary())
        if result.status is not SyncStatus.INTERRUPTED:
            self.last_result = result  # the process ending has no last result to keep

    async def _announce(self, result: SyncResult) -> None:
        if result.status is SyncStatus.INTERRUPTED:
            return  # the process is ending: no news to announce
        for listener in list(self.finish_listeners):
            try:
                await listener(result)
            except Exception:
                logger.exception("a listener of sync %s's end failed", result.run_id)


def _covers(
    run: ActiveRun,
    phases: Iterable[SyncPhase | str] | None,
    scope: SyncScope | None,
    options: SyncOptions | None,
) -> bool:
    """Does the run in flight do at least what a new request asks for?"""
    scope = scope or SyncScope()
    options = options or SyncOptions()
    try:
        wanted = normalize_phases(phases) if options.direction.pulls else []
    except ValueError:
        return True  # let _start report the bad request
    ran = run.context
    if not ran.options.direction.covers(options.direction):
        return False
    if not set(wanted) <= set(run.phases):
        return False
    if ran.scope.product_ids is not None and (
        scope.product_ids is None or not set(scope.product_ids) <= set(ran.scope.product_ids)
    ):
        return False
    if ran.scope.since is not None and (scope.since is None or scope.since < ran.scope.since):
        return False
    ran_bugs, asked_bugs = ran.scope.bug_horizon, scope.bug_horizon
    if (
        SyncPhase.BUGS in wanted
        and ran_bugs is not None
        and (asked_bugs is None or asked_bugs < ran_bugs)
    ):
        return False  # the run fetches the bugs of fewer tests than asked
    if options.force_refresh and not ran.options.force_refresh:
        return False
    return not (options.nuke and not ran.options.nuke)


def _report_skipped(warnings: list[str], errors: list[str], skipped: list[str]) -> None:
    """Objects skipped for a number the mirror cannot hold: each is a warning, and the run is
    partial (an error naming how many), since the mirror lacks them."""
    if not skipped:
        return
    warnings.extend(skipped)
    errors.append(
        f"{len(skipped)} objects skipped: a number out of range (see the warnings); the mirror "
        "lacks them until TestIO sends them with numbers it can store"
    )


def _log_background_failure(task: asyncio.Task[SyncResult]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error("a background sync failed: %s", error)
