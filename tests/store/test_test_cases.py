"""Test cases in the store: migration 9 on a mirror of version 8 (its data kept, the new tables
empty), a test's cases replaced whole by each write, tombstones following the test (and the
product), and a nuke emptying them."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from testio_mirror.settings import load_settings
from testio_mirror.store.exploratory_tests import tombstone_tests, write_tests
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import write_products
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import tombstone
from testio_mirror.store.test_cases import write_test_cases
from testio_mirror.upstream.models import ExploratoryTest, Product, TestCaseResult, TestCaseTest
from tests.helpers.store_data import STAMP_1, STAMP_2, STAMP_3

PRODUCT = {"id": 7, "name": "Legacy Shop", "sections": [], "sections_with_default": []}
TEST = {"id": 70, "title": "Checkout cases", "status": "running", "testing_type": None}
CASES = {
    "test_cases": [
        {"id": 1, "title": "Sign in", "steps": [{"id": 10, "description": "Open"}]},
        {"id": 2, "title": "Pay", "steps": [{"id": 20, "description": "Pay by card"}]},
    ]
}
RESULTS = [
    {"test_case_id": 1, "status": "passed", "tester": {"name": "ana"}, "steps": [{"id": 10}]},
    {
        "test_case_id": 2,
        "status": "failed",
        "tester": {"name": "bo"},
        "steps": [{"id": 20, "status": "failed", "comment": "declined"}],
        "executed_at": "2026-11-20T10:00:00+02:00",
    },
]


async def write_account(database: Database) -> None:
    async with database.transaction() as conn:
        await write_products(conn, [Product.from_wire(PRODUCT)], STAMP_1, complete=True)
        await write_tests(conn, [ExploratoryTest.from_wire(TEST)], STAMP_1, product_id=7)


async def write_cases(database: Database, stamp: str = STAMP_1) -> None:
    results = [TestCaseResult.from_wire(r) for r in RESULTS]
    async with database.transaction() as conn:
        await write_test_cases(conn, 70, 7, TestCaseTest.from_wire(CASES), results, stamp)


async def rows(conn: aiosqlite.Connection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in await conn.execute_fetchall(sql)]


async def test_migration_9_upgrades_a_version_8_mirror(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    old = await Database.open(path, target_version=8)
    try:
        await write_account(old)
        async with old.reader() as conn:
            tables = await rows(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")
        assert ("test_cases",) not in tables
    finally:
        await old.close()
    database = await Database.open(path, target_version=9)
    try:
        assert await database.schema_version() == 9
        async with database.reader() as conn:
            assert await rows(conn, "SELECT id, title FROM tests") == [(70, "Checkout cases")]
            for table in ("test_cases", "test_case_executions", "test_case_fetches"):
                assert await rows(conn, f"SELECT count(*) FROM {table}") == [(0,)]  # noqa: S608
        await write_cases(database)
        async with database.reader() as conn:
            assert await rows(conn, "SELECT id, title FROM test_cases ORDER BY position") == [
                (1, "Sign in"),
                (2, "Pay"),
            ]
            assert await rows(
                conn, "SELECT test_case_id, executed_at FROM test_case_executions"
            ) == [(1, None), (2, "2026-11-20T08:00:00.000000Z")]
            assert await rows(conn, "SELECT test_id, not_a_test_case FROM test_case_fetches") == [
                (70, 0)
            ]
    finally:
        await database.close()


async def test_a_write_replaces_the_lists_and_a_404_empties_them(db: Database) -> None:
    await write_account(db)
    await write_cases(db)
    async with db.transaction() as conn:
        await write_test_cases(conn, 70, 7, None, None, STAMP_2)
    async with db.reader() as conn:
        assert await rows(conn, "SELECT count(*) FROM test_cases") == [(0,)]
        assert await rows(conn, "SELECT count(*) FROM test_case_executions") == [(0,)]
        assert await rows(conn, "SELECT fetched_at, not_a_test_case FROM test_case_fetches") == [
            (STAMP_2, 1)
        ]


async def test_a_removed_test_takes_its_cases_along(db: Database) -> None:
    await write_account(db)
    await write_cases(db)
    async with db.transaction() as conn:
        await tombstone_tests(conn, [70], STAMP_2)
    async with db.reader() as conn:
        assert await rows(conn, "SELECT DISTINCT deleted_at FROM test_cases") == [(STAMP_2,)]
        assert await rows(conn, "SELECT DISTINCT deleted_at FROM test_case_executions") == [
            (STAMP_2,)
        ]
        # Forgotten: a test that comes back has its cases asked for again.
        assert await rows(conn, "SELECT count(*) FROM test_case_fetches") == [(0,)]
    await write_cases(db, STAMP_3)  # it came back: rows written again are live
    async with db.reader() as conn:
        assert await rows(conn, "SELECT count(*) FROM test_cases WHERE deleted_at IS NULL") == [
            (2,)
        ]


async def test_a_removed_product_takes_its_tests_cases_along(db: Database) -> None:
    await write_account(db)
    await write_cases(db)
    async with db.transaction() as conn:
        await tombstone(conn, "products", [7], STAMP_2)
    async with db.reader() as conn:
        assert await rows(conn, "SELECT DISTINCT deleted_at FROM test_cases") == [(STAMP_2,)]
        assert await rows(conn, "SELECT count(*) FROM test_case_fetches") == [(0,)]


async def test_a_nuke_empties_the_test_cases(tmp_path: Path) -> None:
    mirror = await Mirror.open(load_settings(mirror_home=tmp_path / "home"), None)
    try:
        await write_account(mirror.db)
        await write_cases(mirror.db)
        await mirror.empty()
        async with mirror.db.reader() as conn:
            for table in ("test_cases", "test_case_executions", "test_case_fetches"):
                assert await rows(conn, f"SELECT count(*) FROM {table}") == [(0,)]  # noqa: S608
    finally:
        await mirror.close()
