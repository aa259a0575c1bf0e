"""Writes: upserts that leave unchanged rows alone, change detection, tombstones and revival,
derived columns (reject reasons, users, sections, test features) and WriteStats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from testio_mirror.sandbox import SandboxWorld
from testio_mirror.store.bugs import write_bugs, write_reject_reasons
from testio_mirror.store.exploratory_tests import tombstone_tests, write_tests
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
from testio_mirror.upstream.models import ExploratoryTest
from tests.helpers.store_data import (
    STAMP_1,
    STAMP_2,
    STAMP_3,
    bugs_of,
    column_by_id,
    features_of,
    listing_of,
    open_database,
    products_of,
    reasons_of,
    small_world,
    table_digest,
    write_world,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path)
    yield database
    await database.close()


@pytest.fixture
def world() -> SandboxWorld:
    return small_world()


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


async def test_a_changed_test_is_updated_and_only_it_moves_changed_at(
    db: Database, world: SandboxWorld
) -> None:
    page = world.tests_page(102, page=1, per_page=100)
    async with db.transaction() as conn:
        await write_tests(conn, [ExploratoryTest.from_wire(t) for t in page], STAMP_1, 102)
    changed = page[3]
    changed["status"] = "cancelled" if changed["status"] != "cancelled" else "archived"
    async with db.transaction() as conn:
        stats = await write_tests(conn, [ExploratoryTest.from_wire(t) for t in page], STAMP_2, 102)
        changed_at = await column_by_id(conn, "tests", "changed_at")
        fetched_at = await column_by_id(conn, "tests", "fetched_at")
        statuses = await column_by_id(conn, "tests", "status")
    assert stats == WriteStats(fetched=len(page), updated=1, unchanged=len(page) - 1)
    assert changed_at.pop(changed["id"]) == STAMP_2
    assert set(changed_at.values()) == {STAMP_1}
    assert set(fetched_at.values()) == {STAMP_2}
    assert statuses[changed["id"]] == changed["status"]


async def test_a_listed_test_fetched_in_detail_is_unchanged(
    db: Database, world: SandboxWorld
) -> None:
    listed = listing_of(world, 101)[0]
    assert listed.product_id is None  # listings leave the product out
    async with db.transaction() as conn:
        await write_tests(conn, [listed], STAMP_1, product_id=101)
        before = await table_digest(conn, "tests")
    detail = ExploratoryTest.from_wire(world.test(listed.id))
    assert detail.product_id == 101
    async with db.transaction() as conn:
        stats = await write_tests(conn, [detail], STAMP_2)
        assert await table_digest(conn, "tests") == before
    assert stats == WriteStats(fetched=1, unchanged=1)


async def test_a_test_moved_to_another_product_is_updated(
    db: Database, world: SandboxWorld
) -> None:
    test_id = listing_of(world, 101)[0].id
    async with db.transaction() as conn:
        await write_tests(conn, [ExploratoryTest.from_wire(world.test(test_id))], STAMP_1)
    world.move_test(test_id, 102)
    async with db.transaction() as conn:
        stats = await write_tests(conn, listing_of(world, 102), STAMP_2, product_id=102)
        products = await column_by_id(conn, "tests", "product_id")
    assert stats.updated == 1
    assert stats.inserted == stats.fetched - 1
    assert products[test_id] == 102


async def test_tombstoned_tests_are_kept_and_revived(db: Database, world: SandboxWorld) -> None:
    await write_world(db, world)
    tests = listing_of(world, 101)
    gone = tests[2]
    async with db.transaction() as conn:
        deleted = await tombstone_tests(conn, [gone.id], STAMP_2)
        again = await tombstone_tests(conn, [gone.id], STAMP_3)
        marks = await column_by_id(conn, "tests", "deleted_at")
    assert deleted == 1
    assert again == 0  # a tombstone keeps the time it was first marked
    assert marks.pop(gone.id) == STAMP_2
    assert set(marks.values()) == {None}  # every other test, of either product, is untouched
    async with db.transaction() as conn:
        stats = await write_tests(conn, [gone], STAMP_3, product_id=101)
        revived = await conn.execute_fetchall(
            "SELECT deleted_at, changed_at FROM tests WHERE id = ?", (gone.id,)
        )
    assert stats == WriteStats(fetched=1, updated=1)
    assert tuple(next(iter(revived))) == (None, STAMP_3)


async def test_a_complete_bug_list_tombstones_missing_bugs(
    db: Database, world: SandboxWorld
) -> None:
    await write_world(db, world)
    test_id, other_id = (t.id for t in listing_of(world, 102)[:2])
    bugs = bugs_of(world, [test_id])
    async with db.transaction() as conn:
        stats = await write_bugs(conn, bugs[1:], STAMP_2, complete_for_tests=[test_id])
        marks = await column_by_id(conn, "bugs", "deleted_at")
        fetched = await column_by_id(conn, "tests", "bugs_fetched_at")
    assert stats == WriteStats(fetched=len(bugs) - 1, unchanged=len(bugs) - 1, deleted=1)
    assert marks.pop(bugs[0].id) == STAMP_2
    assert set(marks.values()) == {None}
    assert fetched[test_id] == STAMP_2
    assert fetched[other_id] == STAMP_1
    async with db.transaction() as conn:
        # Without complete_for_tests nothing is tombstoned and bugs_fetched_at stays.
        partial = await write_bugs(conn, bugs_of(world, [other_id])[:1], STAMP_3)
        assert (await column_by_id(conn, "tests", "bugs_fetched_at"))[other_id] == STAMP_1
    assert partial.deleted == 0


async def test_reject_reasons_fill_the_reject_reason_column(
    db: Database, world: SandboxWorld
) -> None:
    await write_world(db, world)
    reasons = {r.default_comment: r.key for r in reasons_of(world)}
    every = world.snapshot()["bugs"]
    expected = {
        bug_id: reasons[bug["comments"][-1]["body"]] if bug["status"] == "rejected" else None
        for bug_id, bug in every.items()
    }
    async with db.reader() as conn:
        assert await column_by_id(conn, "bugs", "reject_reason") == expected
    assert sum(key is not None for key in expected.values()) >= 3


async def test_reject_reasons_learned_after_the_bugs_still_fill_the_column(
    db: Database, world: SandboxWorld
) -> None:
    tests = listing_of(world, 101)
    bugs = bugs_of(world, [t.id for t in tests])
    rejected = {b.id for b in bugs if b.status == "rejected"}
    assert rejected
    async with db.transaction() as conn:
        await write_tests(conn, tests, STAMP_1, product_id=101)
        await write_bugs(conn, bugs, STAMP_1)
    # The account's reasons arrive later; the next fetch of the same bugs must use them.
    async with db.transaction() as conn:
        await write_reject_reasons(conn, reasons_of(world), STAMP_2)
        await write_bugs(conn, bugs, STAMP_2)
        filled = await column_by_id(conn, "bugs", "reject_reason")
    assert {bug_id for bug_id, key in filled.items() if key is not None} == rejected


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


async def test_vanished_features_are_tombstoned(db: Database, world: SandboxWorld) -> None:
    await write_world(db, world)
    features = features_of(world, 101)
    async with db.transaction() as conn:
        stats = await write_features(conn, 101, features[1:], STAMP_2)
        marks = await column_by_id(conn, "features", "deleted_at")
        fetched = await column_by_id(conn, "products", "features_fetched_at")
    assert stats == WriteStats(fetched=len(features) - 1, unchanged=len(features) - 1, deleted=1)
    assert marks.pop(features[0].id) == STAMP_2
    assert set(marks.values()) == {None}  # product 102's features are out of scope
    assert fetched == {101: STAMP_2, 102: STAMP_1}


async def test_a_complete_product_list_tombstones_and_records_the_fetch(
    db: Database, world: SandboxWorld
) -> None:
    products = products_of(world)
    async with db.transaction() as conn:
        await write_products(conn, products, STAMP_1, complete=True)
        partial = await write_products(conn, products[:1], STAMP_2, complete=False)
        assert set((await column_by_id(conn, "products", "deleted_at")).values()) == {None}
        complete = await write_products(conn, products[:1], STAMP_3, complete=True)
        marks = await column_by_id(conn, "products", "deleted_at")
        fetches = await conn.execute_fetchall("SELECT key, fetched_at FROM collection_fetches")
    assert partial.deleted == 0
    assert complete == WriteStats(fetched=1, unchanged=1, deleted=1)
    assert marks == {101: None, 102: STAMP_3}
    assert [tuple(row) for row in fetches] == [("products", STAMP_3)]


async def test_sections_are_written_with_the_default_flagged(
    db: Database, world: SandboxWorld
) -> None:
    products = products_of(world)
    async with db.transaction() as conn:
        await write_products(conn, products, STAMP_1, complete=True)
        rows = await conn.execute_fetchall("SELECT id, product_id, is_default FROM sections")
        flags = await column_by_id(conn, "products", "has_sections")
    expected = {
        (s.id, p.id, int(s.id == p.default_section_id))
        for p in products
        for s in [*p.sections_with_default, *p.sections]
    }
    assert {tuple(row) for row in rows} == expected
    assert sum(row[2] for row in rows) == len(products)  # one default per product
    assert flags == {101: 1, 102: 0}


async def test_each_section_keeps_its_own_json(db: Database, world: SandboxWorld) -> None:
    products = products_of(world)
    async with db.transaction() as conn:
        await write_products(conn, products, STAMP_1, complete=True)
        stored = await column_by_id(conn, "sections", "raw")
        hashes = await column_by_id(conn, "sections", "content_hash")
    sent = {
        item["id"]: item
        for p in products
        for key in ("sections_with_default", "sections")
        for item in p.raw.get(key) or []
    }
    assert {sid: json.loads(text) for sid, text in stored.items()} == sent
    assert len(set(hashes.values())) == len(hashes)  # different sections, different digests


async def test_test_features_follow_the_tests_features(db: Database, world: SandboxWorld) -> None:
    raw = world.test(listing_of(world, 101)[0].id)
    extra = {"id": 1, "feature_id": 29_999, "title": "Extra"}
    raw["features"] = [*raw["features"][:1], extra, {"id": 2, "feature_id": None, "title": "?"}]

    async def stored() -> set[tuple[int, int, str]]:
        async with db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT feature_id, test_feature_id, title FROM test_features WHERE test_id = ?",
                (raw["id"],),
            )
        return {(row[0], row[1], row[2]) for row in rows}

    async with db.transaction() as conn:
        await write_tests(conn, [ExploratoryTest.from_wire(raw)], STAMP_1)
    first = raw["features"][0]
    assert await stored() == {
        (first["feature_id"], first["id"], first["title"]),
        (29_999, 1, "Extra"),
    }
    raw["features"] = [{"id": 3, "feature_id": 20_001, "title": "Only this"}]
    async with db.transaction() as conn:
        await write_tests(conn, [ExploratoryTest.from_wire(raw)], STAMP_2)
    assert await stored() == {(20_001, 3, "Only this")}


async def test_a_test_without_any_product_is_refused(db: Database, world: SandboxWorld) -> None:
    with pytest.raises(ValueError, match="names no product"):
        async with db.transaction() as conn:
            await write_tests(conn, listing_of(world, 101)[:1], STAMP_1)
    async with db.reader() as conn:
        assert await column_by_id(conn, "tests", "id") == {}


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
