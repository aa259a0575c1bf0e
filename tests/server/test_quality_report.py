"""quality_report over MCP after one sync with bugs: every figure worked out again in plain Python
from the sandbox's snapshot (no SQL, no store code), the previous period and the change, the
levels against the thresholds (and settings that move them), an empty period, the drivers of the
critical bugs, what is stale when a product was never listed or bugs never fetched, and the size
of the answer."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.errors import SettingsError
from testio_mirror.sandbox import DatasetSpec
from testio_mirror.sandbox.dataset import preset
from testio_mirror.settings import load_settings
from testio_mirror.store.metrics_buckets import MetricsQueryError
from testio_mirror.store.quality_report import HealthThresholds, Threshold, period_of
from tests.conftest import SandboxFactory
from tests.helpers.expected_answers import parse_time
from tests.helpers.expected_metrics import facts
from tests.helpers.mcp_session import JSON, Mirrored, call, call_error, connect, synced_sandbox
from tests.helpers.settings import make_settings

DATASET = DatasetSpec(
    seed=11, products=3, section_products=1, tests_per_product=40, bugs_per_test=4
)
DEFAULTS = {  # rate: (warning, critical, bad when)
    "acceptance_rate": (0.6, 0.4, "below"),
    "rejection_rate": (0.3, 0.5, "above"),
    "auto_acceptance_rate": (0.3, 0.5, "above"),
    "review_rate": (0.7, 0.5, "below"),
}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("quality"), include_bugs=True) as mirror:
        yield mirror


def middle_period(mirrored: Mirrored) -> tuple[str, str]:
    """A period of the data's second half: the previous period of equal length holds data too."""
    moments = sorted(parse_time(b["reported_at"]) for b in mirrored.truth["bugs"].values())
    first, last = moments[0], moments[-1]
    until = last + timedelta(seconds=1)
    return (until - (until - first) / 2).isoformat(), until.isoformat()


def rate(top: int, bottom: int) -> float | None:
    return round(top / bottom, 4) if bottom else None


def level(value: float | None, warning: float, critical: float, bad_when: str) -> str:
    if value is None:
        return "no_data"
    sign = 1 if bad_when == "below" else -1
    if sign * value < sign * critical:
        return "critical"
    return "warning" if sign * value < sign * warning else "ok"


def scope_facts(mirrored: Mirrored, products: set[str], since: str, until: str) -> JSON:
    """Counts, tallies and rates of ``products`` over [since, until), from the snapshot."""
    start, end = parse_time(since), parse_time(until)
    bugs, _ = facts(mirrored)
    chosen = [b for b in bugs if b["product"] in products and start <= b["at"] < end]
    tests = [
        t
        for t in mirrored.truth["tests"].values()
        if str(t["product"]["id"]) in products and start <= parse_time(t["end_at"]) < end
    ]
    status = Counter(b["status"] for b in chosen)
    counts = {
        "tests": len(tests),
        "bugs": len(chosen),
        "accepted": status["accepted"],
        "rejected": status["rejected"],
        "forwarded": status["forwarded"],
        "auto_accepted": sum(b["status"] == "accepted" and bool(b["auto"]) for b in chosen),
        "critical": sum(b["severity"] == "critical" for b in chosen),
    }
    decided = counts["accepted"] + counts["rejected"]
    return {
        "counts": counts,
        "tests_by_status": dict(sorted(Counter(t["status"] for t in tests).items())),
        "bugs_by_severity": dict(sorted(Counter(b["severity"] for b in chosen).items())),
        "bugs_by_status": dict(sorted(status.items())),
        "rates": {
            "acceptance_rate": (rate(counts["accepted"], decided), decided),
            "rejection_rate": (rate(counts["rejected"], decided), decided),
            "auto_acceptance_rate": (
                rate(counts["auto_accepted"], counts["accepted"]),
                counts["accepted"],
            ),
            "review_rate": (rate(decided, counts["bugs"]), counts["bugs"]),
        },
    }


def previous_of(since: str, until: str) -> tuple[str, str]:
    start, end = parse_time(since), parse_time(until)
    return (start - (end - start)).isoformat(), since


def check_scope(got: JSON, want: JSON, before: JSON, thresholds: dict[str, Any]) -> None:
    assert got["counts"] == want["counts"]
    assert got["previous_counts"] == before["counts"]
    assert got["change"] == {k: v - before["counts"][k] for k, v in want["counts"].items()}
    assert got["tests_by_status"] == want["tests_by_status"]
    assert got["bugs_by_severity"] == want["bugs_by_severity"]
    assert got["bugs_by_status"] == want["bugs_by_status"]
    for name, (value, denominator) in want["rates"].items():
        warning, critical, bad_when = thresholds[name]
        previous = before["rates"][name][0]
        change = None if value is None or previous is None else round(value - previous, 4)
        figure = got["rates"][name]
        assert figure == {
            "value": value,
            "denominator": denominator,
            "level": level(value, warning, critical, bad_when),
            "warning": warning,
            "critical": critical,
            "bad_when": bad_when,
            "previous": previous,
            "change": pytest.approx(change) if change is not None else None,
        }, name


