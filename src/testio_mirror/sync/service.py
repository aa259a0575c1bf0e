"""``SyncService``: every sync, whoever asks (server start-up, refresh loop, tool, CLI).

A run holds the cross-process sync lock, runs its phases in the order PRODUCTS -> FEATURES ->
NEW_TESTS -> BUGS, works on the products in scope concurrently (one product's failure does not stop
the others), commits page by page, and records itself in ``sync_events``.

Listing a product's tests (NEW_TESTS):

- incremental (the usual): newest first from page 1, stopping after a whole page of tests that are
  known and unchanged;
- full (first time, ``force_refresh``, or the scheduled reconciliation every
  ``TESTIO_FULL_RECONCILE_INTERVAL_SECONDS``): every page; at the end, tests of the product that the
  listing did not show are checked one by one and tombstoned only if TestIO answers 404, so a test
  skipped because the list moved is never lost;
- resumed: a listing that did not finish (error, cancel, crash) continues as a full listing from the
  page after the last one committed, then an incremental pass picks up what appeared at the head.

Each page is written in one transaction together with the product's listing state, so a killed run
loses nothing it committed and the next run resumes instead of starting over.

Example::

    service = SyncService(settings, client, mirror)
    result = await service.execute_sync(trigger=SyncTrigger.CLI, on_progress=show)
    result.status, result.summary()
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiosqlite

from testio_mirror.settings import Settings
from testio_mirror.store.bugs import load_reject_reasons, write_bugs, write_reject_reasons
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.features import write_features
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import write_products
from testio_mirror.store.sqlite.timefmt import from_db, to_db, utc_now
from testio_mirror.store.sqlite.upsert import WriteStats
from testio_mirror.store.sync_state import (
    ListingState,
    SyncEvent,
    add_event,
    empty_mirror,
    mark_interrupted,
    save_listing_state,
    update_run,
)
from testio_mirror.sync.lock import Claim, SyncLock
from testio_mirror.sync.models import (
    DEFAULT_PHASES,
    PHASE_ORDER,
    PhaseStats,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)
from testio_mirror.sync.progress import OnProgress, ProgressTracker
from testio_mirror.upstream.bug_batches import BugBatch, bug_batch_groups
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import AuthError, NotFoundError, UpstreamError
from testio_mirror.upstream.models import Product, RejectReason
from testio_mirror.upstream.paging import ExploratoryTestPage

logger = logging.getLogger("testio_mirror.sync")

# Pages of one product asked for at once in a full listing (after its first page). Larger
# windows save round trips on big products and waste up to window - 1 empty pages at the end.
FULL_LISTING_WINDOW = 8

_ENTITY_PHASES = {
    "products": SyncPhase.PRODUCTS,
    "features": SyncPhase.FEATURES,
    "tests": SyncPhase.NEW_TESTS,
    "bugs": SyncPhase.BUGS,
}


@dataclass
class RunView:
    """What a run in flight is doing, for ``sync_status``."""

    run_id: str
    trigger: SyncTrigger
    phases: list[SyncPhase]
    started_at: datetime
    phase: SyncPhase | None = None
    done: int = 0
    total: int = 0
    message: str = "waiting for the sync lock"


@dataclass
class _Run:
    """The state of one run while it executes."""

    run_id: str
    trigger: SyncTrigger
    phases: list[SyncPhase]
    scope: SyncScope
    options: SyncOptions
    tracker: ProgressTracker
    view: RunView
    listeners: list[OnProgress] = field(default_factory=list)
    stats: dict[str, PhaseStats] = field(default_factory=dict)
    completed: list[SyncPhase] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    succeeded_units: int = 0
    lost_lock: bool = False


def normalize_phases(
    phases: Iterable[SyncPhase | str] | None, entity_types: Sequence[str] | None = None
) -> list[SyncPhase]:
    """Phases in the one order they run, duplicates dropped, narrowed by entity types.

    Raises:
        ValueError: an unknown phase or entity type.
    """
    chosen = {SyncPhase(p) for p in (phases if phases is not None else DEFAULT_PHASES)}
    if entity_types is not None:
        unknown = [e for e in entity_types if e not in _ENTITY_PHASES]
        if unknown:
            raise ValueError(f"unknown entity types {unknown}; use: {', '.join(_ENTITY_PHASES)}")
        chosen &= {_ENTITY_PHASES[e] for e in entity_types}
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
        self._client = client
        self._mirror = mirror
        self._lock = lock or SyncLock(settings.mirror_home)
        self._clock = clock
        self._inflight: asyncio.Task[SyncResult] | None = None
        self._run_state: _Run | None = None
        self._background: set[asyncio.Task[SyncResult]] = set()
        self.last_result: SyncResult | None = None

    @property
    def lock(self) -> SyncLock:
        return self._lock

    @property
    def current(self) -> RunView | None:
        """The run in flight in this process, if any."""
        if self._inflight is None or self._inflight.done() or self._run_state is None:
            return None
        return self._run_state.view

    async def recover(self) -> int:
        """At start: runs left ``running`` by a dead process become ``interrupted``; returns
        how many. Does nothing while another live process holds the sync lock."""
        running = await self._mirror.sync_state.running_runs()
        if not running:
            return 0
        # Only now look at the lock: a run is recorded once its process holds the lock and
        # leaves "running" before releasing it, so a sync starting between the two looks is
        # seen holding the lock, never declared dead.
        if await asyncio.to_thread(self._lock.holder) is not None:
            return 0
        async with self._mirror.db.transaction() as conn:
            count = await mark_interrupted(
                conn,
                [r.run_id for r in running],
                self._clock(),
                "the process running this sync died before it finished",
            )
        logger.warning("marked %d sync run(s) left running by a dead process as interrupted", count)
        return count

    async def execute_sync(
        self,
        phases: Iterable[SyncPhase | str] | None = None,
        scope: SyncScope | None = None,
        options: SyncOptions | None = None,
        trigger: SyncTrigger = SyncTrigger.TOOL,
        on_progress: OnProgress | None = None,
        *,
        wait_for_lock: bool = True,
    ) -> SyncResult:
        """Run a sync and return its result; a call while one runs in this process joins it.

        Raises:
            SyncLockBusyError: another process syncs and did not finish within the lock timeout
                (at once with ``wait_for_lock=False``).
            ValueError: unknown phases or entity types.
        """
        while True:
            running = self._run_state if self.current is not None else None
            if running is not None and not _covers(running, phases, scope, options):
                # The run in flight does less than asked: let it finish, then run ours.
                await asyncio.gather(asyncio.shield(self._inflight_task()), return_exceptions=True)
                continue
            task, joined = self._start(phases, scope, options, trigger, on_progress, wait_for_lock)
            if not joined:
                return await task
            assert self._run_state is not None
            run_id = self._run_state.run_id
            try:
                # Shielded: a joiner giving up must not cancel the run for its owner.
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if (me is not None and me.cancelling()) or not task.cancelled():
                    raise  # this caller was cancelled
                last = self.last_result
                if last is None or last.run_id != run_id:
                    raise
                return last  # the owner cancelled the run: the joiner hears how it ended

    def _inflight_task(self) -> asyncio.Task[SyncResult]:
        assert self._inflight is not None
        return self._inflight

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
        A run in flight that does less than asked is not joined: ours runs after it."""
        running = self._run_state if self.current is not None else None
        if running is not None and not _covers(running, phases, scope, options):
            run_id = self._new_run_id()
            queued = asyncio.create_task(
                self._after_current(phases, scope, options, trigger, wait_for_lock, run_id)
            )
            self._background.add(queued)
            queued.add_done_callback(self._background.discard)
            queued.add_done_callback(_log_background_failure)
            return run_id, False
        task, joined = self._start(phases, scope, options, trigger, None, wait_for_lock)
        if not joined:
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            task.add_done_callback(_log_background_failure)
        assert self._run_state is not None
        return self._run_state.run_id, joined

    def _new_run_id(self) -> str:
        return f"{self._clock():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

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

    async def cancel(self) -> bool:
        """Cancel the run in flight in this process; True when there was one."""
        task = self._inflight
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

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
        if self._inflight is not None and not self._inflight.done():
            if on_progress is not None and self._run_state is not None:
                self._run_state.listeners.append(on_progress)
            return self._inflight, True
        scope = scope or SyncScope()
        chosen = normalize_phases(phases, scope.entity_types)
        run_id = run_id or self._new_run_id()
        started = self._clock()
        view = RunView(run_id, trigger, chosen, started)
        run = _Run(
            run_id=run_id,
            trigger=trigger,
            phases=chosen,
            scope=scope,
            options=options or SyncOptions(),
            tracker=ProgressTracker(None),
            view=view,
            listeners=[on_progress] if on_progress else [],
        )
        run.tracker = ProgressTracker(lambda d, t, m: self._report(run, d, t, m))
        self._run_state = run
        self._inflight = asyncio.create_task(self._execute(run, wait_for_lock))
        return self._inflight, False

    async def _report(self, run: _Run, done: int, total: int, message: str) -> None:
        run.view.done, run.view.total, run.view.message = done, total, message
        for listener in list(run.listeners):
            outcome = listener(done, total, message)
            if outcome is not None:
                await outcome

    async def _execute(self, run: _Run, wait_for_lock: bool) -> SyncResult:
        status = SyncStatus.RUNNING
        me = asyncio.current_task()

        def lost() -> None:
            run.lost_lock = True
            if me is not None:
                me.cancel()

        timeout = self._settings.sync_lock_timeout_seconds if wait_for_lock else 0.0
        async with self._lock.hold(run.run_id, wait_seconds=timeout, on_lost=lost) as claim:
            # The run starts once it holds the lock: waiting for another is not part of it.
            started_at = self._clock()
            started = time.perf_counter()
            run.view.started_at = started_at
            try:
                await self._begin(run, started_at, claim)
                if run.options.nuke:
                    async with self._mirror.db.transaction() as conn:
                        await empty_mirror(conn)
                    run.warnings.append("the mirror was emptied (nuke) before this sync")
                await self._run_phases(run)
                status = SyncStatus.PARTIAL if run.errors else SyncStatus.SUCCESS
                if run.errors and run.succeeded_units == 0:
                    status = SyncStatus.FAILED
            except asyncio.CancelledError:
                status = SyncStatus.CANCELLED
                if run.lost_lock:
                    run.errors.append("the sync lock was taken over by another process")
                    status = SyncStatus.FAILED
                raise
            except UpstreamError as exc:
                # Auth errors, and failures no single product could absorb (the product list).
                run.errors.append(str(exc))
                status = SyncStatus.FAILED
            except Exception as exc:
                run.errors.append(f"internal error: {type(exc).__name__}: {exc}")
                status = SyncStatus.FAILED
                raise
            finally:
                result = self._result(run, status, started_at, time.perf_counter() - started)
                await asyncio.shield(self._finish(run, result))
        return result

    async def _begin(self, run: _Run, started_at: datetime, claim: Claim) -> None:
        run.view.message = "starting"
        async with self._mirror.db.transaction() as conn:
            # We hold the lock, so any other run still marked running is dead.
            others = [r for r in await self._running_runs(conn) if r != run.run_id]
            if others:
                await mark_interrupted(
                    conn,
                    others,
                    started_at,
                    "the process running this sync died before it finished",
                )
            if claim.reclaimed_from is not None:
                old = claim.reclaimed_from
                message = (
                    f"reclaimed the sync lock from run {old.run_id} (pid {old.pid} on "
                    f"{old.host}): {claim.reclaim_reason}"
                )
                run.warnings.append(message)
                await add_event(
                    conn, SyncEvent(run.run_id, started_at, "lock_reclaimed", message=message)
                )
            await add_event(
                conn,
                SyncEvent(
                    run.run_id,
                    started_at,
                    "run",
                    trigger=run.trigger.value,
                    status=SyncStatus.RUNNING.value,
                    message="started",
                    data={
                        "phases": [p.value for p in run.phases],
                        "scope": run.scope.model_dump(mode="json"),
                        "options": run.options.model_dump(mode="json"),
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                    },
                ),
            )
        logger.info(
            "sync %s started (%s): %s",
            run.run_id,
            run.trigger.value,
            ", ".join(p.value for p in run.phases),
        )

    @staticmethod
    async def _running_runs(conn: aiosqlite.Connection) -> list[str]:
        rows = await conn.execute_fetchall(
            "SELECT run_id FROM sync_events WHERE kind = 'run' AND status = 'running'"
        )
        return [row[0] for row in rows]

    async def _finish(self, run: _Run, result: SyncResult) -> None:
        try:
            async with self._mirror.db.transaction() as conn:
                await update_run(
                    conn,
                    run.run_id,
                    status=result.status.value,
                    phase=None,
                    message=result.summary(),
                    finished_at=result.finished_at,
                    duration_seconds=result.duration_seconds,
                    items_synced=result.items_synced,
                    data={
                        "phases": [p.value for p in run.phases],
                        "result": result.model_dump(mode="json"),
                    },
                )
                for problem in result.errors:
                    await add_event(
                        conn, SyncEvent(run.run_id, result.finished_at, "error", message=problem)
                    )
        except Exception:
            logger.exception("could not record the end of sync %s", run.run_id)
        self.last_result = result
        level = logging.INFO if result.status is SyncStatus.SUCCESS else logging.WARNING
        logger.log(level, result.summary())

    def _result(
        self, run: _Run, status: SyncStatus, started_at: datetime, duration: float
    ) -> SyncResult:
        return SyncResult(
            run_id=run.run_id,
            trigger=run.trigger,
            status=status,
            phases=run.phases,
            phases_completed=run.completed,
            stats=run.stats,
            api_requests=sum(s.api_requests for s in run.stats.values()),
            retries=sum(s.retries for s in run.stats.values()),
            warnings=run.warnings,
            errors=run.errors,
            started_at=started_at,
            finished_at=started_at + timedelta(seconds=duration),
            duration_seconds=round(duration, 3),
        )

    # -- phases ------------------------------------------------------------------------------

    async def _run_phases(self, run: _Run) -> None:
        products: list[Product] | None = None
        for phase in run.phases:
            run.view.phase = phase
            async with self._mirror.db.transaction() as conn:
                await update_run(
                    conn, run.run_id, status="running", phase=phase.value, message=f"{phase} phase"
                )
            before = self._client.metrics.snapshot()
            stats = PhaseStats()
            if phase is SyncPhase.PRODUCTS:
                products = await self._products_phase(run, stats)
            else:
                if products is None:
                    products = await self._stored_products(run)
                if phase is SyncPhase.FEATURES:
                    await self._features_phase(run, products, stats)
                elif phase is SyncPhase.NEW_TESTS:
                    await self._tests_phase(run, products, stats)
                else:
                    await self._bugs_phase(run, products, stats)
            spent = self._client.metrics.snapshot() - before
            stats.api_requests, stats.retries = spent.requests, spent.retries
            run.stats[phase.value] = stats
            run.completed.append(phase)

    async def _products_phase(self, run: _Run, stats: PhaseStats) -> list[Product]:
        run.tracker.expect(1)
        try:
            products = await self._client.products()
        except AuthError:
            raise
        except UpstreamError as exc:
            run.errors.append(f"products: {exc}")
            await run.tracker.step("products: failed, using the mirror's copy")
            return await self._stored_products(run)
        async with self._mirror.db.transaction() as conn:
            _add(stats, await write_products(conn, products, self._stamp(), complete=True))
        run.succeeded_units += 1
        await run.tracker.step(f"products: {len(products)}")
        return self._in_scope(run, products)

    def _in_scope(self, run: _Run, products: list[Product]) -> list[Product]:
        wanted = run.scope.product_ids
        if wanted is None:
            return products
        found = [p for p in products if p.id in wanted]
        missing = sorted(set(wanted) - {p.id for p in found})
        if missing:
            run.warnings.append(f"product(s) not in the account: {missing}")
        return found

    async def _stored_products(self, run: _Run) -> list[Product]:
        """The products the mirror holds; the product list is fetched (and stored) when the
        mirror has none, or lacks one the scope names."""
        async with self._mirror.db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT raw FROM products WHERE deleted_at IS NULL ORDER BY id"
            )
        products = [Product.from_wire(json.loads(row[0])) for row in rows]
        wanted = set(run.scope.product_ids or ())
        if not products or not wanted <= {p.id for p in products}:
            products = await self._client.products()
            async with self._mirror.db.transaction() as conn:
                await write_products(conn, products, self._stamp(), complete=True)
        return self._in_scope(run, products)

    async def _features_phase(self, run: _Run, products: list[Product], stats: PhaseStats) -> None:
        states = await self._features_fetched_at([p.id for p in products])
        due = [
            p
            for p in products
            if run.options.force_refresh
            or not self._mirror.policy.is_fresh(states.get(p.id), self._mirror.policy.product_ttl)
        ]
        run.tracker.expect(len(due))

        async def one(product: Product) -> None:
            try:
                features = await self._client.features(product)
            except AuthError:
                raise
            except UpstreamError as exc:
                run.errors.append(f"features of product {product.id}: {exc}")
                await run.tracker.step(f"features of product {product.id}: failed")
                return
            async with self._mirror.db.transaction() as conn:
                _add(stats, await write_features(conn, product.id, features, self._stamp()))
            run.succeeded_units += 1
            await run.tracker.step(f"features of product {product.id}: {len(features)}")

        await self._each(due, one)

    async def _features_fetched_at(self, product_ids: list[int]) -> dict[int, datetime | None]:
        async with self._mirror.db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id, features_fetched_at FROM products "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(product_ids),),
            )
        return {row[0]: from_db(row[1]) for row in rows}

    async def _tests_phase(self, run: _Run, products: list[Product], stats: PhaseStats) -> None:
        run.tracker.expect(len(products))

        async def one(product: Product) -> None:
            try:
                _add(stats, await self._list_product(run, product.id))
                run.succeeded_units += 1
            except AuthError:
                raise
            except UpstreamError as exc:
                run.errors.append(f"tests of product {product.id}: {exc}")
                await run.tracker.step(f"tests of product {product.id}: failed")

        await self._each(products, one)

    async def _list_product(self, run: _Run, product_id: int) -> WriteStats:
        state = await self._mirror.sync_state.listing_state(product_id)
        now = self._clock()
        interval = self._settings.full_reconcile_interval_seconds
        reconcile_due = interval > 0 and (
            state is None
            or state.last_full_listing_at is None
            or (now - state.last_full_listing_at).total_seconds() >= interval
        )
        if state is not None and not state.complete and state.next_page > 1:
            # A listing that did not finish: go on where it stopped, then look at the head.
            started_at = state.started_at or now
            stats = await self._page_through(
                run, product_id, state, True, state.next_page, started_at
            )
            refreshed = await self._mirror.sync_state.listing_state(product_id)
            if refreshed is None or not refreshed.complete:
                # Its deletion check failed: the next run lists this product in full, head and
                # all, and a head pass now must not mark the listing complete.
                return stats
            return stats + await self._page_through(run, product_id, refreshed, False, 1, now)
        full = (
            run.options.force_refresh
            or state is None
            or not state.complete
            or (reconcile_due and not run.options.incremental_only)
        )
        return await self._page_through(run, product_id, state, full, 1, now)

    async def _page_through(
        self,
        run: _Run,
        product_id: int,
        state: ListingState | None,
        full: bool,
        start_page: int,
        started_at: datetime,
    ) -> WriteStats:
        stats = WriteStats()
        since = run.scope.since
        # Boundary checks cost one tiny request per window of pages; they guard tests the
        # mirror does not know yet (known ones are re-checked by the sweep after a full listing).
        # A full listing reads every page, so it asks for several at once; an incremental one
        # usually stops after its first page, so it asks for one at a time.
        pager = self._client.test_pages(
            product_id,
            start_page=start_page,
            check_boundaries=True,
            window=FULL_LISTING_WINDOW if full else 1,
        )
        reached_end = False
        # A window of pages is stored in one transaction: a killed run resumes after the last
        # window committed, and a full listing commits a few times instead of once per page.
        async for window in pager.windows():
            page = window[-1]  # the window's last page says where the listing stands
            stamp = self._stamp()
            async with self._mirror.db.transaction() as conn:
                written = WriteStats()
                for each in window:
                    # Page by page: each write awaits the database, so queries served meanwhile
                    # never wait behind a whole window of rows being built.
                    written += await write_tests(conn, each.tests, stamp, product_id)
                reached_end = page.last or (not full and _incremental_end(page, written, since))
                # An incremental listing that ends here has nothing left to do (no sweep): it is
                # complete in the transaction of its last page, so a kill cannot leave it looking
                # unfinished (the next run would list every page after this one again).
                done = reached_end and not full
                await save_listing_state(
                    conn,
                    ListingState(
                        product_id=product_id,
                        next_page=1 if done else page.number + 1,
                        complete=done,
                        full_listing=full,
                        run_id=run.run_id,
                        started_at=started_at,
                        finished_at=self._clock()
                        if done
                        else (state.finished_at if state else None),
                        last_full_listing_at=state.last_full_listing_at if state else None,
                    ),
                )
            stats += written
            for each in window:
                await run.tracker.step(f"product {product_id}: page {each.number}")
            if page.last:
                break
            run.tracker.expect(len(window))
            if reached_end:
                break
        if reached_end and full:
            deleted, checked = await self._sweep(run, product_id, started_at)
            stats.deleted += deleted
            finished = self._clock()
            async with self._mirror.db.transaction() as conn:
                await save_listing_state(
                    conn,
                    ListingState(
                        product_id=product_id,
                        next_page=1,
                        # Tests the sweep could not check may be gone: list in full next time.
                        complete=checked,
                        full_listing=True,
                        run_id=run.run_id,
                        started_at=started_at,
                        finished_at=finished,
                        last_full_listing_at=finished
                        if checked
                        else (state.last_full_listing_at if state else None),
                    ),
                )
        return stats

    async def _sweep(
        self, run: _Run, product_id: int, listing_started: datetime
    ) -> tuple[int, bool]:
        """Tests of the product the full listing did not show: gone, or skipped by a moving list?
        Each one is asked for; only a 404 tombstones it. Returns how many were tombstoned and
        whether every one could be checked."""
        async with self._mirror.db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM tests WHERE product_id = ? AND deleted_at IS NULL "
                "AND fetched_at < ?",
                (product_id, to_db(listing_started)),
            )
        candidates = [int(row[0]) for row in rows]
        deleted = 0
        unchecked = 0
        for test_id in candidates:
            try:
                test = await self._client.test(test_id)
            except NotFoundError:
                async with self._mirror.db.transaction() as conn:
                    await conn.execute(
                        "UPDATE tests SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                        (self._stamp(), test_id),
                    )
                deleted += 1
                continue
            except UpstreamError as exc:
                # An error, not a warning: the mirror may hold a test TestIO deleted.
                run.errors.append(
                    f"tests of product {product_id}: could not check test {test_id} missing "
                    f"from its listing: {exc}"
                )
                unchecked += 1
                continue
            async with self._mirror.db.transaction() as conn:
                await write_tests(conn, [test], self._stamp())
        return deleted, unchecked == 0

    async def _bugs_phase(self, run: _Run, products: list[Product], stats: PhaseStats) -> None:
        # The reject reasons are needed only to write bugs: ask for them while the first bug
        # batches travel, instead of a round trip before them.
        reasons_request = asyncio.ensure_future(self._client.reject_reasons())
        try:
            await self._fetch_and_write_bugs(run, products, stats, reasons_request)
        finally:
            if not reasons_request.done():
                reasons_request.cancel()
            await asyncio.gather(reasons_request, return_exceptions=True)

    async def _fetch_and_write_bugs(
        self,
        run: _Run,
        products: list[Product],
        stats: PhaseStats,
        reasons_request: asyncio.Future[list[RejectReason]],
    ) -> None:
        policy = self._mirror.policy
        test_ids = await self._mirror.sync_state.tests_needing_bugs(
            [p.id for p in products],
            run.scope.since,
            stale_before=self._clock() - timedelta(seconds=policy.open_test_ttl),
            force=run.options.force_refresh,
        )
        batch = self._settings.bug_batch_size
        run.tracker.expect(math.ceil(len(test_ids) / batch) if test_ids else 0)
        stored_reasons: list[RejectReason] | None = None
        # Batches that arrived while the last ones were written are written together, in one
        # transaction: fewer commits (each flushes the search index) and fewer statements when
        # writing is the bottleneck.
        async for group in bug_batch_groups(self._client, test_ids):
            if stored_reasons is None:
                stored_reasons = await self._store_reject_reasons(run, reasons_request)
            fetched: list[BugBatch] = []
            for result in group:
                if isinstance(result.error, AuthError):
                    raise result.error
                if result.error is not None:
                    run.errors.append(f"bugs of tests {_ids(result.test_ids)}: {result.error}")
                    await run.tracker.step("bugs: a batch failed")
                else:
                    fetched.append(result)
            if not fetched:
                continue
            # One write for all of them: each statement is a round trip to the writer thread.
            async with self._mirror.db.transaction() as conn:
                _add(
                    stats,
                    await write_bugs(
                        conn,
                        [bug for result in fetched for bug in result.bugs],
                        self._stamp(),
                        complete_for_tests=[t for result in fetched for t in result.test_ids],
                        reasons=stored_reasons,
                    ),
                )
            for result in fetched:
                run.succeeded_units += 1
                await run.tracker.step(f"bugs of {len(result.test_ids)} tests: {len(result.bugs)}")
        if stored_reasons is None:
            await self._store_reject_reasons(run, reasons_request)  # no bugs to fetch

    async def _store_reject_reasons(
        self, run: _Run, request: asyncio.Future[list[RejectReason]]
    ) -> list[RejectReason]:
        """Store the reject reasons TestIO answered (a failure is a warning: the stored ones
        serve) and return the stored ones, which derive each rejected bug's reason.

        Raises:
            AuthError: the token was refused.
        """
        try:
            reasons = await request
        except AuthError:
            raise
        except UpstreamError as exc:
            run.warnings.append(f"reject reasons: {exc}")
        else:
            async with self._mirror.db.transaction() as conn:
                await write_reject_reasons(conn, reasons, self._stamp())
        async with self._mirror.db.reader() as conn:
            return await load_reject_reasons(conn)

    async def _each(self, items: Sequence[Product], work: Callable[[Product], object]) -> None:
        """Run ``work`` for every product, at most ``max_concurrent_requests`` at once."""
        gate = asyncio.Semaphore(self._settings.max_concurrent_requests)

        async def bounded(item: Product) -> None:
            async with gate:
                outcome = work(item)
                if asyncio.iscoroutine(outcome):
                    await outcome

        tasks = [asyncio.ensure_future(bounded(item)) for item in items]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # gather leaves the others running when one fails (a refused token, a cancel): they
            # would go on calling TestIO and writing to the mirror after their run had ended.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _stamp(self) -> str:
        return self._mirror.policy.stamp()


