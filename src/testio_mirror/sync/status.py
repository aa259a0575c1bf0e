"""The sync status, built once (``build_sync_status``) and shown three ways: the ``sync_status``
tool answers the ``SyncStatusReport``, the ``testio://sync/status`` resource and
``testio-mirror status --json`` give its JSON, and ``testio-mirror status`` prints it as text.

What only the server knows (TestIO's health, the next scheduled refresh, the run in flight in its
process) is passed in; the CLI leaves those out. Times are UTC and written with ``Z``. The triage
outbox (``outbox``) is read from the mirror's ``Outbox.summary``: changes by state, the oldest
pending one, conflicts in total and since the latest run started, the last push.

This module loads without the store or the sync service (the server needs the model for its
``tools/list``); those are only passed in.

Example::

    report = await build_sync_status(
        mirror.sync_state, SyncLock(settings.mirror_home), settings.database_path,
        period_hours=24, outbox=mirror.outbox,
    )
    report.state, report.total_runs, report.model_dump_json()
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

from pydantic import Field

from testio_mirror.schema import CompactSchema, inline_list
from testio_mirror.sync.models import SyncResult, SyncStatus

if TYPE_CHECKING:
    from testio_mirror.store.outbox import Outbox
    from testio_mirror.store.outbox_records import OutboxSummary
    from testio_mirror.store.sync_state import ListingState, SyncEvent, SyncStateRepository
    from testio_mirror.sync.lock import LockOwner, SyncLock
    from testio_mirror.sync.run import RunView
    from testio_mirror.upstream.health import HealthReport

_Key = TypeVar("_Key", bound=str)
LAST_RUNS = 5  # runs listed in ``last_runs``
HISTORY_LOOKBACK = 200  # runs looked through for the last result when the latest are interrupted


class RunningSync(CompactSchema):
    run_id: str
    trigger: str
    phase: str | None
    done: int
    total: int
    message: str
    started_at: datetime


class LockHolder(CompactSchema):
    pid: int
    host: str
    run_id: str
    started_at: datetime
    heartbeat_at: datetime


class Health(CompactSchema):
    state: Literal["healthy", "unauthorized", "rate_limited", "unreachable"]
    latency_ms: float | None
    detail: str
    checked_at: datetime


class ProductListing(CompactSchema):
    product_id: int
    last_complete_listing: datetime | None
    complete: bool
    last_full_listing: datetime | None
    next_page: int = Field(description="the page an unfinished listing resumes at")


class RecentRun(CompactSchema):
    run_id: str
    trigger: str | None
    status: str | None = Field(description="running, success, partial, failed, cancelled, ...")
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    items_synced: int | None
    message: str | None


class OldestPending(CompactSchema):
    change_id: int
    created_at: datetime
    age_seconds: float = Field(description="how long it has waited to be sent")


class ConflictCounts(CompactSchema):
    detected: dict[str, int] = Field(
        description="changes that met a conflict, by the strategy chosen when they were made"
    )
    resolved: dict[str, int] = Field(
        description="conflicts settled, by the strategy that settled them (manual: a person)"
    )
    resolutions: dict[str, int] = Field(
        description="conflicts settled, by how: keep_local, keep_server, server_wins, "
        "local_wins, latest_local, latest_server"
    )


class RunConflicts(ConflictCounts):
    since: datetime = Field(description="when the latest run started")


class OutboxConflicts(ConflictCounts):
    """In total; ``last_run``: from the latest run's start on."""

    last_run: RunConflicts | None = Field(description="null before the first run")


class OutboxStatus(CompactSchema):
    changes: dict[str, int] = Field(
        description="triage changes by state: pending, sending, applied, conflict, failed, "
        "cancelled"
    )
    oldest_pending: OldestPending | None = Field(
        description="the next change a push sends (oldest first); null: none pending"
    )
    conflicts: OutboxConflicts
    last_push_at: datetime | None = Field(
        description="the latest answer TestIO gave to a push (or to a reconcile's read)"
    )
    last_applied_at: datetime | None


