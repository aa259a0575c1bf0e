"""Migrations: a new file reaches the latest schema, re-running is a no-op, every older version
upgrades to exactly the fresh schema with its data (and search index) intact, the statement
splitter, and two opens of one new file at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.products import write_products
from testio_mirror.store.search import SearchRepository
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    SEARCH,
    migrate,
    statements,
)
from testio_mirror.upstream.models import Bug, ExploratoryTest, Product
from tests.helpers.store_data import (
    STAMP_1,
    STAMP_2,
    close_stray_connections,
    column_by_id,
    schema_of,
    write_bugs_before_outbox,
)

TABLES = {
    "products",
    "sections",
    "features",
    "tests",
    "test_features",
    "bugs",
    "reject_reasons",
    "users",
    "collection_fetches",
    "sync_events",
    "listing_state",
    "search_index",
    "changes",
    "change_events",
}
ROUNDS = 60
PRODUCT = {"id": 7, "name": "Legacy Shop", "sections": [], "sections_with_default": []}
TEST = {"id": 70, "title": "Zeppelin checkout", "goal": "Find quokka bugs", "status": "archived"}
BUG = {
    "id": 700,
    "title": "Wombat button overlaps",
    "actual_result": "The narwhal banner hides it.",
    "test": {"id": 70},
    "product": {"id": 7},
    "author": {"name": "tester_ana"},
}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "mirror.db"


@pytest.fixture
async def fresh_schema(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    database = await Database.open(tmp_path / "fresh" / "mirror.db")
    try:
        async with database.reader() as conn:
            return await schema_of(conn)
    finally:
        await database.close()


async def test_a_new_file_reaches_the_latest_schema(path: Path) -> None:
    database = await Database.open(path)
    try:
        assert LATEST_VERSION == len(MIGRATIONS) >= 3
        assert await database.schema_version() == LATEST_VERSION
        async with database.reader() as conn:
            names = {name for kind, name, _ in await schema_of(conn) if kind == "table"}
        assert names >= TABLES
    finally:
        await database.close()


async def test_migrating_twice_changes_nothing(path: Path) -> None:
    database = await Database.open(path)
    async with database.reader() as conn:
        before = await schema_of(conn)
    await database.close()
    database = await Database.open(path)
    try:
        # And once more on the open writer: every migration is skipped.
        assert await migrate(database._writer, MIGRATIONS) == LATEST_VERSION
        async with database.reader() as conn:
            assert await schema_of(conn) == before
        assert await database.schema_version() == LATEST_VERSION
    finally:
        await database.close()


async def write_sample(database: Database) -> None:
    """A product, a test and a bug, as every version since the first can hold them."""
    async with database.transaction() as conn:
        await write_products(conn, [Product.from_wire(PRODUCT)], STAMP_1, complete=True)
        await write_tests(conn, [ExploratoryTest.from_wire(TEST)], STAMP_1, product_id=7)
        await write_bugs_before_outbox(conn, [Bug.from_wire(BUG)], STAMP_1, [70])


@pytest.mark.parametrize("version", range(LATEST_VERSION))
async def test_every_older_version_upgrades_to_the_fresh_schema(
    path: Path, version: int, fresh_schema: list[tuple[str, str, str | None]]
) -> None:
    old = await Database.open(path, target_version=version)
    try:
        assert await old.schema_version() == version
        if version >= 1:
            await write_sample(old)
    finally:
        await old.close()

    database = await Database.open(path)
    try:
        assert await database.schema_version() == LATEST_VERSION
        async with database.reader() as conn:
            assert await schema_of(conn) == fresh_schema
            if version >= 1:
                assert await column_by_id(conn, "products", "name") == {7: "Legacy Shop"}
                assert await column_by_id(conn, "tests", "title") == {70: "Zeppelin checkout"}
                assert await column_by_id(conn, "bugs", "title") == {700: "Wombat button overlaps"}
                assert await column_by_id(conn, "tests", "bugs_fetched_at") == {70: STAMP_1}
        search = SearchRepository(database)
        expected = {"zeppelin": ("test", 70), "quokka": ("test", 70), "wombat": ("bug", 700)}
        expected["narwhal"] = ("bug", 700)
        for word, (kind, entity_id) in expected.items():
            hits = await search.search(word)
            found = [(hit.kind, hit.id) for hit in hits]
            assert found == ([(kind, entity_id)] if version >= 1 else [])
            if version >= 1:
                assert hits[0].product_id == 7
        # Rows written after the upgrade are indexed by the triggers too.
        async with database.transaction() as conn:
            renamed = {**BUG, "title": "Platypus button overlaps"}
            await write_bugs(conn, [Bug.from_wire(renamed)], STAMP_1)
        assert [hit.id for hit in await search.search("platypus")] == [700]
        assert await search.search("wombat") == []
    finally:
        await database.close()


def test_statements_split_trigger_bodies() -> None:
    search = statements(SEARCH)
    triggers = [s for s in search if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 9
    for trigger in triggers:
        assert trigger.endswith("END;")
        assert trigger.count("BEGIN") == 1
        assert sqlite3.complete_statement(trigger)
    assert search[0].startswith("CREATE VIRTUAL TABLE search_index")
    assert sum(s.startswith("INSERT INTO search_index") for s in search) == 3
    assert len(search) == 13
    for script in MIGRATIONS:
        for statement in statements(script):
            assert sqlite3.complete_statement(statement)
            assert not statement.startswith("--")


def test_statements_skip_comments_and_blank_lines() -> None:
    script = "\n-- a note\n\nCREATE TABLE a (x);\n  -- another\nCREATE TABLE b (\n  y\n);\n"
    assert statements(script) == ["CREATE TABLE a (x);", "CREATE TABLE b (\n  y\n);"]
    body = "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  DELETE FROM b;\n  DELETE FROM c;\nEND;\n"
    assert statements(body) == [body.strip()]


@pytest.mark.parametrize(
    "script",
    [
        "CREATE TABLE a (x);\nCREATE TABLE b (",
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  DELETE FROM b;\n",
        "SELECT 1",
    ],
)
def test_statements_refuse_an_incomplete_statement(script: str) -> None:
    with pytest.raises(ValueError, match="incomplete"):
        statements(script)


async def test_two_opens_of_a_new_file_at_once(tmp_path: Path) -> None:
    # The race is in the first moments of a new file, so it is run many times over.
    try:
        for round_number in range(ROUNDS):
            path = tmp_path / f"home-{round_number}" / "mirror.db"
            results = await asyncio.wait_for(
                asyncio.gather(Database.open(path), Database.open(path), return_exceptions=True),
                timeout=15,
            )
            opened = [r for r in results if isinstance(r, Database)]
            try:
                failures = [repr(r) for r in results if not isinstance(r, Database)]
                assert failures == [], f"round {round_number}"
                schemas = []
                for database in opened:
                    assert await database.schema_version() == LATEST_VERSION
                    async with database.reader() as conn:
                        schemas.append(await schema_of(conn))
                assert schemas[0] == schemas[1]
                assert {name for kind, name, _ in schemas[0] if kind == "table"} >= TABLES
            finally:
                for database in opened:
                    await database.close()
    finally:
        await close_stray_connections()


async def test_a_product_removed_before_version_6_loses_its_parts_on_upgrade(path: Path) -> None:
    old = await Database.open(path, target_version=5)
    try:
        await write_sample(old)
        async with old.transaction() as conn:
            await write_products(conn, [], STAMP_2, complete=True)  # no trigger at version 5
            assert await column_by_id(conn, "tests", "deleted_at") == {70: None}
    finally:
        await old.close()
    database = await Database.open(path)
    try:
        async with database.reader() as conn:
            assert await column_by_id(conn, "tests", "deleted_at") == {70: STAMP_2}
            assert await column_by_id(conn, "bugs", "deleted_at") == {700: STAMP_2}
            assert await column_by_id(conn, "products", "features_fetched_at") == {7: None}
        assert await SearchRepository(database).search("zeppelin") == []
    finally:
        await database.close()
