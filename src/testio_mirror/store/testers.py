"""Testers (the authors of bugs): kept one row per tester by every bug write, and their records.

The write side (``record_testers``) runs inside ``write_bugs``' transaction: one multi-row
``INSERT ... ON CONFLICT (key) DO UPDATE`` on the UNIQUE normalised name, then one read of the
ids. SQLite has one writer at a time and the constraint holds whatever the interleaving, so
concurrent syncs and read-throughs of overlapping bugs, in one process or many, leave exactly one
row per tester (migration 8, ``sqlite/testers_migration.py``).

The read side (``TesterRepository.list_testers``) counts a scope's live bugs per tester through
the ``bugs_by_tester`` covering index, then answers a page of them in the order asked for.

Example::

    page = await mirror.testers.list_testers(product_id=7, sort_by="acceptance_rate", limit=10)
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import aiosqlite

from testio_mirror.store.records import Answer, BugFilter, Freshness
from testio_mirror.store.sqlite.cursor import decode_position, encode_position
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.filters import Where
from testio_mirror.store.sqlite.testers_migration import author_key
from testio_mirror.store.sqlite.timefmt import from_db
from testio_mirror.store.sqlite.upsert import chunks, insert_rows
from testio_mirror.upstream.models import FINAL_TEST_STATUSES

if TYPE_CHECKING:
    from testio_mirror.store.bugs import BugRepository

TesterSort = Literal["bugs", "critical", "acceptance_rate", "last_activity", "name"]
TESTER_SORTS: tuple[TesterSort, ...] = typing.get_args(TesterSort)
MAX_LIMIT = 200
# Open tests whose bug lists a listing reads through first: their bugs still move; a final
# test's stop once fetched. Bounded, as every read-through is (OnlyTests holds 200).
_MOST_OPEN_TESTS = 200
_FINAL = tuple(sorted(FINAL_TEST_STATUSES))
# ``min``/``max`` of SQLite are NULL when either side is: coalesce keeps the known side.
_UPSERT = (
    "ON CONFLICT (key) DO UPDATE SET "
    "first_seen_at = coalesce(min(testers.first_seen_at, excluded.first_seen_at), "
    "testers.first_seen_at, excluded.first_seen_at), "
    "last_activity_at = coalesce(max(testers.last_activity_at, excluded.last_activity_at), "
    "testers.last_activity_at, excluded.last_activity_at) "
    "WHERE excluded.first_seen_at < coalesce(testers.first_seen_at, '~') "
    "OR excluded.last_activity_at > coalesce(testers.last_activity_at, '')"
)


async def record_testers(
    conn: aiosqlite.Connection, authors: Iterable[tuple[str | None, str | None]]
) -> dict[str, int]:
    """Upsert the testers of ``(author name, reported_at as stored)`` pairs, in the caller's
    transaction; returns ``author_key(name) -> tester id`` for every named author."""
    seen: dict[str, list[Any]] = {}  # key -> [name, earliest, latest]
    for name, reported_at in authors:
        key = author_key(name)
        if key is None or name is None:
            continue
        known = seen.get(key)
        if known is None:
            seen[key] = [name.strip(), reported_at, reported_at]
        elif reported_at is not None:
            known[1] = reported_at if known[1] is None else min(known[1], reported_at)
            known[2] = reported_at if known[2] is None else max(known[2], reported_at)
    if not seen:
        return {}
    keys = sorted(seen)
    await insert_rows(
        conn,
        "testers",
        ("key", "name", "first_seen_at", "last_activity_at"),
        [(key, *seen[key]) for key in keys],
        conflict=_UPSERT,
    )
    ids: dict[str, int] = {}
    for part in chunks(keys):
        marks = ",".join("?" * len(part))
        rows = await conn.execute_fetchall(
            f"SELECT key, id FROM testers WHERE key IN ({marks})", tuple(part)
        )
        ids.update({row[0]: row[1] for row in rows})
    return ids


@dataclass(frozen=True)
class TesterStats:
    """One tester's bugs in a scope."""

    id: int
    name: str
    bugs: int
    by_severity: dict[str, int]
    accepted: int
    rejected: int
    forwarded: int
    last_activity_at: datetime | None

    @property
    def acceptance_rate(self) -> float | None:
        """accepted / (accepted + rejected), to four decimals; None when none was decided."""
        decided = self.accepted + self.rejected
        return round(self.accepted / decided, 4) if decided else None


@dataclass(frozen=True)
class TesterPage:
    """A page of testers in the order asked for, and what all of them add up to."""

    testers: list[TesterStats]
    tester_count: int
    bugs: int
    next_cursor: str | None
    cursors: list[str] = field(default_factory=list)