async def test_every_figure_per_product_and_overall_matches_the_snapshot(
    mirrored: Mirrored,
) -> None:
    since, until = middle_period(mirrored)
    before = previous_of(since, until)
    async with connect(mirrored.settings) as client:
        report = await call(client, "quality_report", {"since": since, "until": until})
    every = {str(p["id"]) for p in mirrored.truth["products"].values()}
    assert report["products_total"] == len(every)
    assert parse_time(report["period"]["since"]) == parse_time(since)
    assert parse_time(report["previous_period"]["since"]) == parse_time(before[0])
    assert parse_time(report["previous_period"]["until"]) == parse_time(since)
    check_scope(
        report["overall"],
        scope_facts(mirrored, every, since, until),
        scope_facts(mirrored, every, *before),
        DEFAULTS,
    )
    assert {str(p["product_id"]) for p in report["products"]} == every
    bugs = [p["counts"]["bugs"] for p in report["products"]]
    assert bugs == sorted(bugs, reverse=True), "most bugs first"
    for product in report["products"]:
        pid = {str(product["product_id"])}
        check_scope(
            product,
            scope_facts(mirrored, pid, since, until),
            scope_facts(mirrored, pid, *before),
            DEFAULTS,
        )
    assert report["freshness"]["stale"] is False, report["freshness"]
    assert report["staleness"]["never_listed"] == []
    assert report["staleness"]["tests_without_bugs"] == 0
    assert any("last sync ended" in note for note in report["staleness"]["notes"])


async def test_one_product_is_reported_alone(mirrored: Mirrored) -> None:
    since, until = middle_period(mirrored)
    async with connect(mirrored.settings) as client:
        report = await call(
            client, "quality_report", {"product_ids": 102, "since": since, "until": until}
        )
    assert report["products_total"] == 1
    assert [p["product_id"] for p in report["products"]] == [102]
    want = scope_facts(mirrored, {"102"}, since, until)
    assert report["overall"]["counts"] == want["counts"] == report["products"][0]["counts"]


async def test_the_critical_bugs_drivers_are_the_top_features_and_testers(
    mirrored: Mirrored,
) -> None:
    since, until = middle_period(mirrored)
    start, end = parse_time(since), parse_time(until)
    bugs, _ = facts(mirrored)
    critical = [b for b in bugs if b["severity"] == "critical" and start <= b["at"] < end]
    features = Counter(b["feature"] for b in critical)
    testers = Counter(b["tester"] for b in critical)
    titles = {
        str(fid): f["title"]
        for feats in mirrored.truth["features"].values()
        for fid, f in feats.items()
    }
    async with connect(mirrored.settings) as client:
        report = await call(client, "quality_report", {"since": since, "until": until})
    drivers = report["critical_drivers"]
    assert drivers["critical_bugs"] == len(critical)
    assert drivers["features_total"] == len(features)
    assert drivers["testers_total"] == len(testers)
    for listed, counted, total in (
        (drivers["features"], features, len(features)),
        (drivers["testers"], testers, len(testers)),
    ):
        assert len(listed) == min(5, total)
        counts = [d["critical_bugs"] for d in listed]
        assert counts == sorted(counted.values(), reverse=True)[: len(listed)], "the top ones"
        for d in listed:
            assert counted[None if d["key"] == "none" else d["key"]] == d["critical_bugs"]
    for d in drivers["features"]:
        if d["key"] != "none":
            assert d["name"] == titles[d["key"]]
    more = len(features) > 5 or len(testers) > 5
    assert ("hint" in drivers) == more
    if len(features) > 5:
        assert "query_metrics" in drivers["hint"]
    if len(testers) > 5:
        assert "list_testers" in drivers["hint"]


async def test_a_period_without_data_has_zero_counts_and_no_data_rates(
    mirrored: Mirrored,
) -> None:
    async with connect(mirrored.settings) as client:
        report = await call(
            client, "quality_report", {"since": "2020-01-01", "until": "2020-02-01"}
        )
    for scope in (report["overall"], *report["products"]):
        assert set(scope["counts"].values()) == {0}
        assert set(scope["previous_counts"].values()) == {0}
        assert scope["tests_by_status"] == scope["bugs_by_severity"] == {}
        for figure in scope["rates"].values():
            assert figure["value"] is None
            assert figure["denominator"] == 0
            assert figure["level"] == "no_data"
            assert figure["change"] is None
    assert report["critical_drivers"]["critical_bugs"] == 0
    assert report["critical_drivers"]["features"] == []
    assert report["staleness"]["tests_in_scope"] == 0


