"""A mirror seeded offline with a whole sandbox account, as a complete sync would leave it:
the account, its clock, listings followed through their cursors, and the plans of statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testio_mirror.sandbox import DatasetSpec, SandboxWorld
from testio_mirror.settings import load_settings
from testio_mirror.store.bugs import write_bugs, write_reject_reasons
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.features import write_features
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import write_products
from testio_mirror.store.records import Page
from testio_mirror.upstream.models import Bug, ExploratoryTest, Feature, Product, RejectReason

JSON = dict[str, Any]
# 240 tests: more than one page of the largest limit (200).
SPEC = DatasetSpec(seed=3, products=3, section_products=1, tests_per_product=80, bugs_per_test=3)
PRODUCT_TTL = 3600
WINDOW = (datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 9, 15, tzinfo=UTC))


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Seeded:
    mirror: Mirror
    clock: FakeClock
    snap: JSON

    def newest(self, kind: str, keep: Callable[[JSON], bool] = lambda _: True) -> list[int]:
        """Ids of the snapshot's tests or bugs that ``keep`` accepts, newest first."""
        moment = "end_at" if kind == "tests" else "reported_at"
        chosen = [x for x in self.snap[kind].values() if keep(x)]
        chosen.sort(key=lambda x: (utc(x[moment]), x["id"]), reverse=True)
        return [x["id"] for x in chosen]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def seed(home: Path, world: SandboxWorld) -> None:
    """Write the whole account, as a complete sync would leave it (times from FakeClock)."""
    snap = world.snapshot()
    mirror = await Mirror.open(load_settings(mirror_home=home), None, clock=FakeClock())
    stamp = mirror.policy.stamp()
    async with mirror.db.transaction() as conn:
        products = [Product.from_wire(p) for p in world.products()]
        await write_products(conn, products, stamp, complete=True)
        for product_id, features in snap["features"].items():
            parsed = [Feature.from_wire(f) for f in features.values()]
            await write_features(conn, product_id, parsed, stamp)
        tests = [ExploratoryTest.from_wire(t) for t in snap["tests"].values()]
        await write_tests(conn, tests, stamp)
        reasons = [RejectReason.from_wire(r) for r in world.reject_reasons()]
        await write_reject_reasons(conn, reasons, stamp)
        bugs = [Bug.from_wire(b) for b in snap["bugs"].values()]
        await write_bugs(conn, bugs, stamp, complete_for_tests=list(snap["tests"]))
    await mirror.close()


async def collect(list_page: Callable[..., Awaitable[Page[Any]]], **filters: Any) -> list[Any]:
    """Every item of a listing, following its cursors."""
    found: list[Any] = []
    page = await list_page(**filters)
    found.extend(page.items)
    while page.next_cursor is not None:
        page = await list_page(**filters, cursor=page.next_cursor)
        found.extend(page.items)
    return found


async def ids_of(list_page: Callable[..., Awaitable[Page[Any]]], **filters: Any) -> list[int]:
    return [item.id for item in await collect(list_page, **filters)]


Statement = tuple[str, Any]


def query_plan(seeded: Seeded, statement: Statement) -> list[str]:
    sql, params = statement
    with sqlite3.connect(seeded.mirror.db.path) as plain:
        return [row[3] for row in plain.execute(f"EXPLAIN QUERY PLAN {sql}", params or ())]
