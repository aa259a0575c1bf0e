"""Queries over a mirror seeded from a sandbox account: filters, order, cursors, tombstones,
listing freshness, bug counts and statistics, and search ranking, checked against the snapshot."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast, get_args

import aiosqlite
import pytest

from testio_mirror.errors import CursorError
from testio_mirror.sandbox import DatasetSpec, SandboxWorld
from testio_mirror.settings import load_settings
from testio_mirror.store.bugs import GROUPS, write_bugs, write_reject_reasons
from testio_mirror.store.exploratory_tests import tombstone_tests, write_tests
from testio_mirror.store.features import write_features
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import write_products
from testio_mirror.store.records import BugFilter, GroupBy, Page
from testio_mirror.store.sqlite.cursor import encode_cursor
from testio_mirror.store.sync_state import ListingState, save_listing_state
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


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, JSON]:
    """One seeded mirror file per module; every test gets its own copy."""
    world = SandboxWorld(SPEC)
    home = tmp_path_factory.mktemp("template") / "home"
    asyncio.run(seed(home, world))
    return home, world.snapshot()


@pytest.fixture
async def seeded(template: tuple[Path, JSON], tmp_path: Path) -> AsyncIterator[Seeded]:
    """An offline mirror holding the whole account."""
    home = tmp_path / "home"
    shutil.copytree(template[0], home)
    settings = load_settings(mirror_home=home, product_ttl_seconds=PRODUCT_TTL)
    clock = FakeClock()
    mirror = await Mirror.open(settings, None, clock=clock)
    try:
        yield Seeded(mirror, clock, template[1])
    finally:
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


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_tests_and_bugs_without_a_time_come_last_and_page_through(
    seeded: Seeded, limit: int
) -> None:
    undated = [9_000_003, 9_000_001, 9_000_002]
    async with seeded.mirror.db.transaction() as conn:
        tests = [
            ExploratoryTest.from_wire({"id": tid, "title": "undated", "end_at": None})
            for tid in undated
        ]
        await write_tests(conn, tests, seeded.mirror.policy.stamp(), product_id=103)
        bugs = [
            Bug.from_wire({"id": tid, "test": {"id": tid}, "reported_at": None}) for tid in undated
        ]
        await write_bugs(conn, bugs, seeded.mirror.policy.stamp())
    dated_tests = seeded.newest("tests", lambda t: t["product"]["id"] == 103)
    found = await ids_of(seeded.mirror.tests.list_tests, product_id=103, limit=limit)
    assert found == [*dated_tests, *sorted(undated, reverse=True)]
    dated_bugs = seeded.newest("bugs", lambda b: b["product"]["id"] == 103)
    found = await ids_of(
        seeded.mirror.bugs.list_bugs, bug_filter=BugFilter(product_id=103), limit=limit
    )
    assert found == [*dated_bugs, *sorted(undated, reverse=True)]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "",
        encode_cursor("2026-11-01T00:00:00.000000Z", 5)[:-3],
        encode_cursor("2026-11-01T00:00:00.000000Z", cast(int, "x")),
        encode_cursor(cast(str, {"a": 1}), 5),
    ],
)
async def test_a_bad_cursor_raises(seeded: Seeded, cursor: str) -> None:
    with pytest.raises(CursorError):
        await seeded.mirror.tests.list_tests(cursor=cursor)
    with pytest.raises(CursorError):
        await seeded.mirror.bugs.list_bugs(cursor=cursor)


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


SOME_TESTS = [100_001, 100_041, 100_081, 100_121]
FEATURE = 20_001
BUG_FILTERS: dict[str, tuple[JSON, Callable[[JSON], bool]]] = {
    "product": ({"product_id": 103}, lambda b: b["product"]["id"] == 103),
    "test_ids": ({"test_ids": SOME_TESTS}, lambda b: b["test"]["id"] in SOME_TESTS),
    "feature": ({"feature_id": FEATURE}, lambda b: b["feature"]["id"] == FEATURE),
    "severities": (
        {"severities": ["critical", "custom"]},
        lambda b: b["severity"] in ("critical", "custom"),
    ),
    "statuses": ({"statuses": ["rejected"]}, lambda b: b["status"] == "rejected"),
    "known": ({"known": True}, lambda b: b["known"] is True),
    "not_known": ({"known": False}, lambda b: b["known"] is False),
    "window": (
        {"since": WINDOW[0], "until": WINDOW[1]},
        lambda b: WINDOW[0] <= utc(b["reported_at"]) < WINDOW[1],
    ),
    "text": ({"text": "freezes"}, lambda b: "freezes" in f"{b['title']} {b['actual_result']}"),
    "combined": (
        {"product_id": 101, "statuses": ["accepted"], "severities": ["low"]},
        lambda b: (b["product"]["id"], b["status"], b["severity"]) == (101, "accepted", "low"),
    ),
}


@pytest.mark.parametrize("name", sorted(BUG_FILTERS))
async def test_list_bugs_filters_newest_first(seeded: Seeded, name: str) -> None:
    filters, keep = BUG_FILTERS[name]
    expected = seeded.newest("bugs", keep)
    assert 0 < len(expected) < len(seeded.snap["bugs"])
    assert (
        await ids_of(seeded.mirror.bugs.list_bugs, bug_filter=BugFilter(**filters), limit=37)
        == expected
    )


async def test_bug_cursor_paging_visits_every_bug_exactly_once(seeded: Seeded) -> None:
    found = await ids_of(seeded.mirror.bugs.list_bugs, limit=50)
    assert found == seeded.newest("bugs")
    assert len(set(found)) == len(seeded.snap["bugs"])


async def test_include_raw_returns_the_wire_object(seeded: Seeded) -> None:
    test_id = sorted(seeded.snap["tests"])[7]
    page = await seeded.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]), include_raw=True)
    assert page.items
    assert all(b.raw == seeded.snap["bugs"][b.id] for b in page.items)
    assert all(
        b.raw is None
        for b in (await seeded.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))).items
    )


async def test_counts_for_test_match_the_snapshot(seeded: Seeded) -> None:
    for test_id in sorted(seeded.snap["tests"])[::30]:
        bugs = [b for b in seeded.snap["bugs"].values() if b["test"]["id"] == test_id]
        counts = await seeded.mirror.bugs.counts_for_test(test_id)
        assert counts == {
            "severity": dict(Counter(b["severity"] for b in bugs)),
            "status": dict(Counter(b["status"] for b in bugs)),
        }


def group_of(seeded: Seeded, group_by: str, bug: JSON) -> tuple[str, str | None]:
    """The (key, label) a bug falls under."""
    if group_by == "feature":
        feature_id = bug["feature"]["id"]
        features = seeded.snap["features"][bug["product"]["id"]]
        return str(feature_id), features[feature_id]["title"]
    if group_by == "test":
        return str(bug["test"]["id"]), seeded.snap["tests"][bug["test"]["id"]]["title"]
    key = {
        "severity": bug["severity"],
        "status": bug["status"],
        "tester": bug["author"]["name"],
        "month": utc(bug["reported_at"]).strftime("%Y-%m"),
    }[group_by]
    return key, key


@pytest.mark.parametrize("group_by", ["severity", "status", "feature", "test", "tester", "month"])
async def test_stats_match_the_snapshot(seeded: Seeded, group_by: Any) -> None:
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    labels: dict[str, str | None] = {}
    for bug in seeded.snap["bugs"].values():
        key, labels[key] = group_of(seeded, group_by, bug)
        expected[key].update(["total", bug["status"]])

    answer = await seeded.mirror.bugs.stats(group_by)
    groups = answer.value
    assert sum(g.total for g in groups) == len(seeded.snap["bugs"])
    assert [g.total for g in groups] == sorted((g.total for g in groups), reverse=True)
    assert {g.key for g in groups} == set(expected)
    for group in groups:
        assert group.key is not None
        counts = expected[group.key]
        assert group.label == labels[group.key]
        columns = ("total", "accepted", "rejected", "forwarded")
        assert [getattr(group, c) for c in columns] == [counts[c] for c in columns]
        decided = counts["accepted"] + counts["rejected"]
        rate = round(counts["accepted"] / decided, 4) if decided else None
        assert group.acceptance_rate == rate
    if group_by == "test":  # some open tests have only forwarded bugs
        assert any(g.acceptance_rate is None for g in groups)


@pytest.mark.parametrize("name", sorted(BUG_FILTERS))
async def test_stats_count_the_bugs_a_listing_lists(seeded: Seeded, name: str) -> None:
    filters, keep = BUG_FILTERS[name]
    expected = Counter(b["status"] for b in seeded.snap["bugs"].values() if keep(b))
    answer = await seeded.mirror.bugs.stats("status", BugFilter(**filters))
    assert {g.key: g.total for g in answer.value} == expected


def test_every_grouping_has_its_sql() -> None:
    assert sorted(GROUPS) == sorted(get_args(GroupBy))


async def test_stats_reject_an_unknown_grouping(seeded: Seeded) -> None:
    with pytest.raises(ValueError, match="group_by"):
        await seeded.mirror.bugs.stats(cast(Any, "weekday"))


async def write_crafted_bugs(seeded: Seeded, titles: dict[int, tuple[str, str]]) -> None:
    """Bugs with the given (title, actual result), filed under the first test."""
    test = seeded.snap["tests"][min(seeded.snap["tests"])]
    bugs = [
        Bug.from_wire(
            {"id": bug_id, "title": title, "actual_result": body, "test": {"id": test["id"]}}
        )
        for bug_id, (title, body) in titles.items()
    ]
    async with seeded.mirror.db.transaction() as conn:
        await write_bugs(conn, bugs, seeded.mirror.policy.stamp())


# Every crafted row holds twelve words, so no row wins by being shorter.
FILLER = "while scrolling the long page the banner near the"
CRAFTED = {
    990_000_001: ("Banner flickers", f"{FILLER} kaleidoscope"),
    990_000_002: ("Kaleidoscope flickers", f"{FILLER} footer"),
    990_000_003: ("Footer overlaps", f"{FILLER} Kaleidoscopes"),
}


async def test_search_matches_every_word_as_a_prefix(seeded: Seeded) -> None:
    await write_crafted_bugs(seeded, CRAFTED)
    hits = await seeded.mirror.search.search("kaleidoscope", kinds=["bug"])
    assert {h.id for h in hits} == set(CRAFTED)
    assert [h.id for h in await seeded.mirror.search.search("overlaps kaleidoscope")] == [
        990_000_003
    ]
    assert await seeded.mirror.search.search("kaleidoscope", kinds=["test", "feature"]) == []
    matched = await seeded.mirror.bugs.list_bugs(BugFilter(text="KALEIDOSCOPE"))
    assert {b.id for b in matched.items} == set(CRAFTED)


async def test_search_ranks_a_title_match_before_body_matches(seeded: Seeded) -> None:
    # bm25 weighs title and body alike: the title match only ties with the others.
    await write_crafted_bugs(seeded, CRAFTED)
    hits = await seeded.mirror.search.search("kaleidoscope", kinds=["bug"])
    assert hits[0].id == 990_000_002
    assert hits[0].rank < min(h.rank for h in hits[1:])


# Listings whose filters leave many rows must walk an index newest first and stop at the page's
# end: a sort would read every matching row.
UNSORTED_LISTINGS: dict[str, tuple[str, JSON]] = {
    "bugs, no filter": ("bugs", {}),
    "bugs of a severity": ("bugs", {"severities": ["critical"]}),
    "bugs of a status": ("bugs", {"statuses": ["forwarded"]}),
    "known bugs": ("bugs", {"known": True}),
    "bugs since a date": ("bugs", {"since": WINDOW[0]}),
    "bugs of a product": ("bugs", {"product_id": 101, "severities": ["critical"]}),
    "tests, no filter": ("tests", {}),
    "tests of a testing type": ("tests", {"testing_type": "rapid"}),
    "tests of a product": ("tests", {"product_id": 101}),
}


Statement = tuple[str, Any]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[Statement]:
    """Every statement the mirror's connections read with, as run (SQL and parameters)."""
    seen: list[Statement] = []
    execute = aiosqlite.Connection.execute_fetchall

    async def recording(self: aiosqlite.Connection, sql: str, parameters: Any = None) -> Any:
        seen.append((sql, parameters))
        return await execute(self, sql, parameters)

    monkeypatch.setattr(aiosqlite.Connection, "execute_fetchall", recording)
    return seen