async def test_thresholds_from_settings_move_the_levels(mirrored: Mirrored, tmp_path: Path) -> None:
    since, until = middle_period(mirrored)
    strict = {
        "acceptance_rate": (0.99, 0.98, "below"),
        "rejection_rate": (0.01, 0.02, "above"),
        "auto_acceptance_rate": (0.9, 0.95, "above"),
        "review_rate": (0.1, 0.05, "below"),
    }
    overrides = {
        f"health_{name}_{which}": value
        for name, (warning, critical, _) in strict.items()
        for which, value in (("warning", warning), ("critical", critical))
    }
    settings = mirrored.settings.model_copy(update=overrides)
    async with connect(settings) as client:
        report = await call(client, "quality_report", {"since": since, "until": until})
    every = {str(p["id"]) for p in mirrored.truth["products"].values()}
    want = scope_facts(mirrored, every, since, until)
    check_scope(
        report["overall"], want, scope_facts(mirrored, every, *previous_of(since, until)), strict
    )
    assert report["overall"]["rates"]["acceptance_rate"]["level"] == "critical"
    assert report["overall"]["rates"]["review_rate"]["level"] == "ok"


@pytest.mark.parametrize(
    ("value", "warning", "critical", "bad_when", "want"),
    [
        (None, 0.6, 0.4, "below", "no_data"),
        (0.6, 0.6, 0.4, "below", "ok"),
        (0.5999, 0.6, 0.4, "below", "warning"),
        (0.4, 0.6, 0.4, "below", "warning"),
        (0.3999, 0.6, 0.4, "below", "critical"),
        (0.0, 0.6, 0.4, "below", "critical"),
        (0.3, 0.3, 0.5, "above", "ok"),
        (0.3001, 0.3, 0.5, "above", "warning"),
        (0.5, 0.3, 0.5, "above", "warning"),
        (0.5001, 0.3, 0.5, "above", "critical"),
        (1.0, 0.3, 0.5, "above", "critical"),
    ],
)
def test_a_threshold_gives_the_level(
    value: float | None, warning: float, critical: float, bad_when: Any, want: str
) -> None:
    assert Threshold(warning, critical, bad_when).level(value) == want


def test_the_thresholds_are_the_settings() -> None:
    settings = load_settings(
        customer_api_token="t",
        health_acceptance_rate_warning=0.8,
        health_acceptance_rate_critical=0.7,
        health_review_rate_warning=0.9,
    )
    rates = HealthThresholds.from_settings(settings).rates
    assert rates["acceptance_rate"] == Threshold(0.8, 0.7, "below")
    assert rates["review_rate"] == Threshold(0.9, 0.5, "below")
    assert rates["rejection_rate"] == Threshold(0.3, 0.5, "above")
    assert rates["auto_acceptance_rate"] == Threshold(0.3, 0.5, "above")


