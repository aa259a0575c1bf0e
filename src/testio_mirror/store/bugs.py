"""Bugs: complete bug lists per test from sync, read-through by test, filters and statistics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite
import orjson

from testio_mirror.errors import OfflineError
from testio_mirror.store.bug_details import (
    check_field_keys,
    report_configuration_id,
    write_bug_details,
)
from testio_mirror.store.bug_filters import bug_where, flag
from testio_mirror.store.bug_stats import GROUPS, count_groups, stats_page
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.outbox_rows import KEEP_TRIAGE_SEEN, triage_text
from testio_mirror.store.outbox_sync import note_sync_conflicts
from testio_mirror.store.readthrough.repository import ReadThroughRepository, live
from testio_mirror.store.readthrough.rule import Local, fetch_in_time, read_through, stale_reason
from testio_mirror.store.records import (
    EVERY_BUG,
    Answer,
    BugFilter,
    BugRecord,
    Freshness,
    GroupBy,
    Page,
    StatsPage,
)
from testio_mirror.store.sqlite.cursor import cursors_after, next_cursor
from testio_mirror.store.sqlite.filters import newest
from testio_mirror.store.sqlite.testers_migration import author_key
from testio_mirror.store.sqlite.timefmt import from_db, required_from_db, to_db
from testio_mirror.store.sqlite.upsert import (
    WriteStats,
    canonical_json,
    chunks,
    hash_canonical,
    record_users,
    tombstone_missing,
    upsert,
)
from testio_mirror.store.testers import record_testers
from testio_mirror.triage import TriageState
from testio_mirror.upstream.bug_batches import bug_batches
from testio_mirror.upstream.errors import UpstreamError
from testio_mirror.upstream.models import FINAL_TEST_STATUSES, Bug, RejectReason

BUG_COLUMNS = (
    "id",
    "test_id",
    "product_id",
    "feature_id",
    "title",
    "severity",
    "status",
    "auto_accepted",
    "known",
    "actual_result",
    "expected_result",
    "steps",
    "reported_at",
    "exported_at",
    "author",
    "reject_reason",
    "raw",
    "content_hash",
    "triage",
    "triage_seen_at",
    "tester_id",
    "report_configuration_id",
)
MAX_LIMIT = 200
_FINAL = tuple(sorted(FINAL_TEST_STATUSES))
# Names next to ids, so an answer reads without a second lookup.
_NAMES = (
    "(SELECT title FROM tests WHERE tests.id = b.test_id) AS test_title, "
    "(SELECT title FROM features WHERE features.id = b.feature_id) AS feature_title, "
    "(SELECT name FROM products WHERE products.id = b.product_id) AS product_name, "
    "(SELECT json_group_array(json_array(f.key, f.value)) FROM bug_fields f "
    "WHERE f.bug_id = b.id) AS custom_fields"
)


def _row(
    bug: Bug,
    test_products: dict[int, int],
    reasons: list[RejectReason],
    triage: TriageState,
    fetched_at: str,
    testers: dict[str, int],
) -> tuple[Any, ...]:
    product_id = bug.product_id or None
    if product_id is None and bug.test_id is not None:
        product_id = test_products.get(bug.test_id)
    reason = bug.reject_reason(reasons)
    reason_key = reason.key if reason else None
    raw = canonical_json(bug.raw)
    tester = author_key(bug.author_name)
    return (
        bug.id,
        bug.test_id,
        product_id,
        bug.feature_id,
        bug.title,
        bug.severity,
        bug.status,
        flag(bug.auto_accepted),
        flag(bug.known),
        bug.actual_result,
        bug.expected_result,
        orjson.dumps(bug.steps).decode("utf-8"),
        to_db(bug.reported_at),
        to_db(bug.exported_at),
        bug.author_name,
        reason_key,
        raw,
        # The derived reason is part of the content: reasons learned later must fill it in.
        hash_canonical(raw, canonical_json(product_id), canonical_json(reason_key)),
        triage_text(triage),
        fetched_at,
        # Derived from the author (in raw, so in the hash): the tester of migration 8.
        None if tester is None else testers[tester],
        report_configuration_id(bug.raw),  # in raw too: derived, as tester_id is
    )


async def load_reject_reasons(conn: aiosqlite.Connection) -> list[RejectReason]:
    rows = await conn.execute_fetchall("SELECT raw FROM reject_reasons ORDER BY key")
    return [RejectReason.from_wire(json.loads(row[0])) for row in rows]


async def write_reject_reasons(
    conn: aiosqlite.Connection, reasons: Sequence[RejectReason], fetched_at: str
) -> None:
    await conn.executemany(
        "INSERT INTO reject_reasons (key, name, default_comment, raw, fetched_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET name = excluded.name, "
        "default_comment = excluded.default_comment, raw = excluded.raw, "
        "fetched_at = excluded.fetched_at",
        [(r.key, r.name, r.default_comment, canonical_json(r.raw), fetched_at) for r in reasons],
    )


async def write_bugs(
    conn: aiosqlite.Connection,
    bugs: Sequence[Bug],
    fetched_at: str,
    complete_for_tests: Sequence[int] | None = None,
    reasons: list[RejectReason] | None = None,
    *,
    from_upstream_read: bool = True,
) -> WriteStats:
    """Store bugs. ``complete_for_tests``: these are *all* the bugs of those tests, so their
    bugs missing here are tombstoned and the tests' bug lists are marked fetched. ``reasons``:
    the stored reject reasons, when the caller has them already (one load per sync, not per
    batch). A bug whose triage state changes gets ``triage_seen_at = fetched_at``; when it was
    read from TestIO (``from_upstream_read``; False for the answer to our own write) its live
    outbox changes are checked for a conflict (``outbox_sync.note_sync_conflicts``)."""
    # A bug that does not name its product takes its test's: look up only those tests.
    test_ids = sorted({b.test_id for b in bugs if b.test_id is not None and not b.product_id})
    test_products: dict[int, int] = {}
    for part in chunks(test_ids):
        marks = ",".join("?" * len(part))
        found = await conn.execute_fetchall(
            f"SELECT id, product_id FROM tests WHERE id IN ({marks})", tuple(part)
        )
        test_products.update({row[0]: row[1] for row in found})
    if reasons is None:
        reasons = await load_reject_reasons(conn)
    triage = {b.id: TriageState.of_bug(b.raw) for b in bugs}
    if from_upstream_read:
        await note_sync_conflicts(conn, triage, fetched_at)
    # One row per tester, upserted in this transaction (store/testers.py says why no race).
    testers = await record_testers(conn, ((b.author_name, to_db(b.reported_at)) for b in bugs))
    rows = [_row(b, test_products, reasons, triage[b.id], fetched_at, testers) for b in bugs]
    stats, written = await upsert(
        conn, "bugs", BUG_COLUMNS, rows, fetched_at, updates=KEEP_TRIAGE_SEEN
    )
    await write_bug_details(conn, {b.id: b.raw for b in bugs}, written)
    if complete_for_tests:
        stats.deleted = await tombstone_missing(
            conn,
            "bugs",
            [b.id for b in bugs],
            fetched_at,
            scope=("test_id", list(complete_for_tests)),
        )
        for part in chunks(list(complete_for_tests)):
            marks = ",".join("?" * len(part))
            await conn.execute(
                f"UPDATE tests SET bugs_fetched_at = ? WHERE id IN ({marks})",
                (fetched_at, *part),
            )
    people: list[tuple[str, str]] = []
    for bug in bugs:
        if bug.author_name:
            people.append((bug.author_name, "tester"))
        for comment in bug.comments:
            name = (comment.get("author") or {}).get("name")
            if name:
                people.append((name, "customer"))
    await record_users(conn, people, fetched_at)
    return stats


def _record(row: aiosqlite.Row, include_raw: bool) -> BugRecord:
    return BugRecord(
        id=row["id"],
        test_id=row["test_id"],
        product_id=row["product_id"],
        feature_id=row["feature_id"],
        title=row["title"],
        severity=row["severity"],
        status=row["status"],
        auto_accepted=None if row["auto_accepted"] is None else bool(row["auto_accepted"]),
        known=None if row["known"] is None else bool(row["known"]),
        actual_result=row["actual_result"],
        expected_result=row["expected_result"],
        steps=json.loads(row["steps"]),
        reported_at=from_db(row["reported_at"]),
        exported_at=from_db(row["exported_at"]),
        author=row["author"],
        reject_reason=row["reject_reason"],
        test_title=row["test_title"],
        feature_title=row["feature_title"],
        product_name=row["product_name"],
        deleted=row["deleted_at"] is not None,
        fetched_at=required_from_db(row["fetched_at"]),
        raw=json.loads(row["raw"]) if include_raw else None,
        report_configuration_id=row["report_configuration_id"],
        custom_fields=[(key, value) for key, value in json.loads(row["custom_fields"])],
    )


class BugRepository(ReadThroughRepository):
    """Bugs, read through by test: a test's bug list is re-fetched when stale."""

    async def get_bug(self, bug_id: int, include_raw: bool = False) -> Answer[BugRecord]:
        """One bug; re-fetched when its test is open and the copy is older than the TTL.

        Raises:
            NotFoundError: TestIO does not know the bug (a mirrored copy is tombstoned).
            RemovedError: the mirror holds the bug only as a tombstone.
        """
        answer = await read_through(
            ("bug", bug_id),
            self._policy,
            self._flights,
            lambda: self._load(bug_id, include_raw),
            self._online(lambda: self._refresh(bug_id)),
            on_gone=lambda: self._tombstone("bugs", bug_id),
            gate=self._gate,
        )
        return live(answer, f"bug {bug_id}")

    async def ensure_fresh(self, test_ids: Sequence[int]) -> Freshness:
        """Make the bug lists of these tests fresh (fetching the stale ones in batches) and say
        how fresh they are now. When TestIO fails, is known down or misses the read-through
        deadline, old copies are served marked stale (``rule.fetch_in_time``).

        Raises:
            OfflineError: some test's bugs were never fetched and no TestIO token is configured.
            UpstreamError: TestIO failed and some test's bugs were never fetched (no copy).
        """
        stale, never, oldest = await self._stale_tests(test_ids)
        if not stale:
            return self._policy.mirror(oldest, None) if oldest else self._policy.api(None)
        if self._client is None:
            if never:
                raise OfflineError(
                    f"bugs of test(s) {', '.join(map(str, never[:5]))} are not in the mirror "
                    "and no TestIO token is configured"
                )
            return self._policy.mirror(
                oldest, 0, "bugs of some tests are stale, and no TestIO token is configured"
            )
        try:
            await fetch_in_time(
                ("bugs of tests", tuple(stale)),
                self._flights,
                lambda: self._refresh_tests(stale),
                self._gate,
            )
        except UpstreamError as exc:
            if never:
                raise
            reason = stale_reason(exc, self._gate.health if self._gate else None)
            return self._policy.mirror(oldest, 0, reason)
        return self._policy.api(self._policy.clock())

    async def freshness(self, bug_filter: BugFilter) -> Freshness:
        """How current the bugs ``bug_filter`` chooses are, read through as ``stats`` does.

        Raises:
            OfflineError, UpstreamError: as ``ensure_fresh``, with ``test_ids``.
        """
        return await self._freshness(bug_filter)

    async def list_bugs(
        self,
        bug_filter: BugFilter = EVERY_BUG,
        *,
        limit: int = 50,
        cursor: str | None = None,
        include_raw: bool = False,
        include_deleted: bool = False,
    ) -> Page[BugRecord]:
        """The bugs ``bug_filter`` chooses, newest first (by ``reported_at``). With ``test_ids``
        their bug lists are read through first; otherwise the answer is the mirror as the last
        sync left it.

        Raises:
            CursorError: ``cursor`` is not one this mirror handed out.
            OfflineError, UpstreamError: as ``ensure_fresh``, with ``test_ids``.
        """
        limit = max(1, min(limit, MAX_LIMIT))
        freshness = await self._freshness(bug_filter)
        where = bug_where(bug_filter)
        if not include_deleted:
            where.add("b.deleted_at IS NULL")
        where.keyset("b.reported_at", "b.id", cursor)
        sql = (
            f"SELECT b.*, {_NAMES} FROM bugs b{where.sql}{newest('b.reported_at', 'b.id')} LIMIT ?"
        )
        async with self._db.reader() as conn:
            if bug_filter.field is not None:
                await check_field_keys(conn, [bug_filter.field])
            rows = list(await conn.execute_fetchall(sql, (*where.params, limit + 1)))
        items = [_record(r, include_raw) for r in rows[:limit]]
        return Page(
            items=items,
            next_cursor=next_cursor(rows, limit, "reported_at"),
            freshness=freshness,
            cursors=cursors_after(rows[:limit], "reported_at"),
        )

    async def counts_for_test(self, test_id: int) -> dict[str, dict[str, int]]:
        """``{"severity": {...}, "status": {...}}`` counts of a test's bugs in the mirror."""
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT coalesce(severity, 'unknown'), coalesce(status, 'unknown'), count(*) "
                "FROM bugs WHERE test_id = ? AND deleted_at IS NULL GROUP BY 1, 2",
                (test_id,),
            )
        severity: dict[str, int] = {}
        status: dict[str, int] = {}
        for row in rows:
            severity[row[0]] = severity.get(row[0], 0) + row[2]
            status[row[1]] = status.get(row[1], 0) + row[2]
        return {"severity": dict(sorted(severity.items())), "status": dict(sorted(status.items()))}

    async def stats(
        self,
        group_by: GroupBy,
        bug_filter: BugFilter = EVERY_BUG,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Answer[StatsPage]:
        """Counts by status and the acceptance rate of the bugs ``bug_filter`` chooses, grouped
        (``store/bug_stats.py``): ``limit`` groups after ``cursor`` (every group when None) and
        the totals over all of them. Read through as ``list_bugs``.

        Raises:
            ValueError: ``group_by`` is not one of ``GroupBy``.
            CursorError: ``cursor`` is not the next_cursor of a page of this grouping.
            OfflineError, UpstreamError: as ``ensure_fresh``, with ``test_ids``.
        """
        if group_by not in GROUPS:
            raise ValueError(f"group_by must be one of: {', '.join(GROUPS)}")
        freshness = await self._freshness(bug_filter)
        where = bug_where(bug_filter)
        where.add("b.deleted_at IS NULL")
        async with self._db.reader() as conn:
            groups = await count_groups(conn, group_by, where, by_index=not bug_filter.test_ids)
        return Answer(value=stats_page(groups, group_by, limit, cursor), freshness=freshness)

    async def _stale_tests(
        self, test_ids: Sequence[int]
    ) -> tuple[list[int], list[int], datetime | None]:
        """(tests whose bugs need fetching, those never fetched at all, oldest fetch time)."""
        stale: list[int] = []
        never: list[int] = []
        oldest: datetime | None = None
        wanted = list(dict.fromkeys(test_ids))
        known: dict[int, aiosqlite.Row] = {}
        async with self._db.reader() as conn:
            for part in chunks(wanted):
                marks = ",".join("?" * len(part))
                rows = await conn.execute_fetchall(
                    f"SELECT id, status, changed_at, bugs_fetched_at FROM tests "
                    f"WHERE id IN ({marks})",
                    tuple(part),
                )
                known.update({row["id"]: row for row in rows})
        for test_id in wanted:
            row = known.get(test_id)
            fetched = from_db(row["bugs_fetched_at"]) if row else None
            if row is None or fetched is None:
                stale.append(test_id)
                never.append(test_id)
                continue
            if oldest is None or fetched < oldest:
                oldest = fetched
            if row["status"] in FINAL_TEST_STATUSES:
                # Final tests' bugs stop changing, once fetched after the test last changed.
                if row["bugs_fetched_at"] < row["changed_at"]:
                    stale.append(test_id)
            elif not self._policy.is_fresh(fetched, self._policy.open_test_ttl):
                stale.append(test_id)
        return stale, never, oldest

    async def _refresh_tests(self, test_ids: list[int]) -> None:
        assert self._client is not None
        client = self._client
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM tests WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(test_ids),),
            )
        unknown = sorted(set(test_ids) - {row[0] for row in rows})
        if unknown:
            # A bug list needs its test in the mirror (product, status, freshness of the list).
            tests = await asyncio.gather(*(client.test(test_id) for test_id in unknown))
            async with self._db.transaction() as conn:
                await write_tests(conn, tests, self._policy.stamp())
        async for batch in bug_batches(client, test_ids):
            if batch.error is not None:
                raise batch.error
            fetched_at = self._policy.stamp()
            async with self._db.transaction() as conn:
                await write_bugs(conn, batch.bugs, fetched_at, complete_for_tests=batch.test_ids)

    async def _freshness(self, bug_filter: BugFilter) -> Freshness:
        """Bugs of given tests are read through; any other choice is as fresh as the sync."""
        if bug_filter.test_ids:
            return await self.ensure_fresh(bug_filter.test_ids)
        return await self._collection_freshness(bug_filter.product_id)

    async def _collection_freshness(self, product_id: int | None) -> Freshness:
        where = "deleted_at IS NULL"
        params: tuple[Any, ...] = ()
        if product_id is not None:
            where += " AND product_id = ?"
            params = (product_id,)
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT count(*), sum(bugs_fetched_at IS NULL), min(bugs_fetched_at) "
                    f"FROM tests WHERE {where}",
                    params,
                )
            )
        total, missing, oldest = rows[0][0], rows[0][1] or 0, rows[0][2]
        if total == 0:
            return self._policy.mirror(None, None, "no tests in the mirror: run sync_data")
        if missing:
            return self._policy.mirror(
                from_db(oldest),
                None,
                f"bugs of {missing} of {total} tests were never fetched: run sync_data "
                "with include_bugs, or ask by test_ids",
            )
        return self._policy.mirror(from_db(oldest), self._policy.product_ttl)

    async def _load(self, bug_id: int, include_raw: bool) -> Local[BugRecord] | None:
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT b.*, {_NAMES}, t.status AS test_status, "
                    "t.changed_at AS test_changed_at "
                    "FROM bugs b LEFT JOIN tests t ON t.id = b.test_id WHERE b.id = ?",
                    (bug_id,),
                )
            )
        if not rows:
            return None
        row = rows[0]
        record = _record(row, include_raw)
        ttl = self._policy.test_ttl(row["test_status"])
        if ttl is None and row["fetched_at"] < row["test_changed_at"]:
            ttl = 0  # fetched before its test last changed (closed): it may have changed since
        return Local(record, record.fetched_at, ttl)

    async def _refresh(self, bug_id: int) -> None:
        assert self._client is not None
        bug = await self._client.bug(bug_id)
        fetched_at = self._policy.stamp()
        async with self._db.transaction() as conn:
            await write_bugs(conn, [bug], fetched_at)
