"""The metrics vocabulary, its SQL and its time buckets, without a mirror: docs/metrics.md is
rendered from it, caller values are only ever bound, buckets are consecutive and bounded."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from testio_mirror.store.metrics import MetricsQuery, check
from testio_mirror.store.metrics_buckets import (
    MAX_BUCKETS,
    MetricsQueryError,
    bucket_of,
    buckets_between,
    period_buckets,
)
from testio_mirror.store.metrics_fields import dimension
from testio_mirror.store.metrics_fields import metric as metric_named
from testio_mirror.store.metrics_sql import MetricsFilter, grouped_sql, scope_sql
from testio_mirror.store.metrics_vocabulary import (
    AGGREGATES,
    DIMENSIONS,
    METRICS,
    definitions,
    markdown,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
PEER_DIMENSIONS = {"product", "feature", "test", "tester", "severity", "status", "testing_type",
                   "month", "week", "quarter", "day", "rejection_reason", "platform"}  # fmt: skip
PEER_METRICS = {
    "test_count", "bug_count", "bug_severity_score", "features_tested", "active_testers",
    "bugs_per_test", "tests_created", "tests_submitted", "overall_acceptance_rate",
    "rejection_rate", "review_rate", "active_acceptance_rate", "auto_acceptance_rate",
}  # fmt: skip


def test_docs_metrics_md_holds_the_vocabulary_as_the_module_renders_it() -> None:
    page = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- vocabulary:start -->\n(.*)<!-- vocabulary:end -->", page, re.S)
    assert found, "docs/metrics.md lost its vocabulary markers"
    assert found[1] == markdown(), "docs/metrics.md is out of date: regenerate its tables"


def test_every_peer_name_we_share_is_named_beside_ours() -> None:
    assert {d.peer for d in DIMENSIONS.values()} - {None} == PEER_DIMENSIONS
    assert {m.peer for m in METRICS.values()} - {None} == PEER_METRICS


def test_every_rate_says_its_denominator_and_is_null_at_zero() -> None:
    for name, metric in METRICS.items():
        assert set(metric.uses) <= set(AGGREGATES), name
        if name.endswith(("_rate", "_per_test")):
            assert metric.denominator, name
            assert metric.compute({}) is None, name
        else:
            assert metric.compute({}) == 0, name
    listed = definitions()["metrics"]
    assert [m["name"] for m in listed] == list(METRICS)  # type: ignore[index]


def test_values_are_bound_never_written_into_the_sql() -> None:
    hostile = "x'); DROP TABLE bugs; --"
    chosen = MetricsFilter(
        product_ids=[7],
        feature_ids=[8],
        test_ids=[9],
        testing_types=[hostile],
        severities=[hostile],
        statuses=[hostile],
        testers=[hostile],
        known=True,
        since=datetime(2026, 1, 1, tzinfo=UTC),
        until=datetime(2026, 2, 1, tzinfo=UTC),
    )
    for side, dimensions in (("bugs", ("product", "tester")), ("tests", ("feature", "month"))):
        names = [n for n, a in AGGREGATES.items() if a.side == side]
        sql, params = grouped_sql(side, dimensions, names, chosen)  # type: ignore[arg-type]
        assert hostile not in sql
        assert "2026" not in sql
        assert sql.count("?") == len(params)
    sql, params = scope_sql(chosen)
    assert hostile not in sql
    assert sql.count("?") == len(params)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (MetricsQuery(metrics=()), "valid metrics: test_count"),
        (MetricsQuery(metrics=("bugs",)), "unknown metric 'bugs'; valid metrics"),
        (MetricsQuery(metrics=("bug_count",), dimensions=("x",)), "valid dimensions: product"),
        (MetricsQuery(metrics=("bug_count",), dimensions=("product", "test", "day")), "0 to 2"),
        (MetricsQuery(metrics=("features_tested",), dimensions=("tester",)), "no tester"),
        (
            MetricsQuery(
                metrics=("bug_count",),
                compare=True,
                filter=MetricsFilter(since=datetime(2026, 2, 1), until=datetime(2026, 1, 1)),
            ),
            "until after since",
        ),
    ],
)
def test_a_query_the_vocabulary_cannot_answer_is_refused(query: MetricsQuery, says: str) -> None:
    with pytest.raises(MetricsQueryError, match=re.escape(says)):
        check(query)


def test_buckets_are_consecutive_and_keyed_as_the_sql_keys_them() -> None:
    assert bucket_of("week", datetime(2026, 3, 8, 23, 59, tzinfo=UTC)) == "2026-03-02"  # Sunday
    assert bucket_of("week", datetime(2026, 3, 9, tzinfo=UTC)) == "2026-03-09"  # Monday
    assert bucket_of("quarter", datetime(2026, 12, 31, tzinfo=UTC)) == "2026-Q4"
    # An offset counts: 01:00 at +02:00 is still the previous day in UTC.
    assert bucket_of("day", datetime(2026, 3, 1, 1, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-02-28"
    )
    assert buckets_between("month", "2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01",
                                                              "2026-02"]  # fmt: skip
    assert buckets_between("quarter", "2025-Q4", "2026-Q1") == ["2025-Q4", "2026-Q1"]
    assert buckets_between("week", "2025-12-29", "2026-01-12") == [
        "2025-12-29", "2026-01-05", "2026-01-12"
    ]  # fmt: skip
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert period_buckets("day", start, start + timedelta(days=2)) == ["2026-01-01", "2026-01-02"]
    assert period_buckets("day", start, start) == []


def test_too_many_buckets_say_how_to_ask_instead() -> None:
    start = datetime(2000, 1, 1, tzinfo=UTC)
    assert len(period_buckets("day", start, start + timedelta(days=MAX_BUCKETS))) == MAX_BUCKETS
    with pytest.raises(MetricsQueryError, match="group by week"):
        period_buckets("day", start, start + timedelta(days=MAX_BUCKETS + 1))
    with pytest.raises(MetricsQueryError, match="coarsest"):
        period_buckets("quarter", datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))


def test_custom_field_names_are_a_closed_grammar_and_their_keys_are_bound() -> None:
    assert dimension("custom_field:customer_impact") is not None
    for name in ("custom_field:", "custom_field:Bad", "custom_field:x'); --", "custom_fieldx"):
        assert dimension(name) is None, name
    assert metric_named("field_mean:affected_users") is not None
    for name in ("field_median:x", "field_mean:", "field_mean:a b", "field_mean:" + "k" * 65):
        assert metric_named(name) is None, name
    dimensions = ("custom_field:customer_impact", "platform")
    aggregates = ["bugs", "field_sum:affected_users", "field_count:affected_users",
                  "field_max:customer_impact"]  # fmt: skip
    sql, params = grouped_sql("bugs", dimensions, aggregates, MetricsFilter(severities=["low"]))
    assert "customer_impact" not in sql
    assert "affected_users" not in sql
    assert params[:2] == ["customer_impact", "affected_users"]  # one join per key, in order
    assert sql.count("?") == len(params)
    mean = metric_named("field_mean:affected_users")
    assert mean is not None
    assert mean.compute({}) is None
    assert mean.compute({"field_sum:affected_users": 10.0, "field_count:affected_users": 4}) == 2.5
    with pytest.raises(MetricsQueryError, match="custom_field:<key>"):
        check(MetricsQuery(metrics=("bug_count",), dimensions=("custom_field:Nope",)))