class TesterRepository:
    """Testers and their bugs, counted from the mirror after the scope's open tests' bug lists
    are read through (``BugRepository.ensure_fresh``)."""

    def __init__(self, db: Database, bugs: BugRepository) -> None:
        self._db = db
        self._bugs = bugs

    async def list_testers(
        self,
        *,
        product_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        sort_by: TesterSort = "bugs",
        limit: int = 20,
        cursor: str | None = None,
    ) -> Answer[TesterPage]:
        """Per tester, the live bugs they reported in the scope (``since`` included, ``until``
        not, by report date): counts by severity and status, acceptance rate, last report.
        ``sort_by``: most bugs first (``bugs``), most critical ones, best acceptance rate (none
        decided last), latest activity, or by ``name``; ties go by name.

        Raises:
            ValueError: ``sort_by`` is not one of ``TESTER_SORTS``.
            CursorError: ``cursor`` is not the next_cursor of a listing in this order.
            OfflineError, UpstreamError: as ``BugRepository.ensure_fresh``.
        """
        if sort_by not in TESTER_SORTS:
            raise ValueError(f"sort_by must be one of: {', '.join(TESTER_SORTS)}")
        scope = f"testers:{sort_by}"
        start = decode_position(cursor, scope) if cursor else 0
        limit = max(1, min(limit, MAX_LIMIT))
        freshness = await self._read_through(product_id, since, until)
        where = Where()
        where.add("b.deleted_at IS NULL")
        where.add("b.tester_id IS NOT NULL")
        where.equal("b.product_id", product_id)
        where.since("b.reported_at", since)
        where.until("b.reported_at", until)
        async with self._db.reader() as conn:
            # The partial covering index: counting never reads a bug row (about 1 KB each).
            rows = await conn.execute_fetchall(
                "SELECT b.tester_id, b.severity, b.status, count(*) AS n, "
                f"max(b.reported_at) AS last FROM bugs b INDEXED BY bugs_by_tester{where.sql} "
                "GROUP BY b.tester_id, b.severity, b.status",
                where.params,
            )
            names = await _names(conn, sorted({row[0] for row in rows}))
        ordered = _sorted(_fold(rows, names), sort_by)
        shown = ordered[start : start + limit]
        end = start + len(shown)
        page = TesterPage(
            testers=shown,
            tester_count=len(ordered),
            bugs=sum(t.bugs for t in ordered),
            next_cursor=encode_position(scope, end) if end < len(ordered) else None,
            cursors=[encode_position(scope, start + i + 1) for i in range(len(shown))],
        )
        return Answer(value=page, freshness=freshness)

    async def _read_through(
        self, product_id: int | None, since: datetime | None, until: datetime | None
    ) -> Freshness:
        """Fetch the stale bug lists of the scope's open tests (those fetched before: the rest
        is the sync's), then say how current the scope's bugs are: stale with the reason when
        that fetch failed, else as of the oldest bug list of the scope (as ``bug_stats``)."""
        where = Where()
        where.add("deleted_at IS NULL")
        where.add("bugs_fetched_at IS NOT NULL")
        where.add(f"status NOT IN ({','.join('?' * len(_FINAL))})", *_FINAL)
        where.equal("product_id", product_id)
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT id FROM tests{where.sql} ORDER BY end_at DESC, id DESC LIMIT ?",
                (*where.params, _MOST_OPEN_TESTS),
            )
        open_tests = [int(row[0]) for row in rows]
        if open_tests:
            opened = await self._bugs.ensure_fresh(open_tests)
            if opened.stale:
                return opened
        scope = BugFilter(product_id=product_id, since=since, until=until)
        return await self._bugs.freshness(scope)


async def _names(conn: aiosqlite.Connection, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await conn.execute_fetchall(
        "SELECT id, name FROM testers WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(ids)),),
    )
    return {int(row[0]): str(row[1]) for row in rows}


def _fold(rows: Iterable[aiosqlite.Row], names: dict[int, str]) -> list[TesterStats]:
    """One ``TesterStats`` per tester from rows of (tester, severity, status, count, latest)."""
    parts: dict[int, dict[str, Any]] = {}
    for tester_id, severity, status, count, last in rows:
        part = parts.setdefault(tester_id, {"bugs": 0, "severity": {}, "status": {}, "last": None})
        part["bugs"] += count
        sev = severity or "unknown"
        part["severity"][sev] = part["severity"].get(sev, 0) + count
        part["status"][status] = part["status"].get(status, 0) + count
        if last is not None and (part["last"] is None or last > part["last"]):
            part["last"] = last
    return [
        TesterStats(
            id=tester_id,
            name=names.get(tester_id, ""),
            bugs=part["bugs"],
            by_severity=dict(sorted(part["severity"].items())),
            accepted=part["status"].get("accepted", 0),
            rejected=part["status"].get("rejected", 0),
            forwarded=part["status"].get("forwarded", 0),
            last_activity_at=from_db(part["last"]),
        )
        for tester_id, part in parts.items()
    ]


def _sorted(testers: list[TesterStats], sort_by: TesterSort) -> list[TesterStats]:
    """``testers`` in the order of ``sort_by``: the largest first, ties by name then id (two
    stable sorts: by name, then by the measure, largest first)."""
    ordered = sorted(testers, key=lambda t: (author_key(t.name) or "", t.id))
    if sort_by == "bugs":
        ordered.sort(key=lambda t: t.bugs, reverse=True)
    elif sort_by == "critical":
        ordered.sort(key=lambda t: (t.by_severity.get("critical", 0), t.bugs), reverse=True)
    elif sort_by == "acceptance_rate":
        ordered.sort(
            key=lambda t: (
                t.acceptance_rate is not None,
                t.acceptance_rate or 0.0,
                t.accepted + t.rejected,
            ),
            reverse=True,
        )
    elif sort_by == "last_activity":
        ordered.sort(
            key=lambda t: (t.last_activity_at is not None, t.last_activity_at or datetime.min),
            reverse=True,
        )
    return ordered
