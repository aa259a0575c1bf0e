"""Listing one product's tests into the mirror (the NEW_TESTS phase, product by product).

The API has no "changed since" and pages newest first by ``end_at``, so a listing is:

- incremental (the usual): from page 1, stopping after a whole page of tests that are known and
  unchanged (or, with ``since``, a page of tests that all ended before it);
- full (first time, ``force_refresh``, or the scheduled reconciliation every
  ``TESTIO_FULL_RECONCILE_INTERVAL_SECONDS``): every page; then the sweep asks for each test of
  the product that the listing did not show and tombstones it only if TestIO answers 404, so a
  test skipped because the list moved is never lost;
- resumed: a listing that did not finish (error, cancel, crash) goes on as a full listing from the
  page after the last one committed, then an incremental pass picks up what appeared at the head.

Every listing probes the boundaries between its pages (``upstream/paging_probes.py``): tests
skipped because the list moved while a window was answered are stored, listed tests that went
missing are asked for by id (a 404 tombstones them), and a list that kept moving ends the run
``partial`` and marks the product to be listed in full by the next sync, plain or not.

Each window of pages is written in one transaction together with the product's listing state, so
a killed run loses nothing it committed and the next run resumes instead of starting over.

Example::

    lister = ProductLister(settings, client, mirror, utc_now)
    stats = await lister.list_product(run, product_id=101)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from testio_mirror.settings import Settings
from testio_mirror.store.exploratory_tests import tombstone_tests, write_tests
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.sqlite.upsert import WriteStats
from testio_mirror.store.sync_state import ListingState, save_listing_state
from testio_mirror.sync.run import RunContext
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import NotFoundError, UpstreamError
from testio_mirror.upstream.paging import ExploratoryTestPage, ExploratoryTestPager

# Pages of one product asked for at once in a full listing (after its first page). Larger
# windows save round trips on big products and waste up to window - 1 empty pages at the end.
FULL_LISTING_WINDOW = 8


class ProductLister:
    """Lists products' tests into the mirror: incremental, full or resumed, as each needs."""

    def __init__(
        self,
        settings: Settings,
        client: CustomerApiClient,
        mirror: Mirror,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._client = client
        self._mirror = mirror
        self._clock = clock

    async def list_product(self, run: RunContext, product_id: int) -> WriteStats:
        """List one product's tests in the way its listing state calls for.

        Raises:
            UpstreamError: a page could not be fetched (the pages before it are committed).
        """
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
        run: RunContext,
        product_id: int,
        state: ListingState | None,
        full: bool,
        start_page: int,
        started_at: datetime,
    ) -> WriteStats:
        stats = WriteStats()
        since = run.scope.since
        # Boundary checks cost one small request per boundary between two pages, sent with the
        # next window: a test skipped because the list moved while a window was answered is
        # collected, one listed and then gone is asked for by id (upstream/paging_probes.py).
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
                reached_end = page.last or (not full and incremental_end(page, written, since))
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
        # Boundaries not probed yet (a listing that stopped before its end), and what the probes
        # found: skipped tests to store, listed tests that went missing to ask for by id.
        settled, healed = await self._settle(run, product_id, pager, state, started_at)
        stats += healed
        if reached_end and full:
            deleted, checked = await self._sweep(run, product_id, started_at)
            stats.deleted += deleted
            finished = self._clock()
            complete = checked and settled
            async with self._mirror.db.transaction() as conn:
                await save_listing_state(
                    conn,
                    ListingState(
                        product_id=product_id,
                        next_page=1,
                        # Tests the sweep could not check may be gone, a list that kept moving
                        # may hide some: list in full next time.
                        complete=complete,
                        full_listing=True,
                        run_id=run.run_id,
                        started_at=started_at,
                        finished_at=finished,
                        last_full_listing_at=finished
                        if complete
                        else (state.last_full_listing_at if state else None),
                    ),
                )
        elif not settled:
            await self._list_in_full_next_time(run, product_id, state, started_at)
        return stats

    async def _settle(
        self,
        run: RunContext,
        product_id: int,
        pager: ExploratoryTestPager,
        state: ListingState | None,
        started_at: datetime,
    ) -> tuple[bool, WriteStats]:
        """Finish the boundary probes of a listing and apply what they found: tests skipped
        because the list moved are stored, listed tests that went missing are asked for by id
        (a 404 tombstones them). Returns whether the listing can be trusted, and what it wrote;
        when it cannot, the product is listed in full by the next sync.

        Raises:
            UpstreamError: a probe could not be fetched (the next sync lists in full).
        """
        try:
            late = await pager.settle()
        except UpstreamError:
            await self._list_in_full_next_time(run, product_id, state, started_at)
            raise
        written = WriteStats()
        if late:
            async with self._mirror.db.transaction() as conn:
                written += await write_tests(conn, late, self._stamp(), product_id)
        deleted, checked = await self._check_by_id(run, product_id, sorted(pager.suspects))
        written.deleted += deleted
        settled = checked
        if pager.unsettled:
            # An error, not a warning: tests may be missing or kept although deleted.
            run.errors.append(
                f"the test list of product {product_id} kept moving while it was read; "
                "the next sync lists it in full"
            )
            settled = False
        return settled, written

    async def _list_in_full_next_time(
        self,
        run: RunContext,
        product_id: int,
        state: ListingState | None,
        started_at: datetime,
    ) -> None:
        """Mark the product's listing incomplete from page 1: the next sync, plain or not,
        lists every page and sweeps (``list_product``)."""
        async with self._mirror.db.transaction() as conn:
            await save_listing_state(
                conn,
                ListingState(
                    product_id=product_id,
                    next_page=1,
                    complete=False,
                    full_listing=True,
                    run_id=run.run_id,
                    started_at=started_at,
                    finished_at=state.finished_at if state else None,
                    last_full_listing_at=state.last_full_listing_at if state else None,
                ),
            )

    async def _sweep(
        self, run: RunContext, product_id: int, listing_started: datetime
    ) -> tuple[int, bool]:
        """Tests of the product the full listing did not show: gone, or skipped by a moving list?
        Returns how many were tombstoned and whether every one could be checked."""
        candidates = await self._mirror.sync_state.tests_fetched_before(product_id, listing_started)
        return await self._check_by_id(run, product_id, candidates)

    async def _check_by_id(
        self, run: RunContext, product_id: int, test_ids: Sequence[int]
    ) -> tuple[int, bool]:
        """Each test asked for by id: only a 404 tombstones it, an answer stores it. Returns how
        many were tombstoned and whether every one could be checked."""
        deleted = 0
        unchecked = 0
        for test_id in test_ids:
            try:
                test = await self._client.test(test_id)
            except NotFoundError:
                async with self._mirror.db.transaction() as conn:
                    await tombstone_tests(conn, [test_id], self._stamp())
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

    def _stamp(self) -> str:
        return self._mirror.policy.stamp()


def incremental_end(page: ExploratoryTestPage, written: WriteStats, since: datetime | None) -> bool:
    """Where an incremental listing stops: a whole page known and unchanged (the known
    boundary), or with ``since`` a page of tests that all ended before it."""
    if page.received and not written.inserted and not written.updated:
        return True
    return (
        since is not None
        and bool(page.tests)
        and all(t.end_at is not None and t.end_at < since for t in page.tests)
    )