class SyncStatusReport(CompactSchema):
    state: Literal["idle", "running", "never_synced"] = Field(
        description="running: a sync is in progress (see running); never_synced: the mirror "
        "is empty, call sync_data"
    )
    running: RunningSync | None
    last_result: SyncResult | None = Field(
        description="the last run that ended on its own (an interrupted one is in last_runs)"
    )
    total_runs: int = Field(
        description="ended runs: successful + partial + failed + cancelled + interrupted"
    )
    successful_runs: int
    partial_runs: int
    failed_runs: int
    cancelled_runs: int = Field(description="stopped on request")
    interrupted_runs: int = Field(
        description="stopped by the process ending (a server shutting down, a crash); resumable"
    )
    last_sync_at: datetime | None
    last_success_at: datetime | None
    period_hours: float
    period_runs: int
    period_success_rate: float | None
    period_mean_duration_seconds: float | None
    period_items_synced: int
    lock_holder: LockHolder | None = Field(description="the process holding the sync lock")
    counts: dict[str, int] = Field(description="products, features, tests, bugs in the mirror")
    products: Annotated[list[ProductListing], inline_list(ProductListing)]
    last_runs: Annotated[list[RecentRun], inline_list(RecentRun)] = Field(
        description="the latest runs, newest first"
    )
    database: str = Field(description="the mirror's SQLite file")
    outbox: OutboxStatus = Field(
        description="the triage changes for TestIO (the outbox) and what became of them"
    )
    upstream: Health | None = Field(description="null when no TestIO token is configured")
    next_refresh_at: datetime | None


async def build_sync_status(
    sync_state: SyncStateRepository,
    lock: SyncLock,
    database: Path,
    *,
    period_hours: float,
    outbox: Outbox,
    running: RunView | None = None,
    last_result: SyncResult | None = None,
    upstream: HealthReport | None = None,
    next_refresh_at: datetime | None = None,
) -> SyncStatusReport:
    """The sync status of the mirror whose history ``sync_state`` reads and whose triage
    changes ``outbox`` holds: ``running`` and ``last_result`` come from a process's
    ``SyncService`` (without them, the last result is the last one recorded), ``upstream`` and
    ``next_refresh_at`` from the server.

    Raises:
        StoreError: the mirror cannot be read.
    """
    now = datetime.now(UTC)
    since = now - timedelta(hours=period_hours)
    counters, period, counts, listings, runs, holder = await asyncio.gather(
        sync_state.counters(),
        sync_state.period_stats(since),
        sync_state.counts(),
        sync_state.listing_states(),
        sync_state.events(kind="run", limit=LAST_RUNS),
        asyncio.to_thread(lock.holder),
    )
    # The latest run, running or ended: its conflicts are those from its start on.
    started = runs[0].at if runs else None
    in_total = await outbox.summary()
    last_run = await outbox.summary(since=started) if started is not None else None
    if last_result is None or last_result.status is SyncStatus.INTERRUPTED:
        # A run stopped by its process ending (a server shut down by a short-lived client) says
        # nothing about TestIO or the mirror: the last run that ended on its own does.
        last_result = await _last_recorded_result(sync_state, runs)
    if running is not None or holder is not None:
        state: Literal["idle", "running", "never_synced"] = "running"
    elif counters.total_runs == 0 and not any(counts.values()):
        state = "never_synced"
    else:
        state = "idle"
    return SyncStatusReport(
        state=state,
        running=_running(running) if running is not None else None,
        last_result=last_result,
        total_runs=counters.total_runs,
        successful_runs=counters.successful_runs,
        partial_runs=counters.partial_runs,
        failed_runs=counters.failed_runs,
        cancelled_runs=counters.cancelled_runs,
        interrupted_runs=counters.interrupted_runs,
        last_sync_at=counters.last_sync_at,
        last_success_at=counters.last_success_at,
        period_hours=period_hours,
        period_runs=period.runs,
        period_success_rate=_rounded(period.success_rate, 4),
        period_mean_duration_seconds=_rounded(period.mean_duration_seconds, 3),
        period_items_synced=period.items_synced,
        lock_holder=_holder(holder) if holder is not None else None,
        counts=counts,
        products=[_listing(s) for s in listings.values()],
        last_runs=[_recent(r) for r in runs],
        database=str(database),
        outbox=_outbox(in_total, last_run, started, now),
        upstream=_health(upstream) if upstream is not None else None,
        next_refresh_at=next_refresh_at,
    )


