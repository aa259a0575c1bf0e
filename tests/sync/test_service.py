"""SyncService against the sandbox over real HTTP: full, incremental and reconciling listings,
joining, phases, scope and options, and the sync history in ``sync_events``. A list that moves
while it is paged, faults and cancellation are in ``test_service_faults.py``; the helpers here
serve both files: every sync they run has its progress checked."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from testio_mirror.app import App, open_app
from testio_mirror.sandbox import DatasetSpec, SandboxKnobs, SandboxServer
from testio_mirror.settings import Settings, load_settings
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.store.sync_state import SyncEvent, add_event
from testio_mirror.sync.models import (
    PHASE_ORDER,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)
from testio_mirror.sync.service import FULL_LISTING_WINDOW
from tests.conftest import SandboxFactory
from tests.sync.mirror_equality import mirror_differences

ALL_PHASES: tuple[SyncPhase, ...] = PHASE_ORDER
MEDIUM = DatasetSpec(seed=3, products=3, section_products=1, tests_per_product=120, bugs_per_test=2)
PAGE_SIZE = 25
WRONG_TOKEN = "not-the-sandbox-token-0123456789"
Hook = Callable[[int, int, str], None]


def make_settings(sandbox: SandboxServer, home: Path, **overrides: Any) -> Settings:
    """Settings for ``sandbox``; every knob is explicit so TESTIO_* variables cannot leak in."""
    knobs: dict[str, Any] = {
        "customer_api_token": sandbox.token,
        "customer_api_base_url": sandbox.base_url,
        "mirror_home": home,
        "page_size": PAGE_SIZE,
        "bug_batch_size": 15,
        "max_concurrent_requests": 10,
        "retry_max_attempts": 2,
        "retry_max_delay_seconds": 0.05,
        "http_timeout_seconds": 10.0,
        "full_reconcile_interval_seconds": 24 * 3600,
        "sync_lock_timeout_seconds": 5.0,
    }
    knobs.update(overrides)
    return load_settings(**knobs)


def assert_progress(seen: Sequence[tuple[int, int]]) -> None:
    """``done`` strictly increases and never passes ``total``."""
    dones = [done for done, _ in seen]
    assert all(a < b for a, b in itertools.pairwise(dones)), dones
    assert all(0 < done <= total for done, total in seen), seen


class Progress:
    """An ``on_progress`` listener that records ``(done, total)`` and may run a hook."""

    def __init__(self, hook: Hook | None = None) -> None:
        self.seen: list[tuple[int, int]] = []
        self.messages: list[str] = []
        self._hook = hook

    def __call__(self, done: int, total: int, message: str) -> None:
        self.seen.append((done, total))
        self.messages.append(message)
        if self._hook is not None:
            self._hook(done, total, message)


async def run_sync(
    app: App,
    phases: Sequence[SyncPhase | str] | None = ALL_PHASES,
    scope: SyncScope | None = None,
    options: SyncOptions | None = None,
    hook: Hook | None = None,
    *,
    reports: bool = True,
    wait_for_lock: bool = True,
) -> SyncResult:
    """One sync whose progress is checked (``reports``: at least one report is expected)."""
    progress = Progress(hook)
    result = await app.sync.execute_sync(
        phases=phases,
        scope=scope,
        options=options,
        trigger=SyncTrigger.CLI,
        on_progress=progress,
        wait_for_lock=wait_for_lock,
    )
    assert_progress(progress.seen)
    assert bool(progress.seen) is reports, progress.messages
    return result


def listing_pages(sandbox: SandboxServer, product_id: int, since: float = 0.0) -> list[int]:
    """The pages of ``PAGE_SIZE`` tests of a product's listing asked for (from ``since``, Unix
    time), in page order (a full listing asks for a window of pages at once)."""
    pages: list[int] = []
    for record in sandbox.requests.records(f"products/{product_id}/exploratory_tests"):
        query = parse_qs(record.query)
        if record.at >= since and query["per_page"] == [str(PAGE_SIZE)]:
            pages.append(int(query["page"][0]))
    return sorted(pages)


def pages_asked(last: int, start: int = 1) -> list[int]:
    """The pages a full listing from ``start`` asks for when page ``last`` ends it: ``start``
    alone, then windows of ``FULL_LISTING_WINDOW`` pages, the one holding ``last`` read whole."""
    end = start
    while end < last:
        end += FULL_LISTING_WINDOW
    return list(range(start, end + 1))


def mirrored(database: Path, test_id: int) -> tuple[str | None, str | None]:
    """A mirrored test's ``(status, deleted_at)``."""
    with sqlite3.connect(database) as conn:
        row = conn.execute(
            "SELECT status, deleted_at FROM tests WHERE id = ?", (test_id,)
        ).fetchone()
    assert row is not None, f"test {test_id} is not in the mirror at all"
    return row[0], row[1]


