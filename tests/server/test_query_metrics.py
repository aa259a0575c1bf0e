"""query_metrics over MCP after one sync with bugs: every metric is worked out again here in
plain Python from the sandbox's snapshot (no SQL, no store code) and compared with the answer,
for several dimension pairs and filters, empty groups and periods with no data, compare, sorting
and paging."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp import Client

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_answers import parse_time
from tests.helpers.mcp_session import JSON, Mirrored, call, call_error, connect, synced_sandbox

DATASET = DatasetSpec(
    seed=11, products=3, section_products=1, tests_per_product=40, bugs_per_test=4
)
ALL_METRICS = (
    "test_count", "bug_count", "bugs_per_test", "accepted", "rejected", "forwarded",
    "auto_accepted", "acceptance_rate", "active_acceptance_rate", "auto_acceptance_rate",
    "rejection_rate", "review_rate", "severity_score", "critical_count", "active_testers",
    "features_tested", "tests_created", "tests_submitted",
)  # fmt: skip
TEST_METRICS = {
    "test_count",
    "bugs_per_test",
    "features_tested",
    "tests_created",
    "tests_submitted",
}
BUG_ONLY_DIMENSIONS = {"tester", "severity", "status", "rejection_reason", "known"}
TIME = ("day", "week", "month", "quarter")
WEIGHT = {"critical": 10, "high": 5, "custom": 2, "low": 1, "visual": 1, "content": 1}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("metrics"), include_bugs=True) as mirror:
        yield mirror


# --- the oracle: plain Python over the snapshot ------------------------------------------------


def bucket(unit: str, moment: datetime) -> str:
    day = moment.astimezone(UTC).date()
    if unit == "day":
        return day.isoformat()
    if unit == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if unit == "month":
        return day.strftime("%Y-%m")
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def days_between(first: datetime, last: datetime) -> Iterator[datetime]:
    moment = datetime(first.year, first.month, first.day, tzinfo=UTC)
    while moment <= last:
        yield moment
        moment += timedelta(days=1)


def facts(mirrored: Mirrored) -> tuple[list[JSON], list[JSON]]:
    """Every bug and every test of the snapshot, as the dimensions see them."""
    truth = mirrored.truth
    reasons = {r["default_comment"]: r["key"] for r in mirrored.sandbox.world.reject_reasons()}
    tests = []
    for test in truth["tests"].values():
        tests.append(
            {
                "product": str(test["product"]["id"]),
                "features": sorted({str(f["feature_id"]) for f in test["features"]}),
                "test": str(test["id"]),
                "testing_type": test["testing_type"],
                "test_environment": (test.get("test_environment") or {}).get("title"),
                "at": parse_time(test["end_at"]),
                "created": test["created_by"] is not None,
                "submitted": test["submitted_by"] is not None,
            }
        )
    by_id = {t["test"]: t for t in tests}
    bugs = []
    for bug in truth["bugs"].values():
        test = by_id[str(bug["test"]["id"])]
        reason = None
        if bug["status"] == "rejected":
            for comment in bug["comments"]:
                reason = reasons.get(comment["body"], reason)
        bugs.append(
            {
                "product": str(bug["product"]["id"]),
                "feature": str(bug["feature"]["id"]) if bug["feature"] else None,
                "test": test["test"],
                "tester": bug["author"]["name"],
                "severity": bug["severity"],
                "status": bug["status"],
                "testing_type": test["testing_type"],
                "test_environment": test["test_environment"],
                "rejection_reason": reason,
                "known": "true" if bug["known"] else "false",
                "auto": bug["auto_accepted"],
                "at": parse_time(bug["reported_at"]),
            }
        )
    return bugs, tests


def keep_bug(bug: JSON, tests: dict[str, JSON], f: JSON) -> bool:
    test = tests[bug["test"]]
    return all(
        (
            not f.get("product_ids") or bug["product"] in map(str, f["product_ids"]),
            not f.get("feature_ids") or bug["feature"] in map(str, f["feature_ids"]),
            not f.get("test_ids") or bug["test"] in map(str, f["test_ids"]),
            not f.get("testing_type") or test["testing_type"] in f["testing_type"],
            not f.get("severity") or bug["severity"] in f["severity"],
            not f.get("status") or bug["status"] in f["status"],
            not f.get("tester") or bug["tester"] == f["tester"],
            f.get("known") is None or bug["known"] == ("true" if f["known"] else "false"),
            "since" not in f or bug["at"] >= parse_time(f["since"]),
            "until" not in f or bug["at"] < parse_time(f["until"]),
        )
    )


def keep_test(test: JSON, f: JSON) -> bool:
    chosen = set(map(str, f.get("feature_ids") or ()))
    return all(
        (
            not f.get("product_ids") or test["product"] in map(str, f["product_ids"]),
            not chosen or chosen & set(test["features"]),
            not f.get("test_ids") or test["test"] in map(str, f["test_ids"]),
            not f.get("testing_type") or test["testing_type"] in f["testing_type"],
            "since" not in f or test["at"] >= parse_time(f["since"]),
            "until" not in f or test["at"] < parse_time(f["until"]),
        )
    )


def rate(top: int, bottom: int) -> float | None:
    return round(top / bottom, 4) if bottom else None


def values(bugs: list[JSON], tests: list[JSON], f: JSON, metrics: Sequence[str]) -> JSON:
    accepted = sum(b["status"] == "accepted" for b in bugs)
    rejected = sum(b["status"] == "rejected" for b in bugs)
    auto = sum(b["status"] == "accepted" and bool(b["auto"]) for b in bugs)
    chosen = set(map(str, f.get("feature_ids") or ()))
    features = {b["feature"] for b in bugs if b["feature"]} | {
        feature for t in tests for feature in t["features"] if not chosen or feature in chosen
    }
    every = {
        "test_count": len(tests),
        "bug_count": len(bugs),
        "bugs_per_test": rate(len(bugs), len(tests)),
        "accepted": accepted,
        "rejected": rejected,
        "forwarded": sum(b["status"] == "forwarded" for b in bugs),
        "auto_accepted": auto,
        "acceptance_rate": rate(accepted, accepted + rejected),
        "active_acceptance_rate": rate(accepted - auto, accepted + rejected),
        "auto_acceptance_rate": rate(auto, accepted),
        "rejection_rate": rate(rejected, accepted + rejected),
        "review_rate": rate(accepted + rejected, len(bugs)),
        "severity_score": sum(WEIGHT.get(b["severity"], 0) for b in bugs),
        "critical_count": sum(b["severity"] == "critical" for b in bugs),
        "active_testers": len({b["tester"] for b in bugs}),
        "features_tested": len(features),
        "tests_created": sum(t["created"] for t in tests),
        "tests_submitted": sum(t["submitted"] for t in tests),
    }
    return {name: every[name] for name in metrics}


def keys_of(
    item: JSON, dimensions: Sequence[str], f: JSON, *, is_test: bool
) -> list[tuple[Any, ...]]:
    """The groups one bug or test falls in (a test: one per feature it covers)."""
    options: list[list[Any]] = []
    for name in dimensions:
        if name in TIME:
            options.append([bucket(name, item["at"])])
        elif name == "feature" and is_test:
            chosen = set(map(str, f.get("feature_ids") or ()))
            covered = [x for x in item["features"] if not chosen or x in chosen]
            options.append(covered or [None])
        else:
            options.append([item[name]])
    keys: list[tuple[Any, ...]] = [()]
    for choice in options:
        keys = [(*key, value) for key in keys for value in choice]
    return keys


def expected(
    mirrored: Mirrored, metrics: Sequence[str], dimensions: Sequence[str], f: JSON
) -> dict[tuple[Any, ...], JSON]:
    """Every group the answer must hold and its values, empty time buckets included."""
    all_bugs, all_tests = facts(mirrored)
    by_id = {t["test"]: t for t in all_tests}
    bugs = [b for b in all_bugs if keep_bug(b, by_id, f)]
    tests = [t for t in all_tests if keep_test(t, f)]
    grouped_bugs: dict[tuple[Any, ...], list[JSON]] = {}
    grouped_tests: dict[tuple[Any, ...], list[JSON]] = {}
    counts_tests = bool(TEST_METRICS & set(metrics))
    counts_bugs = (
        bool(set(metrics) - TEST_METRICS)
        or "bugs_per_test" in metrics
        or ("features_tested" in metrics)
    )
    if counts_bugs:
        for b in bugs:
            for key in keys_of(b, dimensions, f, is_test=False):
                grouped_bugs.setdefault(key, []).append(b)
    if counts_tests:
        for t in tests:
            for key in keys_of(t, dimensions, f, is_test=True):
                grouped_tests.setdefault(key, []).append(t)
    groups = set(grouped_bugs) | set(grouped_tests)
    time_at = next((i for i, d in enumerate(dimensions) if d in TIME), None)
    if time_at is not None:
        unit = dimensions[time_at]
        # The period's bounds where given, else the data's first and last moments.
        moments = [b["at"] for b in bugs if counts_bugs] + [t["at"] for t in tests if counts_tests]
        first = parse_time(f["since"]) if "since" in f else min(moments, default=None)
        last = max(moments, default=None)
        if "until" in f:
            last = parse_time(f["until"]) - timedelta(microseconds=1)
        line = []
        if first is not None and last is not None:
            line = list(dict.fromkeys(bucket(unit, d) for d in days_between(first, last)))
        others = {key[1 - time_at] for key in groups} if len(dimensions) == 2 else {None}
        for b_key in line:
            for other in others:
                key = (
                    (b_key,)
                    if len(dimensions) == 1
                    else ((b_key, other) if time_at == 0 else (other, b_key))
                )
                groups.add(key)
    if not dimensions:
        groups = {()}
    return {
        key: values(grouped_bugs.get(key, []), grouped_tests.get(key, []), f, metrics)
        for key in groups
    }


# --- talking to the tool -----------------------------------------------------------------------


async def every_row(client: Client, args: JSON) -> tuple[list[JSON], JSON]:
    """Every row of a query, following next_cursor; and the first answer."""
    first = answer = await call(client, "query_metrics", {**args, "limit": 100})
    rows = list(answer["rows"])
    while answer["next_cursor"] is not None:
        answer = await call(
            client, "query_metrics", {**args, "limit": 100, "cursor": answer["next_cursor"]}
        )
        rows.extend(answer["rows"])
    assert len(rows) == first["row_count"]
    return rows, first


def as_table(rows: list[JSON], dimensions: Sequence[str]) -> dict[tuple[Any, ...], JSON]:
    table = {tuple(row["group"][d] for d in dimensions): row["values"] for row in rows}
    assert len(table) == len(rows), "a group answered twice"
    return table


def metrics_for(dimensions: Sequence[str]) -> list[str]:
    if BUG_ONLY_DIMENSIONS & set(dimensions):
        return [m for m in ALL_METRICS if m not in TEST_METRICS]
    return list(ALL_METRICS)


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


def shift_previous(
    mirrored: Mirrored, metrics: list[str], dimensions: Sequence[str], since: str, until: str
) -> dict[tuple[Any, ...], JSON]:
    start, end = parse_time(since), parse_time(until)
    before = (start - (end - start)).isoformat()
    prior = expected(mirrored, metrics, dimensions, {"since": before, "until": since})
    time_at = next((i for i, d in enumerate(dimensions) if d in TIME), None)
    if time_at is None:
        return prior
    unit = dimensions[time_at]
    line = lambda a, b: list(  # noqa: E731
        dict.fromkeys(bucket(unit, d) for d in days_between(a, b - timedelta(microseconds=1)))
    )
    now, old = line(start, end), line(parse_time(before), start)
    offset = len(old) - len(now)
    moved = {o: now[i - offset] for i, o in enumerate(old) if 0 <= i - offset < len(now)}
    shifted = {}
    for key, got in prior.items():
        if key[time_at] in moved:
            new = list(key)
            new[time_at] = moved[key[time_at]]
            shifted[tuple(new)] = got
    return shifted


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
