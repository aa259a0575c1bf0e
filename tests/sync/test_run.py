"""A run's records: its row and events in ``sync_events`` and the counters derived from them,
runs left running by a dead process, and how a run's outcome and result are made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from testio_mirror.app import open_app
from testio_mirror.sandbox import FaultRule
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.store.sync_state import SyncEvent, add_event
from testio_mirror.sync.models import (
    PhaseStats,
    SyncOptions,
    SyncPhase,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)
from testio_mirror.sync.progress import ProgressTracker
from testio_mirror.sync.run import ActiveRun, RunContext, run_result
from tests.conftest import SandboxFactory
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import MEDIUM, run_sync


async def test_sync_events_counters_period_stats_and_recovery(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    home = tmp_path / "home"
    since = utc_now() - timedelta(seconds=1)
    async with open_app(make_settings(sandbox, home)) as app:
        good = await run_sync(app, phases=None)
    # The token stops working (a wrong token would open another account's mirror: refused).
    sandbox.faults.add(FaultRule(kind="error", status=401, path="products", times=None))
    async with open_app(make_settings(sandbox, home)) as app:
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


def context(errors: list[str], succeeded_units: int) -> RunContext:
    return RunContext(
        "run-1",
        SyncScope(),
        SyncOptions(),
        ProgressTracker(None),
        errors=errors,
        succeeded_units=succeeded_units,
    )


def test_a_run_with_errors_is_partial_unless_nothing_succeeded() -> None:
    assert context([], 0).outcome() is SyncStatus.SUCCESS
    assert context([], 3).outcome() is SyncStatus.SUCCESS
    assert context(["tests of product 102: 503"], 3).outcome() is SyncStatus.PARTIAL
    assert context(["products: 503"], 0).outcome() is SyncStatus.FAILED


async def test_an_active_run_reports_to_its_view_and_listeners_and_sums_its_result() -> None:
    started = datetime(2026, 11, 21, 5, 30, tzinfo=UTC)
    heard: list[tuple[int, int, str]] = []
    run = ActiveRun.create(
        "run-1",
        SyncTrigger.CLI,
        [SyncPhase.PRODUCTS, SyncPhase.NEW_TESTS],
        SyncScope(product_ids=(101,)),
        SyncOptions(),
        started,
        lambda done, total, message: heard.append((done, total, message)),
    )
    run.context.tracker.expect(2)
    await run.context.tracker.step("products: 3")
    assert heard == [(1, 2, "products: 3")]
    assert (run.view.done, run.view.total, run.view.message) == (1, 2, "products: 3")

    run.context.stats = {
        "products": PhaseStats(fetched=3, inserted=3, api_requests=1),
        "new_tests": PhaseStats(fetched=50, inserted=40, updated=2, api_requests=4, retries=1),
    }
    run.context.completed = [SyncPhase.PRODUCTS, SyncPhase.NEW_TESTS]
    result = run_result(run, SyncStatus.SUCCESS, started, 1.23456)
    assert (result.run_id, result.trigger, result.status) == ("run-1", SyncTrigger.CLI, "success")
    assert (result.api_requests, result.retries) == (5, 1)
    assert result.items_synced == 45
    assert result.duration_seconds == 1.235
    assert result.finished_at == started + timedelta(seconds=1.23456)
