"""MetricsRepository on a seeded offline mirror: what it reads through first (the bugs of the
tests in scope, up to 200 of them) and what a wider scope's freshness says."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from testio_mirror.store.metrics import READ_THROUGH_TESTS, MetricsQuery, MetricsRepository
from testio_mirror.store.metrics_sql import MetricsFilter
from tests.helpers.seeded_mirror import Seeded


def repository(seeded: Seeded) -> MetricsRepository:
    mirror = seeded.mirror
    return MetricsRepository(mirror.db, mirror.bugs, mirror.policy)


async def test_a_wide_scope_is_counted_from_the_mirror_as_sync_left_it(seeded: Seeded) -> None:
    assert len(seeded.snap["tests"]) > READ_THROUGH_TESTS
    query = MetricsQuery(metrics=("bug_count", "test_count"), dimensions=("product",))
    found = await repository(seeded).query(query)
    bugs = Counter(str(b["product"]["id"]) for b in seeded.snap["bugs"].values())
    tests = Counter(str(t["product"]["id"]) for t in seeded.snap["tests"].values())
    got = {row.group["product"]: row.values for row in found.rows}
    assert got == {p: {"bug_count": bugs[p], "test_count": tests[p]} for p in tests}
    assert found.freshness.source == "mirror"
    assert found.freshness.stale is False
    seeded.clock.now += timedelta(days=1)  # past the product TTL: the sync is old now
    later = await repository(seeded).query(query)
    assert later.freshness.stale is True
    assert later.rows == found.rows


async def test_a_narrow_scope_reads_the_bugs_of_its_tests_through(seeded: Seeded) -> None:
    product = 101
    query = MetricsQuery(metrics=("bug_count",), filter=MetricsFilter(product_ids=[product]))
    fresh = await repository(seeded).query(query)
    assert fresh.freshness.stale is False
    seeded.clock.now += timedelta(hours=1)  # open tests' bug lists outlive their TTL (300 s)
    stale = await repository(seeded).query(query)
    # Offline, the stale bug lists cannot be fetched: the copy is served and says why.
    assert stale.freshness.stale is True
    assert "no TestIO token" in (stale.freshness.stale_reason or "")
    expected = sum(b["product"]["id"] == product for b in seeded.snap["bugs"].values())
    assert stale.totals == fresh.totals == {"bug_count": expected}


async def test_no_tests_in_scope_is_as_fresh_as_the_mirror(seeded: Seeded) -> None:
    query = MetricsQuery(metrics=("bug_count",), filter=MetricsFilter(product_ids=[999]))
    found = await repository(seeded).query(query)
    assert [row.values for row in found.rows] == [{"bug_count": 0}]  # no dimension: one row
    assert found.totals == {"bug_count": 0}
    by_test = await repository(seeded).query(
        MetricsQuery(metrics=("bug_count",), dimensions=("test",), filter=query.filter)
    )
    assert by_test.rows == []
    assert by_test.row_count == 0
    assert found.freshness.source == "mirror"
    assert found.freshness.stale is False  # the sync was just now: nothing to fetch for it
    seeded.clock.now += timedelta(days=1)
    later = await repository(seeded).query(query)
    assert later.freshness.stale is True