def _covers(
    run: _Run,
    phases: Iterable[SyncPhase | str] | None,
    scope: SyncScope | None,
    options: SyncOptions | None,
) -> bool:
    """Does the run in flight do at least what a new request asks for?"""
    scope = scope or SyncScope()
    options = options or SyncOptions()
    try:
        wanted = normalize_phases(phases, scope.entity_types)
    except ValueError:
        return True  # let _start report the bad request
    if not set(wanted) <= set(run.phases):
        return False
    if run.scope.product_ids is not None and (
        scope.product_ids is None or not set(scope.product_ids) <= set(run.scope.product_ids)
    ):
        return False
    if run.scope.since is not None and (scope.since is None or scope.since < run.scope.since):
        return False
    if options.force_refresh and not run.options.force_refresh:
        return False
    return not (options.nuke and not run.options.nuke)


def _incremental_end(
    page: ExploratoryTestPage, written: WriteStats, since: datetime | None
) -> bool:
    """Where an incremental listing stops: a whole page known and unchanged (the known
    boundary), or with ``since`` a page of tests that all ended before it."""
    if page.received and not written.inserted and not written.updated:
        return True
    return (
        since is not None
        and bool(page.tests)
        and all(t.end_at is not None and t.end_at < since for t in page.tests)
    )


def _add(stats: PhaseStats, written: WriteStats) -> None:
    stats.fetched += written.fetched
    stats.inserted += written.inserted
    stats.updated += written.updated
    stats.unchanged += written.unchanged
    stats.deleted += written.deleted


def _ids(test_ids: Sequence[int]) -> str:
    shown = ", ".join(str(t) for t in test_ids[:5])
    return shown + (f" and {len(test_ids) - 5} more" if len(test_ids) > 5 else "")


def _log_background_failure(task: asyncio.Task[SyncResult]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error("a background sync failed: %s", error)