def query_plan(seeded: Seeded, statement: Statement) -> list[str]:
    sql, params = statement
    with sqlite3.connect(seeded.mirror.db.path) as plain:
        return [row[3] for row in plain.execute(f"EXPLAIN QUERY PLAN {sql}", params or ())]


@pytest.mark.parametrize("name", sorted(UNSORTED_LISTINGS))
async def test_listings_walk_an_index_instead_of_sorting(
    seeded: Seeded, name: str, statements: list[Statement]
) -> None:
    kind, filters = UNSORTED_LISTINGS[name]
    if kind == "bugs":
        page: Page[Any] = await seeded.mirror.bugs.list_bugs(BugFilter(**filters))
    else:
        page = await seeded.mirror.tests.list_tests(**filters)
    assert page.items, "the listing must find something for its plan to matter"
    listings = [statement for statement in statements if "ORDER BY" in statement[0]]
    assert len(listings) == 1, listings
    plan = query_plan(seeded, listings[0])
    assert not any("TEMP B-TREE FOR ORDER BY" in step for step in plan), plan


@pytest.mark.parametrize("product_id", [None, 101])
async def test_bug_list_freshness_reads_an_index_not_the_test_rows(
    seeded: Seeded, product_id: int | None, statements: list[Statement]
) -> None:
    page = await seeded.mirror.bugs.list_bugs(BugFilter(product_id=product_id))
    assert page.items
    summaries = [statement for statement in statements if "bugs_fetched_at" in statement[0]]
    assert len(summaries) == 1, statements
    plan = query_plan(seeded, summaries[0])
    assert plan
    assert all("USING INDEX tests_bug_freshness" in step for step in plan), plan
