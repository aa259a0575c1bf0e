"""Exploratory tests: writes from listings and detail fetches, filtered and paged reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.readthrough.repository import ReadThroughRepository, live
from testio_mirror.store.readthrough.rule import Local, read_through
from testio_mirror.store.records import Answer, ExploratoryTestRecord, Freshness, Page
from testio_mirror.store.sqlite.cursor import cursors_after, next_cursor
from testio_mirror.store.sqlite.filters import Where, newest
from testio_mirror.store.sqlite.idlists import ids_from_group_concat
from testio_mirror.store.sqlite.timefmt import from_db, required_from_db, to_db
from testio_mirror.store.sqlite.upsert import (
    WriteStats,
    canonical_json,
    chunks,
    hash_canonical,
    insert_rows,
    record_users,
    tombstone,
    upsert,
)
from testio_mirror.upstream.models import ExploratoryTest

TEST_COLUMNS = (
    "id",
    "product_id",
    "section_id",
    "title",
    "status",
    "testing_type",
    "goal",
    "instructions",
    "out_of_scope",
    "start_at",
    "end_at",
    "review_status",
    "created_by",
    "submitted_by",
    "raw",
    "content_hash",
)
MAX_LIMIT = 200
_PRODUCT_NAME = "(SELECT name FROM products WHERE products.id = tests.product_id) AS product_name"
# A test's features ride along with its row (one statement, one trip to the reader's thread).
_FEATURE_IDS = (
    "(SELECT group_concat(feature_id) FROM test_features WHERE test_id = tests.id) AS feature_ids"
)


def _row(product_id: int, test: ExploratoryTest) -> tuple[Any, ...]:
    raw = canonical_json(test.raw)
    # Listings leave out "product" and the detail has it: the same test must hash the same.
    if "product" in test.raw:
        content = canonical_json({k: v for k, v in test.raw.items() if k != "product"})
    else:
        content = raw
    return (
        test.id,
        product_id,
        test.section_id,
        test.title,
        test.status,
        test.testing_type,
        test.goal,
        test.instructions,
        test.out_of_scope,
        to_db(test.start_at),
        to_db(test.end_at),
        test.review_status,
        test.created_by,
        test.submitted_by,
        raw,
        hash_canonical(content, canonical_json(product_id)),
    )


async def write_tests(
    conn: aiosqlite.Connection,
    tests: Sequence[ExploratoryTest],
    fetched_at: str,
    product_id: int | None = None,
) -> WriteStats:
    """Store tests (one listing page, or one detail). ``product_id`` is the listing's product,
    used when a test does not name its own.

    Raises:
        ValueError: a test names no product and none was given.
    """
    rows = []
    for test in tests:
        owner = test.product_id or product_id
        if owner is None:
            raise ValueError(f"test {test.id} names no product")
        rows.append(_row(owner, test))
    stats, written = await upsert(conn, "tests", TEST_COLUMNS, rows, fetched_at)
    if written:
        by_id = {t.id: t for t in tests}
        for part in chunks(written):
            marks = ",".join("?" * len(part))
            await conn.execute(f"DELETE FROM test_features WHERE test_id IN ({marks})", part)
        await insert_rows(
            conn,
            "test_features",
            ("test_id", "feature_id", "test_feature_id", "title"),
            [
                (test_id, f["feature_id"], f.get("id"), f.get("title"))
                for test_id in written
                for f in by_id[test_id].features
                if f.get("feature_id") is not None
            ],
            verb="INSERT OR IGNORE",
        )
    people = [(t.created_by, "customer") for t in tests] + [
        (t.submitted_by, "customer") for t in tests
    ]
    await record_users(conn, [(name, role) for name, role in people if name], fetched_at)
    return stats


async def tombstone_tests(
    conn: aiosqlite.Connection, test_ids: Sequence[int], deleted_at: str
) -> int:
    """These tests are gone (TestIO answered 404 for each); returns how many were marked."""
    return await tombstone(conn, "tests", test_ids, deleted_at)


def _record(row: aiosqlite.Row, include_raw: bool) -> ExploratoryTestRecord:
    return ExploratoryTestRecord(
        id=row["id"],
        product_id=row["product_id"],
        product_name=row["product_name"],
        section_id=row["section_id"],
        title=row["title"],
        status=row["status"],
        testing_type=row["testing_type"],
        goal=row["goal"],
        instructions=row["instructions"],
        out_of_scope=row["out_of_scope"],
        start_at=from_db(row["start_at"]),
        end_at=from_db(row["end_at"]),
        review_status=row["review_status"],
        created_by=row["created_by"],
        submitted_by=row["submitted_by"],
        feature_ids=ids_from_group_concat(row["feature_ids"]),
        deleted=row["deleted_at"] is not None,
        fetched_at=required_from_db(row["fetched_at"]),
        bugs_fetched_at=from_db(row["bugs_fetched_at"]),
        raw=json.loads(row["raw"]) if include_raw else None,
    )


class ExploratoryTestRepository(ReadThroughRepository):
    """Exploratory tests."""

    async def get_test(
        self, test_id: int, include_raw: bool = False
    ) -> Answer[ExploratoryTestRecord]:
        """One test: archived and cancelled ones from the mirror forever, open ones re-fetched
        once older than the open-test TTL.

        Raises:
            NotFoundError: TestIO does not know the test (a mirrored copy is tombstoned).
            RemovedError: the mirror holds the test only as a tombstone.
        """
        answer = await read_through(
            ("test", test_id),
            self._policy,
            self._flights,
            lambda: self._load(test_id, include_raw),
            self._online(lambda: self._refresh(test_id)),
            on_gone=lambda: self._tombstone("tests", test_id),
            gate=self._gate,
        )
        return live(answer, f"test {test_id}")

    async def list_tests(
        self,
        *,
        product_id: int | None = None,
        statuses: Sequence[str] | None = None,
        testing_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> Page[ExploratoryTestRecord]:
        """Tests newest first (by ``end_at``), filtered; ``since``/``until`` bound ``end_at``.

        Raises:
            CursorError: ``cursor`` is not one this mirror handed out.
        """
        limit = max(1, min(limit, MAX_LIMIT))
        where = Where()
        if not include_deleted:
            where.add("deleted_at IS NULL")
        where.equal("product_id", product_id)
        where.among("status", statuses)
        where.equal("testing_type", testing_type)
        where.since("end_at", since)
        where.until("end_at", until)
        where.keyset("end_at", "id", cursor)
        query = (
            f"SELECT *, {_PRODUCT_NAME}, {_FEATURE_IDS} FROM tests{where.sql}{newest('end_at')} "
            "LIMIT ?"
        )
        async with self._db.reader() as conn:
            rows = list(await conn.execute_fetchall(query, (*where.params, limit + 1)))
            freshness = await listing_freshness(conn, self._policy, product_id)
        items = [_record(r, False) for r in rows[:limit]]
        return Page(
            items=items,
            next_cursor=next_cursor(rows, limit, "end_at"),
            freshness=freshness,
            cursors=cursors_after(rows[:limit], "end_at"),
        )

    async def _load(self, test_id: int, include_raw: bool) -> Local[ExploratoryTestRecord] | None:
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT *, {_PRODUCT_NAME}, {_FEATURE_IDS} FROM tests WHERE id = ?",
                    (test_id,),
                )
            )
        if not rows:
            return None
        record = _record(rows[0], include_raw)
        return Local(record, record.fetched_at, self._policy.test_ttl(record.status))

    async def _refresh(self, test_id: int) -> None:
        assert self._client is not None
        test = await self._client.test(test_id)
        fetched_at = self._policy.stamp()
        async with self._db.transaction() as conn:
            await write_tests(conn, [test], fetched_at)


async def listing_freshness(
    conn: aiosqlite.Connection, policy: FreshnessPolicy, product_id: int | None
) -> Freshness:
    """How current a list of tests is: as of the oldest last complete listing among the products
    it covers; stale when one was never completely listed or that listing is older than the
    product TTL."""
    query = (
        "SELECT p.id, l.finished_at, l.complete FROM products p "
        "LEFT JOIN listing_state l ON l.product_id = p.id WHERE p.deleted_at IS NULL"
    )
    params: tuple[Any, ...] = ()
    if product_id is not None:
        query += " AND p.id = ?"
        params = (product_id,)
    rows = list(await conn.execute_fetchall(query, params))
    if not rows:
        return policy.mirror(None, None, "the product was never synced: run sync_data")
    unlisted = [r[0] for r in rows if r[1] is None]
    if unlisted:
        shown = ", ".join(str(p) for p in unlisted[:5])
        return policy.mirror(
            None, None, f"tests of product(s) {shown} were never fully listed: run sync_data"
        )
    oldest = min(from_db(r[1]) for r in rows if r[1] is not None)  # type: ignore[type-var]
    return policy.mirror(oldest, policy.product_ttl)
