"""Upserts: writing the same page twice changes nothing, users recorded, canonical JSON and its
hashes, WriteStats, multi-row inserts."""

from __future__ import annotations

import json

import aiosqlite
import pytest

from testio_mirror.sandbox import SandboxWorld
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.features import write_features
from testio_mirror.store.products import write_products
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import (
    WriteStats,
    canonical_json,
    content_hash,
    hash_canonical,
    insert_rows,
)
from tests.helpers.store_data import (
    STAMP_1,
    STAMP_2,
    bugs_of,
    column_by_id,
    features_of,
    listing_of,
    products_of,
    table_digest,
    write_world,
)


async def write_page(
    conn: aiosqlite.Connection, world: SandboxWorld, table: str, at: str
) -> WriteStats:
    """Write one page of ``table``'s entities (and what they need to exist first)."""
    products = await write_products(conn, products_of(world), at, complete=True)
    if table == "products":
        return products
    if table == "features":
        return await write_features(conn, 101, features_of(world, 101), at)
    tests = listing_of(world, 101)
    written = await write_tests(conn, tests, at, product_id=101)
    if table == "tests":
        return written
    ids = [t.id for t in tests]
    return await write_bugs(conn, bugs_of(world, ids), at, complete_for_tests=ids)


@pytest.mark.parametrize("table", ["products", "features", "tests", "bugs"])
async def test_writing_the_same_page_twice_changes_nothing(
    db: Database, world: SandboxWorld, table: str
) -> None:
    async with db.transaction() as conn:
        first = await write_page(conn, world, table, STAMP_1)
        before = await table_digest(conn, table)
    assert first.inserted == first.fetched == before[0] > 0
    async with db.transaction() as conn:
        second = await write_page(conn, world, table, STAMP_2)
        assert await table_digest(conn, table) == before
        assert set((await column_by_id(conn, table, "fetched_at")).values()) == {STAMP_2}
        assert set((await column_by_id(conn, table, "changed_at")).values()) == {STAMP_1}
    assert second == WriteStats(fetched=before[0], unchanged=before[0])


async def test_users_are_testers_and_customers(db: Database, world: SandboxWorld) -> None:
    await write_world(db, world)
    snapshot = world.snapshot()
    testers = {bug["author"]["name"] for bug in snapshot["bugs"].values()}
    customers = {t[k] for t in snapshot["tests"].values() for k in ("created_by", "submitted_by")}
    customers |= {c["author"]["name"] for bug in snapshot["bugs"].values() for c in bug["comments"]}
    customers.discard(None)
    async with db.reader() as conn:
        rows = await conn.execute_fetchall("SELECT name, role, first_seen_at FROM users")
    assert {r[0] for r in rows if r[1] == "tester"} == testers
    assert {r[0] for r in rows if r[1] == "customer"} == customers
    assert {r[2] for r in rows} == {STAMP_1}


@pytest.mark.parametrize(
    "parts",
    [
        ({"b": [1, {"z": None, "a": "é"}], "a": 2.5}, 105, "duplicate"),
        ({}, None, None),
        ("text", [], True),
    ],
)
def test_hashing_from_canonical_text_matches_hashing_the_values(parts: tuple[object, ...]) -> None:
    # Rows hash the raw text they already serialised; stored digests must not change with it.
    assert hash_canonical(*(canonical_json(p) for p in parts)) == content_hash(*parts)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            {"b": 1, "a": {"d": [None, True], "c": "é\n"}},
            '{"a":{"c":"é\\n","d":[null,true]},"b":1}',
        ),
        ({"id": 2**70}, '{"id":1180591620717411303424}'),  # beyond 64 bits: still exact
        ([1.5, -3, "\u2028"], '[1.5,-3,"\u2028"]'),
    ],
)
def test_canonical_json_is_sorted_compact_and_exact(value: object, text: str) -> None:
    assert canonical_json(value) == text
    assert json.loads(canonical_json(value)) == value


def test_write_stats_add_up() -> None:
    total = WriteStats(3, 1, 1, 1, 0) + WriteStats(fetched=2, unchanged=2, deleted=4)
    assert total == WriteStats(fetched=5, inserted=1, updated=1, unchanged=3, deleted=4)
    assert total.as_dict() == {
        "fetched": 5,
        "inserted": 1,
        "updated": 1,
        "unchanged": 3,
        "deleted": 4,
    }
    assert sum([WriteStats(1), WriteStats(2)], WriteStats()) == WriteStats(fetched=3)


@pytest.mark.parametrize("count", [0, 1, 63, 64, 75, 130])
async def test_insert_rows_writes_every_row_once_and_applies_the_conflict_clause(
    db: Database, count: int
) -> None:
    rows = [(f"person {n}", "tester", "2026-01-01", "2026-01-01") for n in range(count)]
    columns = ("name", "role", "first_seen_at", "last_seen_at")
    conflict = "ON CONFLICT (name, role) DO UPDATE SET last_seen_at = excluded.last_seen_at"
    async with db.transaction() as conn:
        await insert_rows(conn, "users", columns, rows, conflict=conflict)
        again = [(name, role, first, "2026-02-02") for name, role, first, _ in rows]
        await insert_rows(conn, "users", columns, again, conflict=conflict)
    async with db.reader() as conn:
        found = await conn.execute_fetchall("SELECT name, last_seen_at FROM users ORDER BY name")
    assert sorted((name, "2026-02-02") for name, *_ in rows) == [tuple(r) for r in found]
