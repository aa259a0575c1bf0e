"""Keyset order over a seeded mirror: rows without a time come last and still page through,
and listings walk an index newest first instead of sorting."""

from __future__ import annotations

from typing import Any

import pytest

from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.records import BugFilter, Page
from testio_mirror.upstream.models import Bug, ExploratoryTest
from tests.helpers.seeded_mirror import JSON, WINDOW, Seeded, Statement, ids_of, query_plan


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
