"""The phases of a run: PRODUCTS, FEATURES, NEW_TESTS, BUGS, in that order.

Each phase works on the products in scope concurrently (at most ``max_concurrent_requests`` at
once); one product's failure is recorded in the run's errors and does not stop the others. A
refused token (``AuthError``), a product list that says no API is at the base URL
(``BaseUrlError``) and products the account lacks (``UnknownProductsError``) stop the run.

Example::

    phases = PhaseRunner(settings, client, mirror, utc_now)
    await phases.run(context, [SyncPhase.PRODUCTS, SyncPhase.NEW_TESTS], entering)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from testio_mirror.settings import Settings
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.features import write_features
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import write_products
from testio_mirror.store.sqlite.upsert import WriteStats
from testio_mirror.sync.listing import ProductLister
from testio_mirror.sync.models import PhaseStats, SyncPhase, UnknownProductsError
from testio_mirror.sync.run import RunContext
from testio_mirror.upstream.bug_batches import BugBatch, bug_batch_groups
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import (
    AuthError,
    BaseUrlError,
    EndpointDownError,
    UpstreamError,
    wrong_base_url,
)
from testio_mirror.upstream.models import SKIPPED_OBJECTS, Product, RejectReason
from testio_mirror.upstream.product_list import ProductList, confirmed_product_list

logger = logging.getLogger("testio_mirror.sync")


class PhaseRunner:
    """Runs a run's phases against TestIO and the mirror."""

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
        self._lister = ProductLister(settings, client, mirror, clock)

    async def run(
        self,
        run: RunContext,
        phases: Sequence[SyncPhase],
        entering: Callable[[SyncPhase], Awaitable[None]],
    ) -> None:
        """Run ``phases`` (already in order), calling ``entering`` before each; each phase's
        stats and its completion land in ``run``.

        Raises:
            AuthError: the token was refused.
            BaseUrlError: the product list found no API at the base URL.
            UpstreamError: the product list was needed and could not be fetched.
            UnknownProductsError: the scope names products the account does not have.
        """
        products: list[Product] | None = None
        for phase in phases:
            await entering(phase)
            before = self._client.metrics.snapshot()
            stats = PhaseStats()
            # In the stats from the start: a phase that ends the run (a refused token, a cancel)
            # still shows the requests it made.
            run.stats[phase.value] = stats
            try:
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
            finally:
                spent = self._client.metrics.snapshot() - before
                stats.api_requests, stats.retries = spent.requests, spent.retries
            run.completed.append(phase)

    async def _products_phase(self, run: RunContext, stats: PhaseStats) -> list[Product]:
        run.tracker.expect(1)
        skipped_before = _skipped_count()
        held = set(await self._mirror.products.known_ids())
        try:
            listed = await self._fetch_products(held)
        except (AuthError, BaseUrlError):
            raise  # nothing else could succeed
        except UpstreamError as exc:
            stored = await self._mirror.products.stored_products()
            if not stored or not set(run.scope.product_ids or ()) <= {p.id for p in stored}:
                await run.tracker.step("products: failed")
                raise  # no copy to go on with: the run fails with this one error
            run.errors.append(f"products: {exc}")
            await run.tracker.step("products: failed, using the mirror's copy")
            return self._in_scope(run, stored)
        if listed.warning is not None:
            run.warnings.append(listed.warning)
        if listed.error is not None:
            run.errors.append(listed.error)
        products = listed.products
        async with self._mirror.db.transaction() as conn:
            # A product skipped for an out-of-range number is not gone: tombstone nothing then.
            whole = listed.complete and _skipped_count() == skipped_before
            add_written(stats, await write_products(conn, products, self._stamp(), complete=whole))
        run.succeeded_units += 1
        await run.tracker.step(f"products: {len(products)}")
        return self._in_scope(run, products)

    async def _fetch_products(self, held: set[int]) -> ProductList:
        """The account's product list, listed twice when it lacks much of ``held`` (the live
        products the mirror holds).

        Raises:
            BaseUrlError: no API answers at the base URL (404, or no connection).
            UpstreamError: any other failure.
        """
        try:
            return await confirmed_product_list(self._client, held, self._mirror.policy.removal)
        except UpstreamError as exc:
            doomed = wrong_base_url(exc, str(self._settings.customer_api_base_url))
            if doomed is not None:
                raise doomed from None
            raise

    def _in_scope(self, run: RunContext, products: list[Product]) -> list[Product]:
        return _named(products, run.scope.product_ids)

    async def _stored_products(self, run: RunContext) -> list[Product]:
        return await self.products_in_scope(run.scope.product_ids)

    async def products_in_scope(self, product_ids: Sequence[int] | None) -> list[Product]:
        """The products ``product_ids`` name (None: all) as the mirror holds them; the product
        list is fetched (and stored) when the mirror has none, or lacks one of them.

        Raises:
            UnknownProductsError: the account does not have some of them.
            UpstreamError: the product list was needed and could not be fetched.
        """
        products = await self._mirror.products.stored_products()
        wanted = set(product_ids or ())
        if not products or not wanted <= {p.id for p in products}:
            listed = await self._fetch_products({p.id for p in products})
            for note in (listed.warning, listed.error):
                if note is not None:
                    logger.warning("%s", note)
            products = listed.products
            async with self._mirror.db.transaction() as conn:
                await write_products(conn, products, self._stamp(), complete=listed.complete)
        return _named(products, product_ids)

    async def _features_phase(
        self, run: RunContext, products: list[Product], stats: PhaseStats
    ) -> None:
        policy = self._mirror.policy
        fetched = await self._mirror.features.fetched_at([p.id for p in products])
        due = [
            p
            for p in products
            if run.options.force_refresh
            or not policy.is_fresh(fetched.get(p.id), policy.product_ttl)
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
                add_written(stats, await write_features(conn, product.id, features, self._stamp()))
            run.succeeded_units += 1
            await run.tracker.step(f"features of product {product.id}: {len(features)}")

        await self._each(due, one)

    async def _tests_phase(
        self, run: RunContext, products: list[Product], stats: PhaseStats
    ) -> None:
        run.tracker.expect(len(products))

        async def one(product: Product) -> None:
            try:
                add_written(stats, await self._lister.list_product(run, product.id))
                run.succeeded_units += 1
            except AuthError:
                raise
            except UpstreamError as exc:
                run.errors.append(f"tests of product {product.id}: {exc}")
                await run.tracker.step(f"tests of product {product.id}: failed")

        await self._each(products, one)

    async def _bugs_phase(
        self, run: RunContext, products: list[Product], stats: PhaseStats
    ) -> None:
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
        run: RunContext,
        products: list[Product],
        stats: PhaseStats,
        reasons_request: asyncio.Future[list[RejectReason]],
    ) -> None:
        policy = self._mirror.policy
        test_ids = await self._mirror.sync_state.tests_needing_bugs(
            [p.id for p in products],
            run.scope.bug_horizon,
            stale_before=self._clock() - timedelta(seconds=policy.open_test_ttl),
            force=run.options.force_refresh,
        )
        batch = self._settings.bug_batch_size
        run.tracker.expect(math.ceil(len(test_ids) / batch) if test_ids else 0)
        stored_reasons: list[RejectReason] | None = None
        endpoint_down = False
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
                if isinstance(result.error, EndpointDownError):
                    # One reason for the run, not one per batch; their tests stay to fetch.
                    if not endpoint_down:
                        endpoint_down = True
                        run.errors.append(f"bugs: {result.error}")
                    await run.tracker.step("bugs: the endpoint is down for this run")
                elif result.error is not None:
                    run.errors.append(f"bugs of tests {_ids(result.test_ids)}: {result.error}")
                    await run.tracker.step("bugs: a batch failed")
                else:
                    fetched.append(result)
            if not fetched:
                continue
            # One write for all of them: each statement is a round trip to the writer thread.
            async with self._mirror.db.transaction() as conn:
                add_written(
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
        self, run: RunContext, request: asyncio.Future[list[RejectReason]]
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
            # Exactly the account's now: a reason it dropped must not pass a triage check.
            await self._mirror.outbox.replace_reject_reasons(reasons)
        return await self._mirror.outbox.reject_reasons()

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


def add_written(stats: PhaseStats, written: WriteStats) -> None:
    """Add what one write did to a phase's stats."""
    stats.fetched += written.fetched
    stats.inserted += written.inserted
    stats.updated += written.updated
    stats.unchanged += written.unchanged
    stats.deleted += written.deleted


def _named(products: list[Product], product_ids: Sequence[int] | None) -> list[Product]:
    """The products ``product_ids`` name (None: all of them).

    Raises:
        UnknownProductsError: some of them are not among ``products``.
    """
    if product_ids is None:
        return products
    known = {p.id for p in products}
    missing = sorted(set(product_ids) - known)
    if missing:
        raise UnknownProductsError(missing, sorted(known))
    wanted = set(product_ids)
    return [p for p in products if p.id in wanted]


def _skipped_count() -> int:
    told = SKIPPED_OBJECTS.get()
    return len(told) if told is not None else 0


def _ids(test_ids: Sequence[int]) -> str:
    shown = ", ".join(str(t) for t in test_ids[:5])
    return shown + (f" and {len(test_ids) - 5} more" if len(test_ids) > 5 else "")
