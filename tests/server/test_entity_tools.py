"""list_testers, get_product and get_feature over MCP after one sync with bugs: every figure is
worked out again from the sandbox's snapshot (authors, severities, statuses, rates, orders,
pages, day windows, sections, a feature's tests), and an unknown id gets a next step."""

from __future__ import annotations

import itertools
import unicodedata
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_answers import parse_time
from tests.helpers.mcp_session import (
    JSON,
    Mirrored,
    call,
    call_error,
    connect,
    pages,
    synced_sandbox,
)
from tests.helpers.settings import make_settings

# Tests end from 17 days ago back over about two months: the 30- and 90-day windows of
# get_product each hold some of them and not all.
ANCHOR = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=20)
DATASET = DatasetSpec(
    seed=23, products=3, section_products=1, tests_per_product=30, bugs_per_test=4, anchor=ANCHOR
)
SECTIONED = 101
PLAIN = 102
SORTS = ("bugs", "critical", "acceptance_rate", "last_activity", "name")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("entities"), include_bugs=True) as m:
        yield m


def identity(name: str) -> str:
    """A tester's identity as the issue defines it: the name, case and spacing aside."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def rate(accepted: int, rejected: int) -> float | None:
    return round(accepted / (accepted + rejected), 4) if accepted + rejected else None


def expected_testers(
    truth: JSON, product_id: int | None = None, since: str | None = None, until: str | None = None
) -> dict[str, JSON]:
    """Per tester identity, what list_testers must say about the bugs of the scope."""
    found: dict[str, JSON] = {}
    for bug in truth["bugs"].values():
        if product_id is not None and bug["product"]["id"] != product_id:
            continue
        reported = parse_time(bug["reported_at"])
        if since is not None and reported < parse_time(since):
            continue
        if until is not None and reported >= parse_time(until):
            continue
        who = found.setdefault(
            identity(bug["author"]["name"]),
            {"bugs": 0, "severity": Counter(), "status": Counter(), "last": None},
        )
        who["bugs"] += 1
        who["severity"][bug["severity"]] += 1
        who["status"][bug["status"]] += 1
        if who["last"] is None or reported > who["last"]:
            who["last"] = reported
    return found


def assert_matches(got: list[JSON], expected: dict[str, JSON]) -> None:
    assert sorted(identity(t["name"]) for t in got) == sorted(expected)
    for tester in got:
        want = expected[identity(tester["name"])]
        assert tester["bugs"] == want["bugs"], tester
        assert tester["by_severity"] == dict(want["severity"]), tester
        for status in ("accepted", "rejected", "forwarded"):
            assert tester[status] == want["status"][status], tester
        assert tester["acceptance_rate"] == rate(
            want["status"]["accepted"], want["status"]["rejected"]
        )
        assert parse_time(tester["last_activity_at"]) == want["last"]


def order_key(sort_by: str, tester: JSON) -> Any:
    """What each order sorts by, largest first (a name tie goes by the name, smallest first)."""
    severity = tester["by_severity"]
    measures: dict[str, Any] = {
        "bugs": (tester["bugs"],),
        "critical": (severity.get("critical", 0), tester["bugs"]),
        "acceptance_rate": (
            tester["acceptance_rate"] is not None,
            tester["acceptance_rate"] or 0.0,
            tester["accepted"] + tester["rejected"],
        ),
        "last_activity": (parse_time(tester["last_activity_at"]),),
        "name": (),
    }
    return measures[sort_by]


async def test_list_testers_counts_every_author_of_the_account(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        answer = await call(client, "list_testers", {"limit": 100})
    expected = expected_testers(mirrored.truth)
    assert len(expected) >= 4  # the sandbox's testers all reported something
    assert_matches(answer["testers"], expected)
    assert answer["tester_count"] == len(expected)
    assert answer["bugs"] == len(mirrored.truth["bugs"])
    assert answer["next_cursor"] is None
    assert answer["sort_by"] == "bugs"
    assert answer["freshness"]["stale"] is False
    assert answer["freshness"]["as_of"] is not None


@pytest.mark.parametrize("sort_by", SORTS)
async def test_list_testers_orders_and_pages_as_asked(mirrored: Mirrored, sort_by: str) -> None:
    async with connect(mirrored.settings) as client:
        listed = await pages(
            client, "list_testers", {"product_id": PLAIN, "sort_by": sort_by, "limit": 2}, "testers"
        )
    assert_matches(listed, expected_testers(mirrored.truth, PLAIN))
    for before, after in itertools.pairwise(listed):
        first, second = order_key(sort_by, before), order_key(sort_by, after)
        assert first >= second, (sort_by, before, after)
        if first == second:
            assert identity(before["name"]) < identity(after["name"]), (sort_by, before, after)


async def test_list_testers_bounds_the_report_dates(mirrored: Mirrored) -> None:
    dates = sorted(
        parse_time(b["reported_at"])
        for b in mirrored.truth["bugs"].values()
        if b["product"]["id"] == SECTIONED
    )
    since, until = dates[len(dates) // 4].isoformat(), dates[len(dates) // 2].isoformat()
    args = {"product_id": SECTIONED, "since": since, "until": until, "limit": 100}
    async with connect(mirrored.settings) as client:
        answer = await call(client, "list_testers", args)
        nothing = await call(
            client, "list_testers", {"until": "2000-01-01T00:00:00Z", "limit": 100}
        )
    expected = expected_testers(mirrored.truth, SECTIONED, since, until)
    assert_matches(answer["testers"], expected)
    assert answer["bugs"] == sum(t["bugs"] for t in expected.values()) < len(dates)
    assert nothing["testers"] == []
    assert nothing["tester_count"] == 0
    assert "no bugs" in nothing["hint"]


async def test_list_testers_refuses_another_listings_cursor(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        first = await call(client, "list_testers", {"sort_by": "name", "limit": 1})
        error = await call_error(
            client, "list_testers", {"sort_by": "bugs", "cursor": first["next_cursor"]}
        )
    assert "cursor" in error


def expected_sections(product: JSON, tests: list[JSON]) -> list[JSON]:
    listed = {s["id"]: s for s in [*product["sections_with_default"], *product["sections"]]}
    per_section = Counter((t.get("section") or {}).get("id") for t in tests)
    return [
        {
            "id": section_id,
            "name": listed[section_id]["name"],
            "is_default": section_id == product["default_section_id"],
            "tests": per_section[section_id],
        }
        for section_id in sorted(listed)
    ]


def in_window(end_at: datetime, now: datetime, days: int) -> bool:
    return now - timedelta(days=days) <= end_at <= now


@pytest.mark.parametrize("product_id", [SECTIONED, PLAIN])
async def test_get_product_sums_up_the_product(mirrored: Mirrored, product_id: int) -> None:
    async with connect(mirrored.settings) as client:
        answer = await call(client, "get_product", {"product_id": product_id})
    truth = mirrored.truth
    product = truth["products"][product_id]
    tests = [t for t in truth["tests"].values() if t["product"]["id"] == product_id]
    bugs = [b for b in truth["bugs"].values() if b["product"]["id"] == product_id]
    now = parse_time(answer["now"])
    ends = [parse_time(t["end_at"]) for t in tests]
    assert answer["id"] == product_id
    assert answer["name"] == product["name"]
    assert answer["features"] == len(truth["features"][product_id])
    assert answer["tests"] == len(tests)
    assert answer["tests_last_30_days"] == sum(in_window(e, now, 30) for e in ends)
    assert answer["tests_last_90_days"] == sum(in_window(e, now, 90) for e in ends)
    assert 0 < answer["tests_last_30_days"] < answer["tests_last_90_days"]
    assert parse_time(answer["last_test_end_at"]) == max(e for e in ends if e <= now)
    assert answer["sections"] == expected_sections(product, tests)
    assert answer["bugs"]["total"] == len(bugs)
    assert answer["bugs"]["by_status"] == dict(sorted(Counter(b["status"] for b in bugs).items()))
    assert answer["bugs"]["by_severity"] == dict(
        sorted(Counter(b["severity"] for b in bugs).items())
    )
    statuses = Counter(b["status"] for b in bugs)
    assert answer["bugs"]["acceptance_rate"] == rate(statuses["accepted"], statuses["rejected"])
    assert answer["freshness"]["stale"] is False
    assert answer["bugs_freshness"]["stale"] is False


async def test_get_feature_sums_up_the_feature(mirrored: Mirrored) -> None:
    truth = mirrored.truth
    covered = Counter(f["feature_id"] for t in truth["tests"].values() for f in t["features"] or [])
    feature_id, _ = covered.most_common(1)[0]
    product_id = next(p for p, feats in truth["features"].items() if feature_id in feats)
    feature = truth["features"][product_id][feature_id]
    tests = [
        t
        for t in truth["tests"].values()
        if any(f["feature_id"] == feature_id for f in t["features"] or [])
    ]
    newest = sorted(tests, key=lambda t: (parse_time(t["end_at"]), t["id"]), reverse=True)[:5]
    bugs = [b for b in truth["bugs"].values() if (b["feature"] or {}).get("id") == feature_id]
    async with connect(mirrored.settings) as client:
        answer = await call(client, "get_feature", {"feature_id": feature_id})
    assert answer["title"] == feature["title"]
    assert answer["user_stories"] == feature["user_stories"]
    assert answer["product_id"] == product_id
    assert answer["product_name"] == truth["products"][product_id]["name"]
    assert answer["tests"] == len(tests) >= 2
    assert [t["id"] for t in answer["latest_tests"]] == [t["id"] for t in newest]
    assert answer["latest_tests"][0]["status"] == newest[0]["status"]
    statuses = Counter(b["status"] for b in bugs)
    assert answer["bugs"]["total"] == len(bugs) > 0
    assert answer["bugs"]["by_status"] == dict(sorted(statuses.items()))
    assert answer["bugs"]["by_severity"] == dict(
        sorted(Counter(b["severity"] for b in bugs).items())
    )
    assert answer["bugs"]["acceptance_rate"] == rate(statuses["accepted"], statuses["rejected"])
    assert answer["freshness"]["stale"] is False


async def test_unknown_ids_get_a_next_step(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        product = await call_error(client, "get_product", {"product_id": 999_999})
        feature = await call_error(client, "get_feature", {"feature_id": 999_999})
        testers = await call_error(client, "list_testers", {"sort_by": "loudest"})
    assert "999999 was not found" in product
    assert "list_products" in product
    assert "feature 999999 was not found" in feature
    assert "list_features" in feature
    assert "sort_by" in testers


async def test_list_testers_reads_the_open_tests_bug_lists_through(tmp_path: Path) -> None:
    """Bugs reported on an open test after the sync are counted once its bug list is stale
    (TESTIO_OPEN_TEST_TTL_SECONDS=0 here): the read-through fetches it first."""
    small = DatasetSpec(seed=5, products=2, tests_per_product=6, bugs_per_test=2)
    with synced_sandbox(small, tmp_path / "home", include_bugs=True) as m:
        before = m.sandbox.world.snapshot()
        open_test = next(
            t for t in before["tests"].values() if t["status"] not in ("archived", "cancelled")
        )
        product_id = open_test["product"]["id"]
        added = [m.sandbox.world.add_bug(open_test["id"]) for _ in range(3)]
        after = m.sandbox.world.snapshot()
        args = {"product_id": product_id, "limit": 100}
        async with connect(m.settings) as client:
            kept = await call(client, "list_testers", args)  # within the TTL: the mirror's copy
        stale = make_settings(m.sandbox, tmp_path / "home", open_test_ttl_seconds=0)
        async with connect(stale) as client:
            fetched = await call(client, "list_testers", args)
    assert kept["bugs"] == len(expected_bugs(before, product_id))
    assert fetched["bugs"] == len(expected_bugs(after, product_id)) == kept["bugs"] + len(added)
    assert_matches(fetched["testers"], expected_testers(after, product_id))
    assert fetched["freshness"]["stale"] is False


def expected_bugs(truth: JSON, product_id: int) -> list[JSON]:
    return [b for b in truth["bugs"].values() if b["product"]["id"] == product_id]
