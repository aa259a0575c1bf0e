"""Sync bookkeeping: the event log of sync runs and where each product's listing stands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from testio_mirror.store.db import Database
from testio_mirror.store.timefmt import from_db, to_db


@dataclass(frozen=True)
class SyncEvent:
    """One line of a sync run's history."""

    run_id: str
    at: datetime
    kind: str  # started, phase, progress, completed, warning, error, interrupted, lock_reclaimed
    trigger: str | None = None
    status: str | None = None  # running, success, partial, failed, cancelled, interrupted
    phase: str | None = None
    message: str | None = None
    duration_seconds: float | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class ListingState:
    """Where a product's test listing stands."""

    product_id: int
    next_page: int  # the page a resumed listing asks for next
    complete: bool  # the last listing reached the end
    full_listing: bool  # the listing in progress (or last) is a full one, not incremental
    run_id: str | None
    started_at: datetime | None
    finished_at: datetime | None  # when a listing last reached the end
    last_full_listing_at: datetime | None


async def add_event(conn: aiosqlite.Connection, event: SyncEvent) -> None:
    await conn.execute(
        "INSERT INTO sync_events (run_id, at, kind, trigger, status, phase, message, "
        "duration_seconds, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.run_id,
            to_db(event.at),
            event.kind,
            event.trigger,
            event.status,
            event.phase,
            event.message,
            event.duration_seconds,
            json.dumps(event.data, ensure_ascii=False) if event.data is not None else None,
        ),
    )


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
        duration_seconds=row["duration_seconds"],
        data=json.loads(row["data"]) if row["data"] is not None else None,
    )


class SyncStateRepository:
    """Reads of the sync event log and the listing states."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def listing_states(self) -> dict[int, ListingState]:
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall("SELECT * FROM listing_state ORDER BY product_id")
        return {row["product_id"]: _listing(row) for row in rows}

    async def events(self, run_id: str | None = None, limit: int = 100) -> list[SyncEvent]:
        """Newest first; only one run's when ``run_id`` is given."""
        sql = "SELECT * FROM sync_events"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        sql += " ORDER BY id DESC LIMIT ?"
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(sql, (*params, limit))
        return [_event(row) for row in rows]