async def _last_recorded_result(
    sync_state: SyncStateRepository, latest: list[SyncEvent]
) -> SyncResult | None:
    """The result of the newest run that ended on its own, from the latest runs or, when they
    are all running or interrupted, further back."""
    found = _ended_on_its_own(latest)
    if found is None and len(latest) == LAST_RUNS:
        found = _ended_on_its_own(await sync_state.events(kind="run", limit=HISTORY_LOOKBACK))
    return found


def _ended_on_its_own(runs: list[SyncEvent]) -> SyncResult | None:
    for event in runs:
        if event.status in (None, "running", "interrupted"):
            continue
        if event.data and "result" in event.data:
            return SyncResult.model_validate(event.data["result"])
    return None


def _outbox(
    in_total: OutboxSummary, last_run: OutboxSummary | None, started: datetime | None, now: datetime
) -> OutboxStatus:
    oldest = None
    if in_total.oldest_pending_id is not None and in_total.oldest_pending_at is not None:
        age = (now - in_total.oldest_pending_at).total_seconds()
        oldest = OldestPending(
            change_id=in_total.oldest_pending_id,
            created_at=in_total.oldest_pending_at,
            age_seconds=round(max(age, 0.0), 1),
        )
    run = None
    if last_run is not None and started is not None:
        run = RunConflicts(since=started, **_conflicts(last_run))
    return OutboxStatus(
        changes=_plain(in_total.by_state),
        oldest_pending=oldest,
        conflicts=OutboxConflicts(last_run=run, **_conflicts(in_total)),
        last_push_at=in_total.last_push_at,
        last_applied_at=in_total.last_applied_at,
    )


def _conflicts(summary: OutboxSummary) -> dict[str, dict[str, int]]:
    return {
        "detected": _plain(summary.conflicts_detected),
        "resolved": _plain(summary.conflicts_resolved),
        "resolutions": _plain(summary.resolutions),
    }


def _plain(counts: Mapping[_Key, int]) -> dict[str, int]:
    """Counts keyed by a closed set of words, as the answer's plain ``{word: n}``."""
    return {str(key): n for key, n in counts.items()}


def _running(view: RunView) -> RunningSync:
    return RunningSync(
        run_id=view.run_id,
        trigger=view.trigger.value,
        phase=view.phase.value if view.phase else None,
        done=view.done,
        total=view.total,
        message=view.message,
        started_at=view.started_at,
    )


def _holder(owner: LockOwner) -> LockHolder:
    # The lock record keeps ISO 8601 text (checked to carry an offset when it is read).
    return LockHolder(
        pid=owner.pid,
        host=owner.host,
        run_id=owner.run_id,
        started_at=datetime.fromisoformat(owner.started_at),
        heartbeat_at=datetime.fromisoformat(owner.heartbeat_at),
    )


def _rounded(value: float | None, decimals: int) -> float | None:
    # Rounded for reading (ms to 0.1, seconds to 1 ms, rates to 4 decimals); stored exactly.
    return None if value is None else round(value, decimals)


def _health(report: HealthReport) -> Health:
    return Health(
        state=report.state,
        latency_ms=_rounded(report.latency_ms, 1),
        detail=report.detail,
        checked_at=report.checked_at,
    )


def _listing(state: ListingState) -> ProductListing:
    return ProductListing(
        product_id=state.product_id,
        last_complete_listing=state.finished_at,
        complete=state.complete,
        last_full_listing=state.last_full_listing_at,
        next_page=state.next_page,
    )


def _recent(event: SyncEvent) -> RecentRun:
    return RecentRun(
        run_id=event.run_id,
        trigger=event.trigger,
        status=event.status,
        started_at=event.at,
        finished_at=event.finished_at,
        duration_seconds=_rounded(event.duration_seconds, 3),
        items_synced=event.items_synced,
        message=event.message,
    )
