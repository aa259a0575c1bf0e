"""Sync bookkeeping: run rows and events, counters, listing states, and the mirror's counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import from_db, to_db
from testio_mirror.upstream.models import FINAL_TEST_STATUSES

# Every table a nuke empties, children before parents; a new entity table is added here.
ENTITY_TABLES = (
    "test_case_executions",
    "test_cases",
    "test_case_fetches",
    "test_features",
    "bugs",
    "testers",
    "tests",
    "features",
    "sections",
    "products",
    "users",
    "reject_reasons",
    "collection_fetches",
    "listing_state",
)


@dataclass(frozen=True)
class SyncEvent:
    """One row of ``sync_events``: a run (kind ``run``) or something that happened in one."""

    run_id: str
    at: datetime
    kind: str  # run, warning, error, lock_reclaimed, interrupted
    trigger: str | None = None
    status: str | None = None  # for runs: running, success, partial, failed, cancelled, ...
    phase: str | None = None
    message: str | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    items_synced: int | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class ListingState:
    """Where a product's test listing stands."""

    product_id: int
    next_page: int  # the page a resumed listing asks for next
    complete: bool  # the last listing reached its end (or its known boundary)
    full_listing: bool  # the listing in progress (or last) lists every page
    run_id: str | None
    started_at: datetime | None  # when the listing in progress (or last) began
    finished_at: datetime | None  # when a listing last reached its end
    last_full_listing_at: datetime | None


@dataclass(frozen=True)
class SyncCounters:
    """Counters derived from the run rows."""

    total_runs: int
    successful_runs: int
    failed_runs: int
    last_sync_at: datetime | None
    last_success_at: datetime | None
    # The other outcomes, so that every ended run is counted once and they add up to the total.
    partial_runs: int = 0
    cancelled_runs: int = 0
    interrupted_runs: int = 0


@dataclass(frozen=True)
class PeriodStats:
    """Runs that started within a period."""

    runs: int
    success_rate: float | None
    mean_duration_seconds: float | None
    items_synced: int


async def add_event(conn: aiosqlite.Connection, event: SyncEvent) -> None:
    await conn.execute(
        "INSERT INTO sync_events (run_id, at, kind, trigger, status, phase, message, "
        "finished_at, duration_seconds, items_synced, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.run_id,
            to_db(event.at),
            event.kind,
            event.trigger,
            event.status,
            event.phase,
            event.message,
            to_db(event.finished_at),
            event.duration_seconds,
            event.items_synced,
            json.dumps(event.data, ensure_ascii=False) if event.data is not None else None,
        ),
    )


async def update_run(
    conn: aiosqlite.Connection,
    run_id: str,
    *,
    status: str,
    phase: str | None,
    message: str | None,
    finished_at: datetime | None = None,
    duration_seconds: float | None = None,
    items_synced: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "UPDATE sync_events SET status = ?, phase = ?, message = ?, finished_at = ?, "
        "duration_seconds = ?, items_synced = ?, data = coalesce(?, data) "
        "WHERE run_id = ? AND kind = 'run'",
        (
            status,
            phase,
            message,
            to_db(finished_at),
            duration_seconds,
            items_synced,
            json.dumps(data, ensure_ascii=False) if data is not None else None,
            run_id,
        ),
    )


async def running_run_ids(conn: aiosqlite.Connection) -> list[str]:
    """Runs recorded as ``running``: in flight, or left so by a process that died."""
    rows = await conn.execute_fetchall(
        "SELECT run_id FROM sync_events WHERE kind = 'run' AND status = 'running'"
    )
    return [row[0] for row in rows]


async def mark_interrupted(
    conn: aiosqlite.Connection, run_ids: Sequence[str], at: datetime, why: str
) -> int:
    """Runs left ``running`` by a process that died become ``interrupted``."""
    if not run_ids:
        return 0
    marks = ",".join("?" * len(run_ids))
    cursor = await conn.execute(
        f"UPDATE sync_events SET status = 'interrupted', message = ?, finished_at = ? "
        f"WHERE kind = 'run' AND status = 'running' AND run_id IN ({marks})",
        (why, to_db(at), *run_ids),
    )
    return cursor.rowcount


async def save_listing_state(conn: aiosqlite.Connection, state: ListingState) -> None:
    """Written in the same transaction as the page it describes."""
    await conn.execute(
        "INSERT INTO listing_state (product_id, next_page, complete, full_listing, run_id, "
        "started_at, finished_at, last_full_listing_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (product_id) DO UPDATE SET next_page = excluded.next_page, "
        "complete = excluded.complete, full_listing = excluded.full_listing, "
        "run_id = excluded.run_id, started_at = excluded.started_at, "
        "finished_at = excluded.finished_at, last_full_listing_at = excluded.last_full_listing_at",
        (
            state.product_id,
            state.next_page,
            int(state.complete),
            int(state.full_listing),
            state.run_id,
            to_db(state.started_at),
            to_db(state.finished_at),
            to_db(state.last_full_listing_at),
        ),
    )


async def empty_mirror(conn: aiosqlite.Connection) -> None:
    """Delete every mirrored entity (the sync history stays): the first step of a nuke."""
    for table in ENTITY_TABLES:
        await conn.execute(f"DELETE FROM {table}")


