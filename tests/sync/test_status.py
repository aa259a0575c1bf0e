"""The sync status builder on a real mirror file, without TestIO: what it reads from the history,
the listing states, the counts and the lock, what it takes from its caller, and its JSON times."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.settings import load_settings
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.outbox_records import ChangeRequest
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.store.sync_state import (
    ListingState,
    SyncEvent,
    add_event,
    save_listing_state,
    update_run,
)
from testio_mirror.sync.lock import SyncLock
from testio_mirror.sync.models import SyncPhase, SyncResult, SyncStatus, SyncTrigger
from testio_mirror.sync.run import RunView
from testio_mirror.sync.status import SyncStatusReport, build_sync_status
from testio_mirror.triage import CHANGE_STATES, TriageState
from testio_mirror.upstream.health import HealthReport
from tests.helpers.outbox_data import OutboxMirror, TickingClock
from tests.helpers.store_data import small_world, write_world

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@pytest.fixture
async def mirror(tmp_path: Path) -> AsyncIterator[Mirror]:
    opened = await Mirror.open(load_settings(mirror_home=tmp_path / "home"), None)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def lock(tmp_path: Path) -> SyncLock:
    (tmp_path / "home").mkdir(exist_ok=True)
    return SyncLock(tmp_path / "home")


async def build(mirror: Mirror, lock: SyncLock, **given: Any) -> SyncStatusReport:
    return await build_sync_status(
        mirror.sync_state,
        lock,
        Path("/data/mirror.db"),
        period_hours=24.0,
        outbox=mirror.outbox,
        **given,
    )


def result_of(run_id: str, status: SyncStatus, at: datetime) -> SyncResult:
    return SyncResult(
        run_id=run_id,
        trigger=SyncTrigger.CLI,
        status=status,
        phases=[SyncPhase.PRODUCTS],
        phases_completed=[SyncPhase.PRODUCTS],
        stats={},
        api_requests=1,
        retries=0,
        warnings=[],
        errors=[],
        started_at=at,
        finished_at=at + timedelta(seconds=2),
        duration_seconds=2.0,
    )


async def record_run(mirror: Mirror, result: SyncResult, items: int) -> None:
    async with mirror.db.transaction() as conn:
        await add_event(
            conn,
            SyncEvent(result.run_id, result.started_at, "run", trigger="cli", status="running"),
        )
        await update_run(
            conn,
            result.run_id,
            status=result.status.value,
            phase=None,
            message=result.summary(),
            finished_at=result.finished_at,
            duration_seconds=result.duration_seconds,
            items_synced=items,
            data={"result": result.model_dump(mode="json")},
        )


def times_in(data: Any) -> Iterator[str]:
    """Every string of a JSON document that starts like an ISO 8601 date-time."""
    if isinstance(data, dict):
        for value in data.values():
            yield from times_in(value)
    elif isinstance(data, list):
        for value in data:
            yield from times_in(value)
    elif isinstance(data, str) and _TIME.match(data):
        yield data


async def test_an_empty_mirror_was_never_synced(mirror: Mirror, lock: SyncLock) -> None:
    report = await build(mirror, lock)
    assert report.state == "never_synced"
    assert (report.total_runs, report.successful_runs, report.failed_runs) == (0, 0, 0)
    assert (report.last_sync_at, report.last_success_at, report.last_result) == (None, None, None)
    assert report.counts == {"products": 0, "features": 0, "tests": 0, "bugs": 0}
    assert (report.products, report.last_runs) == ([], [])
    assert (report.running, report.lock_holder, report.upstream) == (None, None, None)
    assert report.next_refresh_at is None
    assert (report.period_hours, report.period_runs, report.period_success_rate) == (24.0, 0, None)
    assert report.database == "/data/mirror.db"
    assert report.model_dump(mode="json")["outbox"] == {
        "changes": dict.fromkeys(CHANGE_STATES, 0),
        "oldest_pending": None,
        "conflicts": {"detected": {}, "resolved": {}, "resolutions": {}, "last_run": None},
        "last_push_at": None,
        "last_applied_at": None,
    }


async def test_the_history_and_listings_come_from_the_mirror(
    mirror: Mirror, lock: SyncLock
) -> None:
    now = utc_now()
    older = result_of("run-1", SyncStatus.SUCCESS, now - timedelta(minutes=10))
    newer = result_of("run-2", SyncStatus.PARTIAL, now - timedelta(minutes=5))
    await record_run(mirror, older, items=7)
    await record_run(mirror, newer, items=3)
    async with mirror.db.transaction() as conn:
        await add_event(conn, SyncEvent("run-3", now, "run", trigger="tool", status="running"))
        await save_listing_state(conn, ListingState(101, 1, True, True, "run-1", now, now, now))
        await save_listing_state(conn, ListingState(102, 4, False, True, "run-2", now, None, None))
    report = await build(mirror, lock)
    # A run recorded as running in no live process's hands: nothing is running.
    assert report.state == "idle"
    assert report.running is None
    assert (report.total_runs, report.successful_runs, report.failed_runs) == (2, 1, 0)
    assert report.last_success_at == older.finished_at
    assert report.last_sync_at == newer.finished_at
    assert (report.period_runs, report.period_success_rate, report.period_items_synced) == (
        2,
        0.5,
        10,
    )
    assert report.last_result == newer  # the newest run that ended
    assert [(r.run_id, r.status, r.trigger) for r in report.last_runs] == [
        ("run-3", "running", "tool"),
        ("run-2", "partial", "cli"),
        ("run-1", "success", "cli"),
    ]
    assert report.last_runs[1].started_at == newer.started_at
    assert report.last_runs[1].items_synced == 3
    assert [(p.product_id, p.complete, p.next_page) for p in report.products] == [
        (101, True, 1),
        (102, False, 4),
    ]
    assert report.products[0].last_complete_listing == now
    assert report.products[1].last_full_listing is None


async def test_what_the_caller_knows_is_taken_as_given(mirror: Mirror, lock: SyncLock) -> None:
    now = utc_now()
    await record_run(mirror, result_of("run-1", SyncStatus.SUCCESS, now), items=1)
    in_memory = result_of("run-2", SyncStatus.FAILED, now)
    view = RunView("run-3", SyncTrigger.STARTUP, [SyncPhase.PRODUCTS], now, SyncPhase.PRODUCTS)
    health = HealthReport("rate_limited", now, 12.5, "TestIO asks to slow down")
    refresh = now + timedelta(minutes=15)
    report = await build(
        mirror,
        lock,
        running=view,
        last_result=in_memory,
        upstream=health,
        next_refresh_at=refresh,
    )
    assert report.state == "running"
    assert report.running is not None
    assert (report.running.run_id, report.running.trigger, report.running.phase) == (
        "run-3",
        "startup",
        "products",
    )
    assert report.last_result == in_memory  # the service's own, not the recorded one
    assert report.upstream is not None
    assert (report.upstream.state, report.upstream.latency_ms) == ("rate_limited", 12.5)
    assert report.next_refresh_at == refresh


async def test_a_held_lock_means_running_and_names_its_holder(
    mirror: Mirror, lock: SyncLock
) -> None:
    async with lock.hold("run-9", wait_seconds=0):
        report = await build(mirror, lock)
    assert report.state == "running"
    assert report.running is None  # held by a process, not by a run of this one
    holder = report.lock_holder
    assert holder is not None
    assert holder.run_id == "run-9"
    assert holder.started_at.utcoffset() == timedelta(0)
    assert holder.heartbeat_at >= holder.started_at
    assert (await build(mirror, lock)).lock_holder is None  # released


async def test_every_time_in_the_json_is_utc_with_z(mirror: Mirror, lock: SyncLock) -> None:
    now = datetime.now(UTC)
    await record_run(mirror, result_of("run-1", SyncStatus.SUCCESS, now), items=1)
    async with mirror.db.transaction() as conn:
        await save_listing_state(conn, ListingState(101, 1, True, True, "run-1", now, now, now))
    view = RunView("run-2", SyncTrigger.TOOL, [SyncPhase.BUGS], now)
    async with lock.hold("run-2", wait_seconds=0):
        report = await build(
            mirror,
            lock,
            running=view,
            upstream=HealthReport("healthy", now, 3.0, "ok"),
            next_refresh_at=now,
        )
    data = json.loads(report.model_dump_json())
    times = list(times_in(data))
    # Runs, result, listing, lock holder, running view, health, next refresh: all there.
    assert len(times) >= 12, times
    assert all(t.endswith("Z") for t in times), times
    assert data["lock_holder"]["started_at"].endswith("Z")
    assert set(data) == set(SyncStatusReport.model_fields)


async def test_every_outcome_is_counted_and_the_counts_add_up_to_the_total(
    mirror: Mirror, lock: SyncLock
) -> None:
    now = utc_now() - timedelta(minutes=30)
    outcomes = [
        SyncStatus.SUCCESS,
        SyncStatus.SUCCESS,
        SyncStatus.PARTIAL,
        SyncStatus.FAILED,
        SyncStatus.CANCELLED,
        SyncStatus.INTERRUPTED,
    ]
    for n, status in enumerate(outcomes):
        await record_run(mirror, result_of(f"run-{n}", status, now + timedelta(minutes=n)), 1)
    report = await build(mirror, lock)
    assert report.total_runs == 6
    assert (
        report.successful_runs,
        report.partial_runs,
        report.failed_runs,
        report.cancelled_runs,
        report.interrupted_runs,
    ) == (2, 1, 1, 1, 1)
    assert (
        report.successful_runs
        + report.partial_runs
        + report.failed_runs
        + report.cancelled_runs
        + report.interrupted_runs
        == report.total_runs
    )


async def test_a_run_the_server_interrupted_is_not_the_last_result(
    mirror: Mirror, lock: SyncLock
) -> None:
    now = utc_now() - timedelta(minutes=30)
    ended = result_of("run-1", SyncStatus.PARTIAL, now)
    await record_run(mirror, ended, items=2)
    stopped = result_of("run-2", SyncStatus.INTERRUPTED, now + timedelta(minutes=5))
    await record_run(mirror, stopped, items=0)
    report = await build(mirror, lock)
    assert report.last_result == ended  # the last run that ended on its own
    assert [(r.run_id, r.status) for r in report.last_runs][:2] == [
        ("run-2", "interrupted"),
        ("run-1", "partial"),
    ]
    # The service's own last result is ignored too when the server stopped that run.
    assert (await build(mirror, lock, last_result=stopped)).last_result == ended


@pytest.fixture
async def outbox_mirror(tmp_path: Path) -> AsyncIterator[OutboxMirror]:
    """An offline mirror holding the small account, its clock moved on by every stamp."""
    world = small_world()
    clock = TickingClock()
    mirror = await Mirror.open(load_settings(mirror_home=tmp_path / "box"), None, clock=clock)
    try:
        await write_world(mirror.db, world, mirror.policy.stamp())
        yield OutboxMirror(mirror, world.snapshot())
    finally:
        await mirror.close()


REJECTED = TriageState(status="rejected", known=False, fixed=False, exported=False)


async def test_the_outbox_shows_states_the_oldest_pending_conflicts_and_the_last_push(
    outbox_mirror: OutboxMirror, lock: SyncLock
) -> None:
    mirror, outbox = outbox_mirror.mirror, outbox_mirror.mirror.outbox
    bugs = outbox_mirror.bug_ids("forwarded")[:4]
    ids = [
        c.id
        for c in await outbox.enqueue(
            [ChangeRequest(b, "mark_exported") for b in bugs],
            requested_by="ana",
            client="test",
            strategy="manual",
        )
    ]
    # Before the run: one conflict, settled by a person.
    await outbox.record_conflict(ids[0], REJECTED)
    await outbox.resolve(ids[0], "keep_server", by="ana", strategy="manual")
    started = datetime.fromisoformat(outbox_mirror.stamp())
    await record_run(mirror, result_of("run-1", SyncStatus.SUCCESS, started), items=3)
    # In the run: another conflict, and one change applied.
    await outbox.record_conflict(ids[1], REJECTED)
    await outbox.claim(ids[2])
    applied = await outbox.record_applied(
        ids[2], outbox_mirror.raw(bugs[2], exported_at="2026-11-22T00:00:00Z"), http_status=200
    )
    oldest = await outbox.get(ids[3])

    before = utc_now()
    report = await build(mirror, lock)
    after = utc_now()

    box = report.outbox
    assert box.changes == {
        "pending": 1,
        "sending": 0,
        "applied": 1,
        "conflict": 1,
        "failed": 0,
        "cancelled": 1,
    }
    assert box.oldest_pending is not None
    assert (box.oldest_pending.change_id, box.oldest_pending.created_at) == (
        ids[3],
        oldest.created_at,
    )
    waited = box.oldest_pending.age_seconds
    assert (before - oldest.created_at).total_seconds() - 0.1 <= waited
    assert waited <= (after - oldest.created_at).total_seconds() + 0.1
    totals = (box.conflicts.detected, box.conflicts.resolved, box.conflicts.resolutions)
    assert totals == ({"manual": 2}, {"manual": 1}, {"keep_server": 1})
    run = box.conflicts.last_run
    assert run is not None
    assert run.since == started
    assert (run.detected, run.resolved, run.resolutions) == ({"manual": 1}, {}, {})
    assert box.last_push_at == box.last_applied_at == applied.applied_at
    shown = report.model_dump(mode="json")["outbox"]
    assert set(shown) == {
        "changes",
        "oldest_pending",
        "conflicts",
        "last_push_at",
        "last_applied_at",
    }
    assert set(shown["oldest_pending"]) == {"change_id", "created_at", "age_seconds"}
    assert shown["conflicts"]["last_run"]["since"].endswith("Z")