@pytest.mark.parametrize(
    ("overrides", "variable", "other"),
    [
        ({"health_acceptance_rate_critical": 0.7}, "ACCEPTANCE_RATE_CRITICAL", "at most"),
        ({"health_review_rate_warning": 0.4}, "REVIEW_RATE_CRITICAL", "at most"),
        ({"health_rejection_rate_critical": 0.2}, "REJECTION_RATE_CRITICAL", "at least"),
        ({"health_auto_acceptance_rate_warning": 0.6}, "AUTO_ACCEPTANCE_RATE_CRITICAL", "at least"),
        ({"health_rejection_rate_warning": 1.5}, "REJECTION_RATE_WARNING", "less than or equal"),
    ],
)
def test_thresholds_out_of_order_are_a_settings_error(
    overrides: dict[str, float], variable: str, other: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(customer_api_token="t", **overrides)
    assert f"TESTIO_HEALTH_{variable}" in str(raised.value)
    assert other in str(raised.value)


def test_the_default_period_is_the_30_days_ending_now() -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    assert period_of(None, None, now) == (now - timedelta(days=30), now)
    since = datetime(2026, 11, 20, tzinfo=UTC)
    assert period_of(since, None, now) == (since, now)
    until = datetime(2026, 10, 1, tzinfo=UTC)
    assert period_of(None, until, now) == (until - timedelta(days=30), until)


def test_a_period_whose_previous_leaves_the_calendar_is_refused() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    with pytest.raises(MetricsQueryError, match="between the years 1 and 9999"):
        period_of(datetime(1, 1, 2, tzinfo=UTC), datetime(1, 6, 1, tzinfo=UTC), now)
    with pytest.raises(MetricsQueryError, match="between the years 1 and 9999"):
        period_of(datetime(9999, 12, 20, tzinfo=UTC), None, now)


async def test_the_default_period_over_mcp_ends_now(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        before = datetime.now(UTC)
        report = await call(client, "quality_report")
        after = datetime.now(UTC)
    since, until = (parse_time(report["period"][k]) for k in ("since", "until"))
    assert before <= until <= after
    assert until - since == timedelta(days=30)


async def test_a_reversed_period_and_an_unknown_product_are_explained(
    mirrored: Mirrored,
) -> None:
    async with connect(mirrored.settings) as client:
        reversed_period = await call_error(
            client, "quality_report", {"since": "2026-10-01", "until": "2026-09-01"}
        )
        unknown = await call_error(client, "quality_report", {"product_ids": [999]})
    assert "until must be after since" in reversed_period
    assert "list_products" in unknown


@contextlib.asynccontextmanager
async def _sync(settings: Any, args: JSON) -> Any:
    async with connect(settings) as client:
        answer = await call(client, "sync_data", args)
        assert answer["result"]["status"] == "success", answer
        yield client


async def test_staleness_names_products_never_listed_and_bugs_never_fetched(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # More tests in scope than a query reads bugs through for (200): they stay unfetched.
    sandbox = make_sandbox(DatasetSpec(seed=3, products=3, tests_per_product=210, bugs_per_test=1))
    settings = make_settings(sandbox, tmp_path / "home")
    truth = sandbox.world.snapshot()
    listed = truth["tests"]
    moments = sorted(parse_time(t["end_at"]) for t in listed.values())
    since = (moments[0] - timedelta(days=1)).isoformat()
    until = (moments[-1] + timedelta(days=1)).isoformat()
    async with _sync(settings, {"product_ids": [101]}) as client:  # no bugs, one product
        report = await call(client, "quality_report", {"since": since, "until": until})
    staleness = report["staleness"]
    assert staleness["never_listed"] == [102, 103]
    tests_101 = [t for t in listed.values() if t["product"]["id"] == 101]
    assert staleness["tests_in_scope"] == len(tests_101)
    # Nearly all: the previous period's query reads through the few tests it covers alone.
    without = staleness["tests_without_bugs"]
    assert len(tests_101) - 5 <= without <= len(tests_101)
    notes = " | ".join(staleness["notes"])
    assert "never listed" in notes
    assert "102, 103" in notes
    assert f"bugs of {without} of {len(tests_101)} tests in the period" in notes
    assert "include_bugs=true" in notes


async def test_the_demo_answer_fits_in_10_kb_and_a_small_ceiling_cuts_it(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(preset("demo"))
    settings = make_settings(sandbox, tmp_path / "home")
    moments = [parse_time(t["end_at"]) for t in sandbox.world.snapshot()["tests"].values()]
    last = max(moments) + timedelta(days=1)
    args = {"since": (last - timedelta(days=90)).isoformat(), "until": last.isoformat()}
    async with _sync(settings, {"include_bugs": True}) as client:
        default = await client.call_tool("quality_report", {})
        wide = await client.call_tool("quality_report", args)
    for result in (default, wide):
        assert not result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert len(text.encode()) < 10_000, len(text.encode())
        assert len(json.loads(text)["products"]) == 3
    small = make_settings(sandbox, tmp_path / "home", max_answer_bytes=4_500)
    async with connect(small) as client:
        cut = await client.call_tool("quality_report", args)
    text = cut.content[0].text  # type: ignore[union-attr]
    assert len(text.encode()) <= 4_500
    answer = json.loads(text)
    assert answer["truncated"] is True
    assert len(answer["products"]) < 3
    assert "products" in answer["hint"]


async def test_the_test_status_dimension_counts_tests_and_bugs_by_their_test(
    mirrored: Mirrored,
) -> None:
    """The vocabulary entry the report's tests_by_status needed, through query_metrics."""
    truth = mirrored.truth
    tests = Counter(t["status"] for t in truth["tests"].values())
    bugs = Counter(truth["tests"][b["test"]["id"]]["status"] for b in truth["bugs"].values())
    async with connect(mirrored.settings) as client:
        answer = await call(
            client,
            "query_metrics",
            {"metrics": ["test_count", "bug_count"], "dimensions": ["test_status"]},
        )
    got = {row["group"]["test_status"]: row["values"] for row in answer["rows"]}
    assert got == {
        status: {"test_count": tests[status], "bug_count": bugs[status]} for status in tests
    }