def _listing(row: aiosqlite.Row) -> ListingState:
    return ListingState(
        product_id=row["product_id"],
        next_page=row["next_page"],
        complete=bool(row["complete"]),
        full_listing=bool(row["full_listing"]),
        run_id=row["run_id"],
        started_at=from_db(row["started_at"]),
        finished_at=from_db(row["finished_at"]),
        last_full_listing_at=from_db(row["last_full_listing_at"]),
    )


def _event(row: aiosqlite.Row) -> SyncEvent:
    at = from_db(row["at"])
    assert at is not None
    return SyncEvent(
        run_id=row["run_id"],
        at=at,
        kind=row["kind"],
        trigger=row["trigger"],
        status=row["status"],
        phase=row["phase"],
        message=row["message"],
        finished_at=from_db(row["finished_at"]),
        duration_seconds=row["duration_seconds"],
        items_synced=row["items_synced"],
        data=json.loads(row["data"]) if row["data"] is not None else None,
    )


class SyncStateRepository:
    """Reads of the sync history, listing states, and what the mirror holds."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def listing_states(self) -> dict[int, ListingState]:
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall("SELECT * FROM listing_state ORDER BY product_id")
        return {row["product_id"]: _listing(row) for row in rows}

    async def listing_state(self, product_id: int) -> ListingState | None:
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT * FROM listing_state WHERE product_id = ?", (product_id,)
                )
            )
        return _listing(rows[0]) if rows else None

    async def events(
        self, run_id: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[SyncEvent]:
        """Newest first, optionally one run's or one kind's."""
        where: list[str] = []
        params: list[Any] = []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT * FROM sync_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(sql, (*params, limit))
        return [_event(row) for row in rows]

    async def running_run_ids(self) -> list[str]:
        async with self._db.reader() as conn:
            return await running_run_ids(conn)

    async def counters(self) -> SyncCounters:
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT count(*), sum(status = 'success'), sum(status = 'failed'), "
                    "max(finished_at), max(CASE WHEN status = 'success' THEN finished_at END), "
                    "sum(status = 'partial'), sum(status = 'cancelled'), "
                    "sum(status = 'interrupted') "
                    "FROM sync_events WHERE kind = 'run' AND status != 'running'"
                )
            )
        total, ok, failed, last, last_ok, partial, cancelled, interrupted = rows[0]
        return SyncCounters(
            total or 0,
            ok or 0,
            failed or 0,
            from_db(last),
            from_db(last_ok),
            partial_runs=partial or 0,
            cancelled_runs=cancelled or 0,
            interrupted_runs=interrupted or 0,
        )

    async def period_stats(self, since: datetime) -> PeriodStats:
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT count(*), sum(status = 'success'), avg(duration_seconds), "
                    "sum(coalesce(items_synced, 0)) FROM sync_events "
                    "WHERE kind = 'run' AND status != 'running' AND at >= ?",
                    (to_db(since),),
                )
            )
        runs, ok, mean, items = rows[0]
        return PeriodStats(
            runs=runs or 0,
            success_rate=round((ok or 0) / runs, 4) if runs else None,
            mean_duration_seconds=round(mean, 3) if mean is not None else None,
            items_synced=items or 0,
        )

    async def counts(self) -> dict[str, int]:
        """Entities in the mirror that are not tombstoned."""
        counts: dict[str, int] = {}
        async with self._db.reader() as conn:
            for table in ("products", "features", "tests", "bugs"):
                rows = list(
                    await conn.execute_fetchall(
                        f"SELECT count(*) FROM {table} WHERE deleted_at IS NULL"
                    )
                )
                counts[table] = int(rows[0][0])
        return counts

    async def tests_fetched_before(self, product_id: int, before: datetime) -> list[int]:
        """Tests of the product, not tombstoned, last fetched before ``before``: after a full
        listing that began then, the ones it did not show."""
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM tests WHERE product_id = ? AND deleted_at IS NULL "
                "AND fetched_at < ?",
                (product_id, to_db(before)),
            )
        return [int(row[0]) for row in rows]

    async def tests_needing_bugs(
        self,
        product_ids: Sequence[int],
        since: datetime | None,
        *,
        stale_before: datetime,
        force: bool,
    ) -> list[int]:
        """Tests of these products whose bug lists should be fetched: all of them with
        ``force``; else those never fetched, open ones fetched before ``stale_before``, and
        final ones fetched before the test last changed. Newest first."""
        finals = tuple(sorted(FINAL_TEST_STATUSES))
        sql = (
            "SELECT id FROM tests WHERE deleted_at IS NULL "
            "AND product_id IN (SELECT value FROM json_each(?))"
        )
        params: list[Any] = [json.dumps(list(product_ids))]
        if since is not None:
            sql += " AND end_at >= ?"
            params.append(to_db(since))
        if not force:
            # A test that changed since its bugs were fetched (it closed, it moved to another
            # product, ...) has them fetched again, open or not; open tests also when stale.
            sql += (
                " AND (bugs_fetched_at IS NULL OR bugs_fetched_at < changed_at"
                f" OR (coalesce(status, '') NOT IN ({','.join('?' * len(finals))})"
                " AND bugs_fetched_at < ?))"
            )
            params.extend([*finals, to_db(stale_before)])
        sql += " ORDER BY end_at DESC, id DESC"  # newest tests first
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(sql, params)
        return [int(row[0]) for row in rows]
