"""Bugs in the store: writes (a complete list tombstones the missing, reject reasons) and the
repository over a seeded mirror (filters, order, cursors, raw JSON, counts and statistics, the
index its freshness reads), checked against the snapshot."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, cast, get_args

import pytest

from testio_mirror.sandbox import SandboxWorld
from testio_mirror.store.bug_stats import GROUPS
from testio_mirror.store.bugs import write_bugs, write_reject_reasons
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.records import BugFilter, GroupBy
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import WriteStats
from tests.helpers.seeded_mirror import JSON, WINDOW, Seeded, Statement, ids_of, query_plan, utc
from tests.helpers.store_data import (
    STAMP_1,
    STAMP_2,
    STAMP_3,
    bugs_of,
    column_by_id,
    listing_of,
    reasons_of,
    write_world,
)


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
    groups = answer.value.groups
    assert answer.value.next_cursor is None  # no limit: every group
    assert sum(g.total for g in groups) == len(seeded.snap["bugs"])
    if group_by == "month":  # time groups in time order
        assert [g.key for g in groups] == sorted(expected)
    else:  # the others largest first
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
    assert {g.key: g.total for g in answer.value.groups} == expected


def test_every_grouping_has_its_sql() -> None:
    assert sorted(GROUPS) == sorted(get_args(GroupBy))


async def test_stats_reject_an_unknown_grouping(seeded: Seeded) -> None:
    with pytest.raises(ValueError, match="group_by"):
        await seeded.mirror.bugs.stats(cast(Any, "weekday"))


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
