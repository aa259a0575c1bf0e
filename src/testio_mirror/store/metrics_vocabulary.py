"""The closed vocabulary of ``query_metrics``: every dimension and metric, defined once.

Each entry holds its SQL fragments (the only SQL ``store/metrics.py`` puts into a query: nothing
of the caller's text ever is; values are bound with ``?``), its definition in words and the peer's
name for it, if any. ``docs/metrics.md`` and the ``testio://metrics/definitions`` resource are
rendered from here (``definitions()``, ``markdown()``), and a test checks the page matches.

Two queries answer a request: one over live bugs ``b`` (their test ``t`` joined when needed), one
over live tests ``t``. A dimension names its group key in each (``bug_key``, ``test_key``); one
that is a property of bugs only (severity, ...) has no ``test_key``, and metrics that count tests
cannot be grouped by it. Adding a dimension is one ``Dimension`` in ``DIMENSIONS``.

Platform dimensions read a bug's distinct values from ``bug_platforms`` (``bp``), so a bug can
be in several groups; custom report fields (``custom_field:<key>``, ``field_mean:<key>``, ...)
are names made of a pattern and a key, looked up in ``metrics_fields`` (``dimension``,
``metric``); ``aggregate`` finds an aggregate of either kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

Side = Literal["bugs", "tests"]
Partials = Mapping[str, "int | float | frozenset[str] | None"]
Value = int | float | None


@dataclass(frozen=True)
class Dimension:
    name: str
    description: str
    bug_key: str  # the group key over bugs b (and their test t)
    test_key: str | None  # over tests t (tf: test_features, joined when needed); None: bugs only
    label: str | None = None  # the name of a key ``:key`` (ids only), looked up per page
    time: bool = False  # a time bucket: answered in time order, empty buckets filled
    peer: str | None = None
    needs_test_features: bool = False  # the test query joins test_features tf
    bug_needs_test: bool = False  # bug_key reads the bug's test t (joined only then)
    # Read from the bug's platforms (bp: its distinct values of this bug_platforms column): a
    # bug with two values is in both groups, so bug counts over groups do not add up.
    platform_column: str | None = None
    # custom_field:<key>: bug_key reads the alias ``{field}`` of the key's bug_fields row
    field_key: str | None = None


@dataclass(frozen=True)
class Aggregate:
    """One aggregate a query computes; metrics are made of them."""

    side: Side
    sql: str
    kind: Literal["number", "set"] = "number"  # set: group_concat of distinct keys
    # The total is the sum of the groups' (sets: their union) when each row is in one group:
    # a bug always is; a test is in several with the feature dimension. Distinct counts of
    # something else (testers) are not.
    additive: bool = True
    field_key: str | None = None  # over a custom field: sql reads the alias ``{field}``


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    uses: tuple[str, ...]  # the aggregates it is made of (names in AGGREGATES)
    compute: Callable[[Partials], Value]
    denominator: str | None = None  # rates: what they divide by (null when it is 0)
    peer: str | None = None


def _time_bucket(column: str, unit: str) -> str:
    day = f"substr({column}, 1, 10)"
    if unit == "day":
        return day
    if unit == "week":  # the Monday that starts the week: 'weekday 0' is the next Sunday
        return f"date({day}, 'weekday 0', '-6 days')"
    if unit == "month":
        return f"substr({column}, 1, 7)"
    return f"substr({column}, 1, 4) || '-Q' || ((CAST(substr({column}, 6, 2) AS INTEGER) + 2) / 3)"


_TIME_WORDS = {
    "day": "UTC calendar day, key YYYY-MM-DD",
    "week": "UTC week starting on Monday, key the Monday's date YYYY-MM-DD",
    "month": "UTC calendar month, key YYYY-MM",
    "quarter": "UTC calendar quarter, key YYYY-Qn",
}
_TIME_TAIL = (
    ": of a bug's reported_at for bug metrics, of a test's end_at for test metrics; in time order, "
    "empty buckets included"
)

DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension(
            "product",
            "the product",
            "b.product_id",
            "t.product_id",
            "SELECT id, name FROM products WHERE id IN (SELECT value FROM json_each(?))",
            peer="product",
        ),
        Dimension(
            "feature",
            "the feature: a bug's feature; for test metrics every feature a test covers (a test "
            "covering three features counts in three groups)",
            "b.feature_id",
            "tf.feature_id",
            "SELECT id, title FROM features WHERE id IN (SELECT value FROM json_each(?))",
            peer="feature",
            needs_test_features=True,
        ),
        Dimension(
            "test",
            "the exploratory test",
            "b.test_id",
            "t.id",
            "SELECT id, title FROM tests WHERE id IN (SELECT value FROM json_each(?))",
            peer="test",
        ),
        Dimension(
            "tester",
            "the tester who reported the bug (its author)",
            "b.author",
            None,
            peer="tester",
        ),
        Dimension("severity", "the bug's severity", "b.severity", None, peer="severity"),
        Dimension(
            "status",
            "the bug's status (accepted, rejected, forwarded)",
            "b.status",
            None,
            peer="status",
        ),
        Dimension(
            "testing_type",
            "the test's testing type (a bug's: its test's)",
            "t.testing_type",
            "t.testing_type",
            peer="testing_type",
            bug_needs_test=True,
        ),
        Dimension(
            "test_status",
            "the test's status (running, locked, archived, ...; a bug's: its test's)",
            "t.status",
            "t.status",
            bug_needs_test=True,
        ),
        *(
            Dimension(
                unit,
                _TIME_WORDS[unit] + _TIME_TAIL,
                _time_bucket("b.reported_at", unit),
                _time_bucket("t.end_at", unit),
                time=True,
                peer=unit,
            )
            for unit in ("day", "week", "month", "quarter")
        ),
        Dimension(
            "rejection_reason",
            "the reject reason of a rejected bug (from its comments)",
            "b.reject_reason",
            None,
            "SELECT key, name FROM reject_reasons WHERE key IN (SELECT value FROM json_each(?))",
            peer="rejection_reason",
        ),
        Dimension(
            "test_environment",
            "the title of the test's environment (a bug's: its test's)",
            "json_extract(t.raw, '$.test_environment.title')",
            "json_extract(t.raw, '$.test_environment.title')",
            bug_needs_test=True,
        ),
        Dimension(
            "known",
            "whether the bug is a known one: true or false",
            "CASE b.known WHEN 1 THEN 'true' WHEN 0 THEN 'false' END",
            None,
        ),
        Dimension(
            "platform",
            "the operating system a bug was found on (its devices' operating_system.name: "
            "Android, iOS, Windows, ...); a bug found on two counts in both groups, once in "
            "totals; none named: the null group",
            "bp.os",
            None,
            peer="platform",
            platform_column="os",
        ),
        Dimension(
            "browser",
            "a browser a bug was found in (its devices' browsers); a bug found in two counts in "
            "both groups, once in totals; a device without a browser (an app): the null group",
            "bp.browser",
            None,
            platform_column="browser",
        ),
        Dimension(
            "device_category",
            "the category of a device a bug was found on (Desktop, Smartphone, Tablet); a bug "
            "on two counts in both groups, once in totals",
            "bp.category",
            None,
            platform_column="category",
        ),
    )
}

# Aggregates over bugs b (one row per bug) and over tests t (one row per test and, with
# test_features joined, per feature: so tests are counted DISTINCT).
AGGREGATES: dict[str, Aggregate] = {
    "bugs": Aggregate("bugs", "count(b.id)"),
    "accepted": Aggregate("bugs", "sum(b.status = 'accepted')"),
    "rejected": Aggregate("bugs", "sum(b.status = 'rejected')"),
    "forwarded": Aggregate("bugs", "sum(b.status = 'forwarded')"),
    "auto_accepted": Aggregate("bugs", "sum(b.status = 'accepted' AND b.auto_accepted = 1)"),
    "critical": Aggregate("bugs", "sum(b.severity = 'critical')"),
    "severity_points": Aggregate(
        "bugs",
        "sum(CASE b.severity WHEN 'critical' THEN 10 WHEN 'high' THEN 5 WHEN 'custom' THEN 2 "
        "WHEN 'low' THEN 1 WHEN 'visual' THEN 1 WHEN 'content' THEN 1 ELSE 0 END)",
    ),
    "testers": Aggregate("bugs", "count(DISTINCT b.author)", additive=False),
    "bug_features": Aggregate("bugs", "group_concat(DISTINCT b.feature_id)", "set"),
    "tests": Aggregate("tests", "count(DISTINCT t.id)"),
    "created": Aggregate(
        "tests", "count(DISTINCT CASE WHEN t.created_by IS NOT NULL THEN t.id END)"
    ),
    "submitted": Aggregate(
        "tests", "count(DISTINCT CASE WHEN t.submitted_by IS NOT NULL THEN t.id END)"
    ),
    "test_features": Aggregate("tests", "group_concat(DISTINCT tfs.feature_id)", "set"),
}
SEVERITY_WEIGHTS = {"critical": 10, "high": 5, "custom": 2, "low": 1, "visual": 1, "content": 1}


def _num(partials: Partials, name: str) -> int:
    value = partials.get(name)
    return int(value) if isinstance(value, int | float) else 0


def _count(name: str) -> Callable[[Partials], int]:
    return lambda p: _num(p, name)


def _ratio(
    top: Callable[[Partials], int], bottom: Callable[[Partials], int]
) -> Callable[[Partials], Value]:
    def rate(p: Partials) -> Value:
        under = bottom(p)
        return round(top(p) / under, 4) if under else None

    return rate


def _decided(p: Partials) -> int:
    return _num(p, "accepted") + _num(p, "rejected")


def _features(p: Partials) -> int:
    found: set[str] = set()
    for name in ("bug_features", "test_features"):
        part = p.get(name)
        if isinstance(part, frozenset):
            found |= part
    return len(found)


_DECIDED = "accepted + rejected"
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "test_count",
            "tests in scope (bucketed by end_at)",
            ("tests",),
            _count("tests"),
            peer="test_count",
        ),
        Metric(
            "bug_count",
            "bugs in scope (bucketed by reported_at)",
            ("bugs",),
            _count("bugs"),
            peer="bug_count",
        ),
        Metric(
            "bugs_per_test",
            "bug_count / test_count",
            ("bugs", "tests"),
            _ratio(_count("bugs"), _count("tests")),
            "test_count",
            peer="bugs_per_test",
        ),
        Metric(
            "accepted",
            "bugs with status accepted (auto-accepted ones included)",
            ("accepted",),
            _count("accepted"),
        ),
        Metric("rejected", "bugs with status rejected", ("rejected",), _count("rejected")),
        Metric(
            "forwarded",
            "bugs with status forwarded: open, waiting for the customer",
            ("forwarded",),
            _count("forwarded"),
        ),
        Metric(
            "auto_accepted",
            "accepted bugs TestIO accepted automatically (auto_accepted)",
            ("auto_accepted",),
            _count("auto_accepted"),
        ),
        Metric(
            "acceptance_rate",
            "accepted / (accepted + rejected)",
            ("accepted", "rejected"),
            _ratio(_count("accepted"), _decided),
            _DECIDED,
            peer="overall_acceptance_rate",
        ),
        Metric(
            "active_acceptance_rate",
            "accepted and not auto-accepted / (accepted + rejected)",
            ("accepted", "rejected", "auto_accepted"),
            _ratio(lambda p: _num(p, "accepted") - _num(p, "auto_accepted"), _decided),
            _DECIDED,
            peer="active_acceptance_rate",
        ),
        Metric(
            "auto_acceptance_rate",
            "auto_accepted / accepted",
            ("accepted", "auto_accepted"),
            _ratio(_count("auto_accepted"), _count("accepted")),
            "accepted",
            peer="auto_acceptance_rate",
        ),
        Metric(
            "rejection_rate",
            "rejected / (accepted + rejected)",
            ("accepted", "rejected"),
            _ratio(_count("rejected"), _decided),
            _DECIDED,
            peer="rejection_rate",
        ),
        Metric(
            "review_rate",
            "(accepted + rejected) / bug_count: the share of bugs decided",
            ("accepted", "rejected", "bugs"),
            _ratio(_decided, _count("bugs")),
            "bug_count",
            peer="review_rate",
        ),
        Metric(
            "severity_score",
            "the sum over bugs of a weight per severity: critical 10, high 5, custom 2, "
            "low 1, visual 1, content 1 (other or none 0)",
            ("severity_points",),
            _count("severity_points"),
            peer="bug_severity_score",
        ),
        Metric("critical_count", "bugs of severity critical", ("critical",), _count("critical")),
        Metric(
            "active_testers",
            "distinct testers (bug authors) among the bugs in scope",
            ("testers",),
            _count("testers"),
            peer="active_testers",
        ),
        Metric(
            "features_tested",
            "distinct features covered by a test in scope or named by a bug in scope",
            ("bug_features", "test_features"),
            _features,
            peer="features_tested",
        ),
        Metric(
            "tests_created",
            "tests in scope whose creator is known (created_by); the mirror holds no "
            "creation time, so tests are bucketed by end_at like test_count",
            ("created",),
            _count("created"),
            peer="tests_created",
        ),
        Metric(
            "tests_submitted",
            "tests in scope submitted by the customer (submitted_by set: past "
            "initialized), bucketed by end_at",
            ("submitted",),
            _count("submitted"),
            peer="tests_submitted",
        ),
    )
}


def sides(metric: Metric) -> set[Side]:
    return {aggregate(name).side for name in metric.uses}


def aggregate(name: str) -> Aggregate:
    """The aggregate ``name`` of ``AGGREGATES`` or of a field metric (``field_sum:<key>``).

    Raises:
        KeyError: no such aggregate.
    """
    if name in AGGREGATES:
        return AGGREGATES[name]
    from testio_mirror.store.metrics_fields import field_aggregate  # it imports this module

    return field_aggregate(name)


def definitions() -> dict[str, object]:
    """Every dimension and metric in words: the ``testio://metrics/definitions`` resource."""
    from testio_mirror.store.metrics_fields import (
        CUSTOM_FIELD,
        CUSTOM_FIELD_PATTERN,
        FIELD_METRIC_PATTERN,
        field_metric_forms,
    )

    return {
        "dimensions": [
            {
                "name": d.name,
                "peer_name": d.peer,
                "definition": d.description,
                "applies_to": "bugs and tests" if d.test_key else "bugs only",
                "time_bucket": d.time,
            }
            for d in (*DIMENSIONS.values(), CUSTOM_FIELD)
        ],
        "metrics": [
            {
                "name": m.name,
                "peer_name": m.peer,
                "definition": m.description,
                "denominator": m.denominator,
                "counts": " and ".join(sorted(sides(m))),
            }
            for m in METRICS.values()
        ],
        # Named by pattern: one per custom report field key the mirror holds.
        "custom_field_patterns": {
            "dimension": CUSTOM_FIELD_PATTERN,
            "metric": FIELD_METRIC_PATTERN,
        },
        "field_metrics": [
            {"name": m.name, "definition": m.description, "denominator": m.denominator}
            for m in field_metric_forms()
        ],
    }


def markdown() -> str:
    """The tables of ``docs/metrics.md`` between its markers, rendered from the vocabulary."""
    from testio_mirror.store.metrics_fields import CUSTOM_FIELD, field_metric_forms

    lines = [
        "| dimension | peer name | applies to | definition |",
        "|---|---|---|---|",
    ]
    for d in (*DIMENSIONS.values(), CUSTOM_FIELD):
        scope = "bugs and tests" if d.test_key else "bugs only"
        words = d.description.replace("<key>", "`<key>`")
        lines.append(f"| `{d.name}` | {d.peer or ''} | {scope} | {words} |")
    lines += [
        "",
        "| metric | peer name | counts | definition | denominator |",
        "|---|---|---|---|---|",
    ]
    for m in (*METRICS.values(), *field_metric_forms()):
        counted = " and ".join(sorted(sides(m)))
        words = m.description.replace("<key>", "`<key>`")
        lines.append(
            f"| `{m.name}` | {m.peer or ''} | {counted} | {words} | {m.denominator or ''} |"
        )
    return "\n".join(lines) + "\n"
