"""Listing products' tests against the sandbox over real HTTP: full listings in windows of pages,
incremental ones that stop at the known boundary, the scheduled reconciliation and its sweep, and
a list that moves while it is paged; and where an incremental listing stops."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testio_mirror.app import App, open_app
from testio_mirror.sandbox import DatasetSpec, SandboxKnobs, SandboxServer
from testio_mirror.store.sqlite.upsert import WriteStats
from testio_mirror.sync.listing import FULL_LISTING_WINDOW, incremental_end
from testio_mirror.sync.models import SyncOptions, SyncStatus
from testio_mirror.upstream.errors import UpstreamUnavailableError
from testio_mirror.upstream.models import ExploratoryTest
from testio_mirror.upstream.paging import ExploratoryTestPage
from tests.conftest import SandboxFactory
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.settings import PAGE_SIZE, make_settings
from tests.helpers.sync_runs import (
    ALL_PHASES,
    MEDIUM,
    listing_pages,
    mirrored,
    only_extra,
    pages_asked,
    run_sync,
)

# -- complete syncs --------------------------------------------------------------------------------


async def test_full_sync_mirrors_sections_and_a_long_listing_exactly(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(
        DatasetSpec(products=2, section_products=2, tests_per_product=2000, bugs_per_test=1)
    )
    settings = make_settings(sandbox, tmp_path / "home", bug_batch_size=200)
    truth = sandbox.world.snapshot()
    async with open_app(settings) as app:
        result = await run_sync(app, phases=ALL_PHASES)
        counts = await app.mirror.sync_state.counts()
        states = await app.mirror.sync_state.listing_states()
    assert result.status is SyncStatus.SUCCESS, result.errors
    assert result.phases_completed == list(ALL_PHASES)
    assert result.duration_seconds > 0
    assert (result.errors, result.warnings) == ([], [])
    assert mirror_differences(settings.database_path, sandbox.world, bugs=True) == []
    features = sum(len(f) for f in truth["features"].values())
    bugs = len(truth["bugs"])
    assert counts == {"products": 2, "features": features, "tests": 4000, "bugs": bugs}
    stats = result.stats
    assert (stats["products"].fetched, stats["products"].inserted) == (2, 2)
    assert (stats["features"].fetched, stats["features"].inserted) == (features, features)
    assert (stats["new_tests"].fetched, stats["new_tests"].inserted) == (4000, 4000)
    assert (stats["bugs"].fetched, stats["bugs"].inserted) == (bugs, bugs)
    assert result.items_synced == 2 + features + 4000 + bugs
    # 80 full pages, then the empty page 81 that ends each listing.
    assert listing_pages(sandbox, 101) == listing_pages(sandbox, 102) == pages_asked(81)
    assert stats["new_tests"].api_requests == len(sandbox.requests.records("products/*/exp*"))
    assert result.api_requests == sum(s.api_requests for s in stats.values())
    assert all(s.complete and s.full_listing and s.next_page == 1 for s in states.values())


async def test_a_server_capping_per_page_below_the_page_size_still_gives_a_complete_mirror(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    spec = DatasetSpec(seed=5, products=2, section_products=1, tests_per_product=70)
    sandbox = make_sandbox(spec, SandboxKnobs(max_per_page=20))
    settings = make_settings(sandbox, tmp_path / "home")
    async with open_app(settings) as app:
        result = await run_sync(app)
    assert result.status is SyncStatus.SUCCESS, result.errors
    assert mirror_differences(settings.database_path, sandbox.world, bugs=True) == []
    # 20 + 20 + 20 + 10: a round short page is not trusted as the end, the empty page 5 is.
    assert listing_pages(sandbox, 102) == pages_asked(5)
    assert result.stats["new_tests"].inserted == 140


# -- incremental runs, reconciliation --------------------------------------------------------------


async def test_incremental_sync_reads_the_head_and_force_refresh_tombstones(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    world = sandbox.world
    settings = make_settings(sandbox, tmp_path / "home")
    database = settings.database_path
    async with open_app(settings) as app:
        assert (await run_sync(app)).status is SyncStatus.SUCCESS
        order = world.snapshot()["product_tests"]
        added = world.add_test(101)
        changed = order[102][3]
        new_status = "cancelled" if world.test(changed)["status"] != "cancelled" else "archived"
        world.set_test_status(changed, new_status)
        gone = order[103][-5]  # on the last page
        world.remove_test(gone)
        sandbox.requests.clear()

        incremental = await run_sync(app, phases=None)
        assert incremental.status is SyncStatus.SUCCESS, incremental.errors
        pages = {pid: listing_pages(sandbox, pid) for pid in (101, 102, 103)}
        # A changed first page leads to the second, whose tests are all known: the boundary.
        assert pages == {101: [1, 2], 102: [1, 2], 103: [1]}
        assert incremental.stats["new_tests"].inserted == 1
        assert incremental.stats["new_tests"].updated == 1
        assert mirrored(database, added) == ("running", None)
        assert mirrored(database, changed) == (new_status, None)
        assert mirrored(database, gone)[1] is None  # an incremental run does not tombstone
        assert mirror_differences(database, world) == only_extra(gone)

        sandbox.requests.clear()
        full = await run_sync(app, options=SyncOptions(force_refresh=True))
    assert full.status is SyncStatus.SUCCESS, full.errors
    # Page 1, then one window of pages: the end is inside it.
    assert listing_pages(sandbox, 103) == list(range(1, 2 + FULL_LISTING_WINDOW))
    assert len(sandbox.requests.records(f"exploratory_tests/{gone}")) == 1  # checked, 404
    assert full.stats["new_tests"].deleted == 1
    assert mirrored(database, gone)[1] is not None
    assert mirror_differences(database, world, bugs=True) == []


async def test_scheduled_reconciliation_lists_everything_and_tombstones(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home", full_reconcile_interval_seconds=1)
    database = settings.database_path
    async with open_app(settings) as app:
        assert (await run_sync(app, phases=None)).status is SyncStatus.SUCCESS
        gone = sandbox.world.snapshot()["product_tests"][102][-2]
        sandbox.world.remove_test(gone)
        await asyncio.sleep(1.1)  # the reconciliation interval has passed

        sandbox.requests.clear()
        held_back = await run_sync(app, phases=None, options=SyncOptions(incremental_only=True))
        assert held_back.status is SyncStatus.SUCCESS
        assert listing_pages(sandbox, 102) == [1]
        assert mirrored(database, gone)[1] is None

        sandbox.requests.clear()
        due = await run_sync(app, phases=None)
        states = await app.mirror.sync_state.listing_states()
    assert due.status is SyncStatus.SUCCESS, due.errors
    # Every page to the end: 120 tests end on an empty page 6 (20 is a round short page), 119
    # on the short page 5.
    pages = {pid: listing_pages(sandbox, pid) for pid in (101, 102, 103)}
    assert pages == {101: pages_asked(6), 102: pages_asked(5), 103: pages_asked(6)}
    assert mirrored(database, gone)[1] is not None
    assert due.stats["new_tests"].deleted == 1
    assert mirror_differences(database, sandbox.world) == []
    assert all(s.full_listing and s.last_full_listing_at is not None for s in states.values())


# -- a list that moves -----------------------------------------------------------------------------


def remove_after_first_page(
    app: App, sandbox: SandboxServer, victim: int, removed: list[int]
) -> None:
    """Remove ``victim`` upstream as soon as product 101's first page has been answered, before
    the pager asks for the next window: the listing moves between two windows of requests.
    (Inside a window: tests/reliability/test_listing_shifts.py.)"""
    get_json = app.client._get_json

    async def answered_then_removed(path: str, **kwargs: Any) -> Any:
        body = await get_json(path, **kwargs)
        params = kwargs.get("params") or {}
        first_page = params.get("page") == 1 and params.get("per_page") == PAGE_SIZE
        if path == "products/101/exploratory_tests" and first_page and not removed:
            sandbox.world.remove_test(victim)
            removed.append(victim)
        return body

    app.client._get_json = answered_then_removed  # type: ignore[method-assign]


ONE_PRODUCT = DatasetSpec(
    seed=9, products=1, section_products=0, tests_per_product=100, bugs_per_test=1
)


async def test_a_test_removed_mid_listing_costs_a_first_sync_no_other_test(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(ONE_PRODUCT)
    settings = make_settings(sandbox, tmp_path / "home")
    database = settings.database_path
    order = sandbox.world.snapshot()["product_tests"][101]
    victim, skipped = order[2], order[25]
    removed: list[int] = []
    async with open_app(settings) as app:
        remove_after_first_page(app, sandbox, victim, removed)
        first = await run_sync(app)
        assert removed == [victim]
        assert first.status is SyncStatus.SUCCESS, first.errors
        # The listing shifted left under the pager: the test that slid from page 2 onto page 1
        # (never seen before, so no sweep can ask for it) is collected by the probe of that
        # boundary, and the removed one, listed before it went, is asked for by id.
        assert mirrored(database, skipped)[1] is None
        assert mirrored(database, victim)[1] is not None
        assert mirror_differences(database, sandbox.world) == []

        healed = await run_sync(app, options=SyncOptions(force_refresh=True))
    assert healed.status is SyncStatus.SUCCESS
    assert mirrored(database, victim)[1] is not None
    assert mirror_differences(database, sandbox.world, bugs=True) == []


async def test_a_test_removed_mid_relisting_costs_the_mirror_no_other_test(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(ONE_PRODUCT)
    settings = make_settings(sandbox, tmp_path / "home")
    database = settings.database_path
    order = sandbox.world.snapshot()["product_tests"][101]
    victim, skipped = order[2], order[25]
    removed: list[int] = []
    async with open_app(settings) as app:
        assert (await run_sync(app)).status is SyncStatus.SUCCESS
        sandbox.requests.clear()
        remove_after_first_page(app, sandbox, victim, removed)
        again = await run_sync(app, options=SyncOptions(force_refresh=True))
        assert removed == [victim]
        assert again.status is SyncStatus.SUCCESS, again.errors
        # The test that slid from page 2 onto page 1 behind the pager is still there (the sweep
        # asks for each test a full listing did not show), and the removed one is gone.
        assert mirrored(database, skipped)[1] is None
        assert mirror_differences(database, sandbox.world) == []

        healed = await run_sync(app, options=SyncOptions(force_refresh=True))
    assert healed.status is SyncStatus.SUCCESS
    assert mirrored(database, victim)[1] is not None
    assert mirror_differences(database, sandbox.world, bugs=True) == []


async def test_a_boundary_probe_that_fails_makes_the_next_plain_sync_list_in_full(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(ONE_PRODUCT)
    settings = make_settings(sandbox, tmp_path / "home")
    async with open_app(settings) as app:
        get_json = app.client._get_json
        failing = [True]

        async def probes_fail(path: str, **kwargs: Any) -> Any:
            params = kwargs.get("params") or {}
            listing = path == "products/101/exploratory_tests"
            if failing[0] and listing and params.get("per_page") != PAGE_SIZE:
                raise UpstreamUnavailableError("GET exploratory_tests: 503 (test)")
            return await get_json(path, **kwargs)

        app.client._get_json = probes_fail  # type: ignore[method-assign]
        first = await run_sync(app)
        state = await app.mirror.sync_state.listing_state(101)
        failing[0] = False
        since = time.time()
        second = await run_sync(app)
    # Every page was read and stored, but the boundaries were not checked: not trusted.
    assert first.status is SyncStatus.PARTIAL, first
    assert any("503" in e for e in first.errors), first.errors
    assert state is not None
    assert (state.complete, state.next_page) == (False, 1)
    assert second.status is SyncStatus.SUCCESS, second.errors
    assert listing_pages(sandbox, 101, since) == pages_asked(5)  # 100 tests: page 5 is empty
    assert mirror_differences(settings.database_path, sandbox.world) == []


# -- where an incremental listing stops ------------------------------------------------------------


SINCE = datetime(2026, 6, 1, tzinfo=UTC)


def page_of(*ends: datetime | None, received: int | None = None) -> ExploratoryTestPage:
    tests = [
        ExploratoryTest.from_wire({"id": i + 1, "end_at": end.isoformat() if end else None})
        for i, end in enumerate(ends)
    ]
    return ExploratoryTestPage(
        number=1, tests=tests, received=len(tests) if received is None else received, last=False
    )


def test_a_page_known_and_unchanged_ends_an_incremental_listing() -> None:
    page = page_of(SINCE, SINCE)
    assert incremental_end(page, WriteStats(fetched=2, unchanged=2), None) is True
    assert incremental_end(page, WriteStats(fetched=2, unchanged=1, updated=1), None) is False
    assert incremental_end(page, WriteStats(fetched=2, inserted=2), None) is False


def test_an_empty_page_ends_it_only_when_nothing_was_received() -> None:
    assert incremental_end(page_of(), WriteStats(), None) is False
    # Every test on the page was seen on an earlier one: received, none new, none changed.
    assert incremental_end(page_of(received=3), WriteStats(), None) is True


def test_with_since_a_page_of_older_tests_ends_it() -> None:
    older = datetime(2026, 5, 1, tzinfo=UTC)
    new = WriteStats(fetched=2, inserted=2)
    assert incremental_end(page_of(older, older), new, SINCE) is True
    assert incremental_end(page_of(older, SINCE), new, SINCE) is False
    assert incremental_end(page_of(older, None), new, SINCE) is False  # no end: not older
    assert incremental_end(page_of(), WriteStats(), SINCE) is False
