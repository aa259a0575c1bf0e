"""The store tests' data: the sandbox account as wire models and written into a fresh database,
stamps, and reads of rows and schema (digests, one column by id, stray connections closed)."""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from testio_mirror.sandbox import DatasetSpec, SandboxWorld
from testio_mirror.store.bugs import write_bugs, write_reject_reasons
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.features import write_features
from testio_mirror.store.products import write_products
from testio_mirror.store.sqlite.db import Database
from testio_mirror.upstream.models import Bug, ExploratoryTest, Feature, Product, RejectReason

JSON = dict[str, Any]

# Fixed-width stamps in the mirror's own format, in time order.
STAMP_1 = "2026-11-21T05:30:00.000000Z"
STAMP_2 = "2026-11-21T06:30:00.000000Z"
STAMP_3 = "2026-11-21T07:30:00.000000Z"

# Two products, the first with sections; enough bugs that some are rejected.
SPEC = DatasetSpec(
    seed=11,
    products=2,
    section_products=1,
    sections_per_product=2,
    features_per_product=5,
    tests_per_product=8,
    bugs_per_test=4,
)


def small_world(spec: DatasetSpec = SPEC) -> SandboxWorld:
    return SandboxWorld(spec)


async def open_database(tmp_path: Path) -> Database:
    """A fresh mirror database under ``tmp_path``, as the tests' fixtures open it."""
    return await Database.open(tmp_path / "home" / "mirror.db")


def products_of(world: SandboxWorld) -> list[Product]:
    return [Product.from_wire(p) for p in world.products()]


def features_of(world: SandboxWorld, product_id: int) -> list[Feature]:
    """Every feature of a product once (as the client de-duplicates sections)."""
    features = world.snapshot()["features"][product_id]
    return [Feature.from_wire(f) for f in features.values()]


def listing_of(world: SandboxWorld, product_id: int) -> list[ExploratoryTest]:
    """The product's whole listing, as the list endpoint sends it (without "product")."""
    page = world.tests_page(product_id, page=1, per_page=1000)
    return [ExploratoryTest.from_wire(t) for t in page]


def bugs_of(world: SandboxWorld, test_ids: Sequence[int]) -> list[Bug]:
    return [Bug.from_wire(b) for b in world.bugs(test_ids=list(test_ids))]


def reasons_of(world: SandboxWorld) -> list[RejectReason]:
    return [RejectReason.from_wire(r) for r in world.reject_reasons()]


async def write_world(
    db: Database, world: SandboxWorld, stamp: str = STAMP_1, *, before_outbox: bool = False
) -> None:
    """Write the whole account: products, features, reject reasons, tests and their bugs.
    ``before_outbox``: into a mirror before migration 7 (bugs by ``write_bugs_before_outbox``)."""
    products = products_of(world)
    async with db.transaction() as conn:
        await write_reject_reasons(conn, reasons_of(world), stamp)
        await write_products(conn, products, stamp, complete=True)
        for product in products:
            await write_features(conn, product.id, features_of(world, product.id), stamp)
            tests = listing_of(world, product.id)
            await write_tests(conn, tests, stamp, product_id=product.id)
            ids = [t.id for t in tests]
            if before_outbox:
                await write_bugs_before_outbox(conn, bugs_of(world, ids), stamp, ids)
            else:
                await write_bugs(conn, bugs_of(world, ids), stamp, complete_for_tests=ids)


async def write_bugs_before_outbox(
    conn: aiosqlite.Connection, bugs: Sequence[Bug], stamp: str, test_ids: Sequence[int]
) -> None:
    """Bugs as a mirror before migration 7 held them (no triage columns, no outbox): the columns
    every version has, for tests of older versions upgraded; the tests' bug lists marked
    fetched."""
    for bug in bugs:
        raw = json.dumps(bug.raw, sort_keys=True, separators=(",", ":"))
        await conn.execute(
            "INSERT INTO bugs (id, test_id, product_id, title, status, known, actual_result, "
            "expected_result, raw, content_hash, fetched_at, changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                bug.id,
                bug.test_id,
                bug.product_id,
                bug.title,
                bug.status,
                None if bug.known is None else int(bug.known),
                bug.actual_result,
                bug.expected_result,
                raw,
                hashlib.sha256(raw.encode()).hexdigest()[:32],
                stamp,
                stamp,
            ),
        )
    for test_id in test_ids:
        await conn.execute("UPDATE tests SET bugs_fetched_at = ? WHERE id = ?", (stamp, test_id))


async def table_digest(conn: aiosqlite.Connection, table: str) -> tuple[int, str]:
    """(row count, sha256 over every row ordered by id of every column but ``fetched_at``)."""
    info = await conn.execute_fetchall(f"PRAGMA table_info({table})")
    columns = [row[1] for row in info if row[1] != "fetched_at"]
    rows = list(
        await conn.execute_fetchall(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id")  # noqa: S608
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(list(row), ensure_ascii=False).encode("utf-8"))
    return len(rows), digest.hexdigest()


async def column_by_id(conn: aiosqlite.Connection, table: str, column: str) -> dict[int, Any]:
    """``{id: value}`` of one column of a table."""
    rows = await conn.execute_fetchall(f"SELECT id, {column} FROM {table}")  # noqa: S608
    return {row[0]: row[1] for row in rows}


async def schema_of(conn: aiosqlite.Connection) -> list[tuple[str, str, str | None]]:
    """Sorted (type, name, sql) of every object but SQLite's own."""
    rows = await conn.execute_fetchall(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
        "ORDER BY type, name"
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def close_stray_connections() -> None:
    """Close aiosqlite connections nobody closed (left behind by a failed ``Database.open``), so
    their worker threads do not keep the test process alive."""
    gc.collect()
    for thing in gc.get_objects():
        if isinstance(thing, aiosqlite.Connection) and thing._connection is not None:
            await thing.close()
