"""query_metrics over MCP after one sync with bugs: every metric is worked out again in plain
Python from the sandbox's snapshot (tests/helpers/expected_metrics.py: no SQL, no store code) and
compared with the answer, for several dimension pairs and filters, empty groups and periods with
no data, compare, sorting, paging, the size ceiling and the read-through."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator

import pytest

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_answers import parse_time
from tests.helpers.expected_metrics import (
    ALL_METRICS,
    TIME,
    as_table,
    every_row,
    expected,
    metrics_for,
    shift_previous,
)
from tests.helpers.mcp_session import JSON, Mirrored, call, call_error, connect, synced_sandbox

DATASET = DatasetSpec(
    seed=11, products=3, section_products=1, tests_per_product=40, bugs_per_test=4
)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("metrics"), include_bugs=True) as mirror:
        yield mirror


DIMENSION_SETS = [
    (),
    ("product",),
    ("feature",),
    ("test",),
    ("testing_type",),
    ("test_environment",),
    ("month",),
    ("week",),
    ("quarter",),
    ("product", "month"),
    ("day", "product"),
    ("feature", "testing_type"),
    ("severity", "status"),
    ("tester",),
    ("rejection_reason", "product"),
    ("known", "severity"),
]


@pytest.mark.parametrize("dimensions", DIMENSION_SETS, ids=lambda d: "+".join(d) or "none")
async def test_every_metric_by_dimensions_matches_the_snapshot(
    mirrored: Mirrored, dimensions: tuple[str, ...]
) -> None:
    metrics = metrics_for(dimensions)
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions)}
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    want = expected(mirrored, metrics, dimensions, {})
    assert as_table(rows, dimensions) == want
    assert first["totals"] == expected(mirrored, metrics, (), {})[()]
    assert first["freshness"]["stale"] is False, first["freshness"]
    if any(d in TIME for d in dimensions):
        at = next(i for i, d in enumerate(dimensions) if d in TIME)
        times = [row["group"][dimensions[at]] for row in rows]
        assert times == sorted(times), "time buckets in time order"


def _bugs(mirrored: Mirrored) -> list[JSON]:
    return list(mirrored.truth["bugs"].values())


def filters(mirrored: Mirrored) -> list[JSON]:
    bugs = _bugs(mirrored)
    moments = sorted(parse_time(b["reported_at"]) for b in bugs)
    since = moments[len(moments) // 3].isoformat()
    until = moments[2 * len(moments) // 3].isoformat()
    some_feature = next(b["feature"]["id"] for b in bugs if b["feature"])
    tester = bugs[0]["author"]["name"]
    tests = sorted(mirrored.truth["tests"])[::5]
    return [
        {"product_ids": [101, 103]},
        {"feature_ids": [some_feature]},
        {"test_ids": tests},
        {"testing_type": ["coverage", "rapid"]},
        {"severity": ["critical", "high"], "status": ["accepted"]},
        {"tester": tester, "known": False},
        {"since": since, "until": until},
        {"product_ids": [102], "since": since, "testing_type": ["focused"]},
    ]


@pytest.mark.parametrize("which", range(8))
@pytest.mark.parametrize("dimensions", [("product", "month"), ("feature",), ("severity", "tester")])
async def test_filters_choose_what_the_snapshot_says(
    mirrored: Mirrored, which: int, dimensions: tuple[str, ...]
) -> None:
    chosen = filters(mirrored)[which]
    metrics = metrics_for(dimensions)
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions), **chosen}
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    assert as_table(rows, dimensions) == expected(mirrored, metrics, dimensions, chosen)
    assert first["totals"] == expected(mirrored, metrics, (), chosen)[()]


async def test_a_period_without_data_answers_every_bucket_empty(mirrored: Mirrored) -> None:
    args: JSON = {
        "metrics": ["bug_count", "test_count", "acceptance_rate", "bugs_per_test"],
        "dimensions": ["week"],
        "since": "2020-01-01T00:00:00Z",
        "until": "2020-03-01T00:00:00Z",
    }
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    assert [row["group"]["week"] for row in rows] == [
        "2019-12-30", *(f"2020-01-{d:02d}" for d in (6, 13, 20, 27)),
        *(f"2020-02-{d:02d}" for d in (3, 10, 17, 24)),
    ]  # fmt: skip
    for row in rows:
        assert row["values"] == {
            "bug_count": 0, "test_count": 0, "acceptance_rate": None, "bugs_per_test": None
        }  # fmt: skip
    assert first["totals"]["bug_count"] == 0
    assert first["totals"]["acceptance_rate"] is None
    assert first["freshness"]["stale"] is False, "nothing to fetch for a period without tests"


async def test_empty_buckets_inside_the_data_are_answered(mirrored: Mirrored) -> None:
    """Days without a bug between the first and the last are rows of zeros, for each product."""
    dimensions = ("day", "product")
    args: JSON = {"metrics": ["bug_count", "rejection_rate"], "dimensions": list(dimensions)}
    async with connect(mirrored.settings) as client:
        rows, _ = await every_row(client, args)
    table = as_table(rows, dimensions)
    empty = [key for key, got in table.items() if got["bug_count"] == 0]
    assert empty, "the dataset should have days without bugs of some product"
    assert all(table[key]["rejection_rate"] is None for key in empty)
    assert table == expected(mirrored, ["bug_count", "rejection_rate"], dimensions, {})


@pytest.mark.parametrize("dimensions", [("product",), ("month",), ("severity",)])
async def test_compare_gives_the_previous_period_and_the_change(
    mirrored: Mirrored, dimensions: tuple[str, ...]
) -> None:
    since, until = "2026-10-16T00:00:00+00:00", "2026-11-01T00:00:00+00:00"
    metrics = ["bug_count", "acceptance_rate"]
    args: JSON = {"metrics": metrics, "dimensions": list(dimensions), "since": since,
                  "until": until, "compare": True}  # fmt: skip
    async with connect(mirrored.settings) as client:
        rows, first = await every_row(client, args)
    now = expected(mirrored, metrics, dimensions, {"since": since, "until": until})
    before = shift_previous(mirrored, metrics, dimensions, since, until)
    assert first["previous_period"] == {
        "since": "2026-09-30T00:00:00Z",
        "until": "2026-10-16T00:00:00Z",
    }
    assert as_table(rows, dimensions) == now
    empty = {"bug_count": 0, "acceptance_rate": None}
    changed = 0
    for row in rows:
        key = tuple(row["group"][d] for d in dimensions)
        old = before.get(key, empty)
        assert row["previous"] == old, key
        for name in metrics:
            value, prior = row["values"][name], old[name]
            delta = None if value is None or prior is None else round(value - prior, 4)
            assert row["change"][name] == delta
            assert row["relative_change"][name] == (
                round(delta / prior, 4) if delta is not None and prior else None
            )
            changed += delta not in (None, 0)
    assert changed, "the periods should differ somewhere"
    assert (
        first["previous_totals"]
        == expected(mirrored, metrics, (), {"since": "2026-09-30T00:00:00+00:00", "until": since})[
            ()
        ]
    )


async def test_sorting_and_paging(mirrored: Mirrored) -> None:
    base: JSON = {"metrics": ["bug_count", "rejection_rate"], "dimensions": ["test"]}
    async with connect(mirrored.settings) as client:
        default, _ = await every_row(client, base)
        by_rate, _ = await every_row(client, {**base, "sort_by": "rejection_rate"})
        by_test, _ = await every_row(client, {**base, "sort_by": "test"})
        page = await call(client, "query_metrics", {**base, "limit": 7})
        second = await call(
            client, "query_metrics", {**base, "limit": 7, "cursor": page["next_cursor"]}
        )
        other = await call_error(
            client, "query_metrics", {"metrics": ["bug_count"], "cursor": page["next_cursor"]}
        )
    counts = [row["values"]["bug_count"] for row in default]
    assert counts == sorted(counts, reverse=True)
    rates = [row["values"]["rejection_rate"] for row in by_rate]
    present = [r for r in rates if r is not None]
    assert present == sorted(present, reverse=True)
    assert rates[: len(present)] == present, "nulls last"
    assert [int(row["group"]["test"]) for row in by_test] == sorted(
        int(r["group"]["test"]) for r in default
    )
    assert page["rows"] + second["rows"] == default[:14]
    assert "cursor" in other
    truth = mirrored.truth["tests"]
    assert all(
        row["labels"]["test"] == truth[int(row["group"]["test"])]["title"] for row in default
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"metrics": ["bug_count", "nope"]}, "expected one of test_count"),
        ({"metrics": ["bug_count"], "dimensions": ["planet"]}, "expected one of product"),
        ({"metrics": ["test_count"], "dimensions": ["severity"]}, "drop the dimension"),
        ({"metrics": ["bug_count"], "dimensions": ["day", "week"]}, "one time dimension"),
        ({"metrics": ["bug_count"], "compare": True}, "needs both since and until"),
        ({"metrics": ["bug_count"], "sort_by": "test_count"}, "sort_by must be one of"),
        (
            {"metrics": ["bug_count"], "dimensions": ["day"], "since": "2000-01-01",
             "until": "2026-01-01"},
            "narrow since/until or group by week",
        ),
    ],
)  # fmt: skip
async def test_what_cannot_be_answered_says_what_can(
    mirrored: Mirrored, args: JSON, says: str
) -> None:
    async with connect(mirrored.settings) as client:
        text = await call_error(client, "query_metrics", args)
    assert says in text


async def test_the_definitions_resource_names_every_metric(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        found = await client.read_resource("testio://metrics/definitions")
    body = json.loads(found.contents[0].text)  # type: ignore[union-attr]
    assert [m["name"] for m in body["metrics"]] == list(ALL_METRICS)
    rates = [m for m in body["metrics"] if m["name"].endswith("_rate")]
    assert rates
    assert all(m["denominator"] for m in rates)
    assert {d["name"] for d in body["dimensions"]} >= {"product", "tester", "quarter", "known"}


async def test_the_default_answer_stays_under_ten_kilobytes(mirrored: Mirrored) -> None:
    args: JSON = {
        "metrics": ["bug_count", "acceptance_rate", "severity_score"],
        "dimensions": ["test", "month"],
    }
    async with connect(mirrored.settings) as client:
        result = await client.call_tool("query_metrics", args)
    text = "".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error
    assert len(result.structured_content["rows"]) == 50  # type: ignore[index]
    assert len(text.encode()) < 10_000, len(text.encode())


async def test_bugs_of_the_tests_in_scope_are_read_through_first(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A mirror whose bug lists were never fetched: a query over one product (70 tests, under
    the read-through bound) fetches them first and counts them; a query over every test (210)
    does not, and says so."""
    home = tmp_path_factory.mktemp("metrics-readthrough")
    spec = DatasetSpec(seed=5, products=3, tests_per_product=70, bugs_per_test=2)
    with synced_sandbox(spec, home, include_bugs=False) as bare:
        with contextlib.closing(sqlite3.connect(bare.settings.database_path)) as db, db:
            db.execute("DELETE FROM bugs")
            db.execute("UPDATE tests SET bugs_fetched_at = NULL")
        product = 102
        truth = [b for b in bare.truth["bugs"].values() if b["product"]["id"] == product]
        async with connect(bare.settings) as client:
            wide = await call(client, "query_metrics", {"metrics": ["bug_count"]})
            narrow = await call(
                client, "query_metrics", {"metrics": ["bug_count"], "product_ids": [product]}
            )
    assert wide["totals"]["bug_count"] == 0
    assert wide["freshness"]["stale"] is True
    assert "never fetched" in wide["freshness"]["stale_reason"]
    assert narrow["freshness"]["source"] == "api"
    assert narrow["totals"]["bug_count"] == len(truth) > 0


async def test_an_answer_over_the_ceiling_goes_on_after_the_last_row_kept(
    mirrored: Mirrored,
) -> None:
    ceiling = 4_000
    settings = mirrored.settings.model_copy(update={"max_answer_bytes": ceiling})
    args: JSON = {"metrics": metrics_for(("test",)), "dimensions": ["test"], "limit": 100}
    async with connect(mirrored.settings) as client:
        whole, _ = await every_row(client, args)
    rows: list[JSON] = []
    cut = 0
    cursor: str | None = None
    async with connect(settings) as client:
        for _ in range(len(whole) + 1):
            result = await client.call_tool(
                "query_metrics", {**args, "cursor": cursor} if cursor else args
            )
            answer = result.structured_content or {}
            text = "".join(getattr(block, "text", "") for block in result.content)
            assert len(text.encode()) <= ceiling
            cut += bool(answer.get("truncated"))
            rows.extend(answer["rows"])
            cursor = answer["next_cursor"]
            if cursor is None:
                break
    assert cut > 0
    assert rows == whole, "the cut pages lost or repeated rows"
