"""Tests in the store: writes (changes, the product they are filed under, tombstones and
revival, test features) and the repository's listing over a seeded mirror (filters, order,
cursors, tombstones, listing freshness), checked against the snapshot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from testio_mirror.sandbox import SandboxWorld
from testio_mirror.store.exploratory_tests import tombstone_tests, write_tests
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import WriteStats
from testio_mirror.store.sync_state import ListingState, save_listing_state
from testio_mirror.upstream.models import ExploratoryTest
from tests.helpers.seeded_mirror import JSON, PRODUCT_TTL, WINDOW, Seeded, collect, ids_of, utc
from tests.helpers.store_data import (
    STAMP_1,
    STAMP_2,
    STAMP_3,
    column_by_id,
    listing_of,
    table_digest,
    write_world,
)


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


TEST_FILTERS: dict[str, tuple[JSON, Callable[[JSON], bool]]] = {
    "product": ({"product_id": 102}, lambda t: t["product"]["id"] == 102),
    "statuses": (
        {"statuses": ["archived", "cancelled"]},
        lambda t: t["status"] in ("archived", "cancelled"),
    ),
    "testing_type": ({"testing_type": "rapid"}, lambda t: t["testing_type"] == "rapid"),
    "window": (
        {"since": WINDOW[0], "until": WINDOW[1]},
        lambda t: WINDOW[0] <= utc(t["end_at"]) < WINDOW[1],
    ),
    "combined": (
        {"product_id": 101, "statuses": ["archived"], "since": WINDOW[0]},
        lambda t: (
            (t["product"]["id"], t["status"]) == (101, "archived") and utc(t["end_at"]) >= WINDOW[0]
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(TEST_FILTERS))
async def test_list_tests_filters_newest_first(seeded: Seeded, name: str) -> None:
    filters, keep = TEST_FILTERS[name]
    expected = seeded.newest("tests", keep)
    assert expected  # the filter selects something, and not everything
    assert len(expected) < len(seeded.snap["tests"])
    assert await ids_of(seeded.mirror.tests.list_tests, **filters) == expected


async def test_list_tests_since_is_inclusive_and_until_exclusive(seeded: Seeded) -> None:
    test = seeded.snap["tests"][sorted(seeded.snap["tests"])[100]]
    end = utc(test["end_at"])
    window = {"since": end, "until": end + timedelta(seconds=1)}
    assert test["id"] in await ids_of(seeded.mirror.tests.list_tests, **window)
    assert test["id"] not in await ids_of(seeded.mirror.tests.list_tests, until=end)


async def test_list_tests_limit_is_capped_at_200(seeded: Seeded) -> None:
    page = await seeded.mirror.tests.list_tests(limit=1000)
    assert len(page.items) == 200
    assert page.next_cursor is not None
    assert len((await seeded.mirror.tests.list_tests(limit=0)).items) == 1


@pytest.mark.parametrize("limit", [1, 7, 200])
async def test_cursor_paging_visits_every_test_exactly_once(seeded: Seeded, limit: int) -> None:
    found = await ids_of(seeded.mirror.tests.list_tests, limit=limit)
    assert found == seeded.newest("tests")
    assert len(set(found)) == len(seeded.snap["tests"])


async def test_tombstoned_tests_are_left_out_unless_asked_for(seeded: Seeded) -> None:
    present = seeded.newest("tests", lambda t: t["product"]["id"] == 102)
    victim = present[3]
    async with seeded.mirror.db.transaction() as conn:
        gone = await tombstone_tests(conn, [victim], "2026-11-22T00:00:00.000000Z")
    assert gone == 1
    assert victim not in await ids_of(seeded.mirror.tests.list_tests)
    everything = await collect(seeded.mirror.tests.list_tests, product_id=102, include_deleted=True)
    assert [t.id for t in everything] == present
    assert [t.id for t in everything if t.deleted] == [victim]


async def test_list_freshness_needs_a_finished_listing(seeded: Seeded) -> None:
    page = await seeded.mirror.tests.list_tests()
    assert page.freshness.stale is True
    assert "never fully listed" in (page.freshness.stale_reason or "")

    now = seeded.clock()
    async with seeded.mirror.db.transaction() as conn:
        await save_listing_state(conn, ListingState(101, 4, True, True, "run-1", now, now, now))
        await save_listing_state(conn, ListingState(102, 2, False, True, "run-1", now, None, None))
    assert (await seeded.mirror.tests.list_tests(product_id=101)).freshness.stale is False
    for filters in ({"product_id": 102}, {}):
        unlisted = await seeded.mirror.tests.list_tests(**filters)
        assert "never fully listed" in (unlisted.freshness.stale_reason or "")

    async with seeded.mirror.db.transaction() as conn:
        for product_id in (102, 103):
            await save_listing_state(
                conn, ListingState(product_id, 5, True, True, "run-1", now, now, now)
            )
    fresh = (await seeded.mirror.tests.list_tests()).freshness
    assert (fresh.source, fresh.stale, fresh.as_of) == ("mirror", False, now)
    seeded.clock.now += timedelta(seconds=PRODUCT_TTL + 1)
    assert (await seeded.mirror.tests.list_tests()).freshness.stale is True
