"""query_metrics by platform (the operating system), browser and device category, over MCP after
one sync with bugs: every group worked out again in plain Python from the sandbox snapshot's
``devices`` (tests/helpers/expected_metrics.py: no SQL, no store code), with other dimensions,
filters and compare; a bug found on two systems counts in both groups and once in totals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_answers import parse_time
from tests.helpers.expected_metrics import (
    as_table,
    device_rows,
    every_row,
    expected,
    metrics_for,
    shift_previous,
)
from tests.helpers.mcp_session import JSON, Mirrored, call, call_error, connect, synced_sandbox

DATASET = DatasetSpec(
    seed=19, products=3, section_products=1, tests_per_product=40, bugs_per_test=4
)
FIELD_METRICS = ["field_count:affected_users", "field_mean:affected_users"]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("platforms"), include_bugs=True) as m:
        yield m


DIMENSION_SETS = [
    ("platform",),
    ("browser",),
    ("device_category",),
    ("platform", "month"),
    ("week", "browser"),
    ("platform", "browser"),
    ("device_category", "platform"),
    ("browser", "device_category"),
    ("product", "platform"),
    ("device_category", "severity"),
    ("status", "browser"),
    ("platform", "custom_field:customer_impact"),
]


@pytest.mark.parametrize("dimensions", DIMENSION_SETS, ids="+".join)
async def test_every_bug_metric_by_platform_matches_the_snapshot(
    mirrored: Mirrored, dimensions: tuple[str, ...]
) -> None:
    metrics = [*metrics_for(dimensions), *FIELD_METRICS]
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions)}
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    assert as_table(rows, dimensions) == expected(mirrored, metrics, dimensions, {})
    assert first["totals"] == expected(mirrored, metrics, (), {})[()]


def _bugs(mirrored: Mirrored) -> list[JSON]:
    return list(mirrored.truth["bugs"].values())


def filters(mirrored: Mirrored) -> list[JSON]:
    bugs = _bugs(mirrored)
    moments = sorted(parse_time(b["reported_at"]) for b in bugs)
    return [
        {"product_ids": [reporting_product(mirrored)]},
        {"severity": ["critical", "high"], "status": ["accepted", "rejected"]},
        {
            "since": moments[len(moments) // 4].isoformat(),
            "until": moments[3 * len(moments) // 4].isoformat(),
        },
        {"test_ids": sorted(mirrored.truth["tests"])[::7], "known": False},
        {"testing_type": ["coverage"], "tester": bugs[3]["author"]["name"]},
    ]


def reporting_product(mirrored: Mirrored) -> int:
    """The product with custom reports (the first generated)."""
    return min(p["id"] for p in mirrored.sandbox.world.products())


@pytest.mark.parametrize("which", range(5))
@pytest.mark.parametrize("dimensions", [("platform", "month"), ("browser",), ("device_category",)])
async def test_filters_choose_what_the_snapshot_says(
    mirrored: Mirrored, which: int, dimensions: tuple[str, ...]
) -> None:
    chosen = filters(mirrored)[which]
    metrics = [*metrics_for(dimensions), *FIELD_METRICS]
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions), **chosen}
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    want = expected(mirrored, metrics, dimensions, chosen)
    assert as_table(rows, dimensions) == want
    assert first["totals"] == expected(mirrored, metrics, (), chosen)[()]


async def test_a_bug_on_two_systems_counts_in_both_groups_and_once_in_totals(
    mirrored: Mirrored,
) -> None:
    two = next(b for b in _bugs(mirrored) if len({row["os"] for row in device_rows(b)}) == 2)
    systems = sorted({row["os"] for row in device_rows(two)})
    args: JSON = {
        "metrics": ["bug_count", "active_testers"],
        "dimensions": ["platform"],
        "test_ids": [two["test"]["id"]],
    }
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    table = as_table(rows, ("platform",))
    assert all(table[(system,)]["bug_count"] >= 1 for system in systems)
    assert sum(row["bug_count"] for row in table.values()) > first["totals"]["bug_count"]
    test_bugs = [b for b in _bugs(mirrored) if b["test"]["id"] == two["test"]["id"]]
    assert first["totals"]["bug_count"] == len(test_bugs)


@pytest.mark.parametrize("dimensions", [("platform",), ("month", "device_category")])
async def test_compare_by_platform(mirrored: Mirrored, dimensions: tuple[str, ...]) -> None:
    since, until = "2026-10-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00"
    metrics = ["bug_count", "acceptance_rate"]
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions), "since": since,
                  "until": until, "compare": True}  # fmt: skip
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    assert as_table(rows, dimensions) == expected(
        mirrored, metrics, dimensions, {"since": since, "until": until}
    )
    before = shift_previous(mirrored, metrics, dimensions, since, until)
    empty = {"bug_count": 0, "acceptance_rate": None}
    for row in rows:
        key = tuple(row["group"][d] for d in dimensions)
        assert row["previous"] == before.get(key, empty), key
    prior = {"since": "2026-08-31T00:00:00+00:00", "until": since}
    assert first["previous_totals"] == expected(mirrored, metrics, (), prior)[()]


async def test_sorting_by_platform_and_by_a_metric(mirrored: Mirrored) -> None:
    base: JSON = {"metrics": ["bug_count", "rejection_rate"], "dimensions": ["platform"]}
    async with connect(mirrored.settings) as client:
        by_name = (await call(client, "query_metrics", {**base, "sort_by": "platform"}))["rows"]
        by_count = (await call(client, "query_metrics", base))["rows"]
    names = [row["group"]["platform"] for row in by_name]
    assert names == sorted(n for n in names if n is not None) + [None] * names.count(None)
    counts = [row["values"]["bug_count"] for row in by_count]
    assert counts == sorted(counts, reverse=True)
    assert {"Android", "iOS", "Windows", "macOS"} <= set(names)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"metrics": ["test_count"], "dimensions": ["platform"]}, "drop the dimension"),
        ({"metrics": ["bugs_per_test"], "dimensions": ["browser"]}, "no browser"),
        ({"metrics": ["bug_count"], "dimensions": ["platforms"]}, "expected one of product"),
    ],
)
async def test_what_cannot_be_grouped_by_platform_says_so(
    mirrored: Mirrored, args: JSON, says: str
) -> None:
    async with connect(mirrored.settings) as client:
        text = await call_error(client, "query_metrics", args)
    assert says in text