def only_extra(test_id: int) -> list[str]:
    """What ``mirror_differences`` says when the mirror holds one test too many, nothing else."""
    return [f"test ids differ: missing [], extra [{test_id}]"]


# -- complete syncs ------------------------------------------------------------------------------


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


# -- incremental runs, reconciliation, a list that moves -----------------------------------------


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


# -- joining and starting ------------------------------------------------------------------------


async def test_two_concurrent_syncs_in_one_process_share_one_run(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home")
    async with open_app(settings) as app:
        first, second = await asyncio.gather(run_sync(app), run_sync(app))
        runs = await app.mirror.sync_state.events(kind="run")
    assert first.run_id == second.run_id
    assert first == second
    assert len(sandbox.requests.records("products")) == 1
    assert [r.run_id for r in runs] == [first.run_id]


async def test_start_sync_starts_once_and_then_joins(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home")
    async with open_app(settings) as app:
        run_id, joined = app.sync.start_sync(trigger=SyncTrigger.TOOL)
        assert joined is False
        assert app.sync.start_sync() == (run_id, True)
        view = app.sync.current
        assert view is not None
        assert view.run_id == run_id
        # Joining needs the run in flight to cover what is asked: the same default phases do.
        result = await run_sync(app, phases=None)
        assert app.sync.current is None
        fresh_id, joined = app.sync.start_sync(phases=[SyncPhase.PRODUCTS])
        assert (fresh_id != run_id, joined) == (True, False)
        assert (await run_sync(app, phases=[SyncPhase.PRODUCTS])).run_id == fresh_id
    assert result.run_id == run_id
    assert result.trigger is SyncTrigger.TOOL
    assert result.status is SyncStatus.SUCCESS
    assert len(sandbox.requests.records("products")) == 2


# -- phases, scope and options -------------------------------------------------------------------


async def test_phases_scope_and_options(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home")
    database = settings.database_path
    world = sandbox.world
    async with open_app(settings) as app:
        shuffled = [SyncPhase.BUGS, "new_tests", SyncPhase.PRODUCTS, SyncPhase.FEATURES]
        only_102 = await run_sync(app, phases=shuffled, scope=SyncScope(product_ids=(102,)))
        assert only_102.phases == only_102.phases_completed == list(ALL_PHASES)
        assert only_102.status is SyncStatus.SUCCESS, only_102.errors
        with sqlite3.connect(database) as conn:
            owners = conn.execute("SELECT DISTINCT product_id FROM tests").fetchall()
            bug_owners = conn.execute("SELECT DISTINCT product_id FROM bugs").fetchall()
        assert owners == bug_owners == [(102,)]
        assert only_102.stats["new_tests"].inserted == world.test_count(102)
        assert listing_pages(sandbox, 101) == listing_pages(sandbox, 103) == []
        assert sandbox.requests.records("products/10[13]/*") == []

        sandbox.requests.clear()
        tests_only = await run_sync(app, phases=None, scope=SyncScope(entity_types=("tests",)))
        assert tests_only.phases == tests_only.phases_completed == [SyncPhase.NEW_TESTS]
        assert tests_only.status is SyncStatus.SUCCESS, tests_only.errors
        asked = {r.path for r in sandbox.requests.records()}
        assert asked == {f"products/{pid}/exploratory_tests" for pid in (101, 102, 103)}
        # The tests are complete; the other products' features were never in scope.
        assert mirror_differences(database, world) == ["feature ids differ"]

        world.evolve(2)
        nuked = await run_sync(app, phases=None, options=SyncOptions(nuke=True))
        counts = await app.mirror.sync_state.counts()
        runs = await app.mirror.sync_state.events(kind="run")
    assert nuked.status is SyncStatus.SUCCESS, nuked.errors
    assert any("nuke" in w for w in nuked.warnings)
    assert counts["bugs"] == 0  # emptied, and this run had no bugs phase
    assert nuked.stats["new_tests"].inserted == len(world.snapshot()["tests"])
    assert mirror_differences(database, world) == []
    assert len(runs) == 3  # the history survives a nuke


async def test_a_wrong_token_fails_the_run_and_names_the_setting(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home", customer_api_token=WRONG_TOKEN)
    async with open_app(settings) as app:
        result = await run_sync(app, reports=False)
        errors = await app.mirror.sync_state.events(run_id=result.run_id, kind="error")
    assert result.status is SyncStatus.FAILED
    assert any("TESTIO_CUSTOMER_API_TOKEN" in e for e in result.errors), result.errors
    assert WRONG_TOKEN not in " ".join(result.errors)
    assert result.phases_completed == []
    assert [e.message for e in errors] == result.errors


# -- the sync history ----------------------------------------------------------------------------


async def test_sync_events_counters_period_stats_and_recovery(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    home = tmp_path / "home"
    since = utc_now() - timedelta(seconds=1)
    async with open_app(make_settings(sandbox, home)) as app:
        good = await run_sync(app, phases=None)
    async with open_app(make_settings(sandbox, home, customer_api_token=WRONG_TOKEN)) as app:
        bad = await run_sync(app, phases=None, reports=False)
        state = app.mirror.sync_state
        runs = await state.events(kind="run")
        counters = await state.counters()
        period = await state.period_stats(since)
        later = await state.period_stats(utc_now() + timedelta(hours=1))

        async with app.mirror.db.transaction() as conn:
            await add_event(
                conn, SyncEvent("dead-run-0001", utc_now(), "run", trigger="cli", status="running")
            )
        assert (await state.counters()).total_runs == 2  # a running row is not counted
        assert await app.sync.recover() == 1
        assert await app.sync.recover() == 0
        dead = await state.events(run_id="dead-run-0001")
        after = await state.counters()
    assert (good.status, bad.status) == (SyncStatus.SUCCESS, SyncStatus.FAILED)
    assert [(r.run_id, r.status, r.trigger) for r in runs] == [
        (bad.run_id, "failed", "cli"),
        (good.run_id, "success", "cli"),
    ]
    assert runs[1].duration_seconds == good.duration_seconds > 0
    assert runs[1].items_synced == good.items_synced > 0
    assert all(r.finished_at is not None and r.duration_seconds is not None for r in runs)
    assert (counters.total_runs, counters.successful_runs, counters.failed_runs) == (2, 1, 1)
    assert counters.last_success_at is not None
    assert counters.last_sync_at is not None
    assert counters.last_sync_at >= counters.last_success_at
    assert (period.runs, period.success_rate) == (2, 0.5)
    assert period.items_synced == good.items_synced
    assert (later.runs, later.success_rate) == (0, None)
    assert [(e.kind, e.status) for e in dead] == [("run", "interrupted")]
    assert (after.total_runs, after.successful_runs, after.failed_runs) == (3, 1, 1)
