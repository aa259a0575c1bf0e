"""Products in the store: a complete list tombstones and records its fetch, sections with
the default flagged and their own JSON."""

from __future__ import annotations

import json

import pytest

from testio_mirror.errors import CursorError
from testio_mirror.sandbox import SandboxWorld
from testio_mirror.store.products import write_products
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import WriteStats
from tests.helpers.seeded_mirror import Seeded
from tests.helpers.store_data import STAMP_1, STAMP_2, STAMP_3, column_by_id, products_of


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


async def test_products_are_paged_by_id(seeded: Seeded) -> None:
    pages = []
    cursor = None
    for _ in range(10):
        page = await seeded.mirror.products.page_products(limit=1, cursor=cursor)
        pages.append([p.id for p in page.items])
        assert len(page.cursors) == len(page.items)
        assert page.next_cursor in (None, page.cursors[-1])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [i for ids in pages for i in ids] == sorted(seeded.snap["products"])
    assert all(len(ids) == 1 for ids in pages)
    features = await seeded.mirror.features.page_features(101, limit=1)
    with pytest.raises(CursorError):  # a cursor of another listing
        await seeded.mirror.products.page_products(limit=1, cursor=features.next_cursor)
