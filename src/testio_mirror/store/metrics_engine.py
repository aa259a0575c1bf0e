"""``query_metrics`` over the in-memory columns (``store/bug_facts.py``): the bug side here, the
test side in ``metrics_engine_tests``, the parts they share in ``metrics_columns``.

It answers what ``metrics_sql.grouped_sql`` answers, group for group and value for value
(tests/store/test_metrics_engine.py holds the two to each other on random queries), for every
dimension and aggregate listed here; a query naming another (platforms, custom report fields)
is answered by SQL. The steps: a mask of the rows the filter keeps; a group number per row from
the dimensions' codes; counts per group with ``numpy.bincount``; distinct counts over the
distinct (group, value) pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from testio_mirror.store.bug_facts import Facts
from testio_mirror.store.metrics_columns import (
    TIME_DIMENSIONS,
    Group,
    Ints,
    Kept,
    Key,
    Mask,
    among,
    answered,
    coded_key,
    distinct_pairs,
    groups_of,
    in_period,
    sets_of,
    time_key,
)
from testio_mirror.store.metrics_engine_tests import TEST_AGGREGATES, TEST_DIMENSIONS, test_groups
from testio_mirror.store.metrics_sql import MetricsFilter
from testio_mirror.store.metrics_vocabulary import SEVERITY_WEIGHTS, Side

# Dimension name -> the coded bug column its key is.
CODED_DIMENSIONS = {
    "product": "product_id",
    "feature": "feature_id",
    "test": "test_id",
    "tester": "author",
    "severity": "severity",
    "status": "status",
    "testing_type": "testing_type",
    "test_status": "test_status",
    "rejection_reason": "reject_reason",
    "test_environment": "test_environment",
    "known": "known",
}


def supports(side: Side, dimensions: Sequence[str], aggregates: Sequence[str]) -> bool:
    """Whether the columns answer these (else SQL does)."""
    if side == "tests":
        return all(d in TEST_DIMENSIONS for d in dimensions) and all(
            a in TEST_AGGREGATES for a in aggregates
        )
    return all(d in CODED_DIMENSIONS or d in TIME_DIMENSIONS for d in dimensions) and all(
        a in _AGGREGATES for a in aggregates
    )


def grouped(
    facts: Facts,
    side: Side,
    dimensions: Sequence[str],
    aggregates: Sequence[str],
    chosen: MetricsFilter,
) -> dict[Key, Group]:
    """Every group with a row (with no dimension: the one group, even empty) and its
    aggregates, as ``grouped_sql(side, ...)`` would give them."""
    if side == "tests":
        return test_groups(facts, dimensions, aggregates, chosen)
    keep = _kept(facts, chosen)
    size = int(np.count_nonzero(keep))
    cols = Kept(facts.bugs.columns, None if size == facts.bugs.size else keep)
    keys = [
        time_key(name, cols)
        if name in TIME_DIMENSIONS
        else coded_key(
            facts.codes[CODED_DIMENSIONS[name]].values,
            cols[CODED_DIMENSIONS[name]],
            known=name == "known",
        )
        for name in dimensions
    ]
    group, count, decode = groups_of(keys, size)
    result = {name: _AGGREGATES[name](facts, cols, group, count) for name in aggregates}
    rows = result["bugs"] if "bugs" in result else np.bincount(group, minlength=count)
    return answered(dimensions, aggregates, result, rows, decode)


def _kept(facts: Facts, chosen: MetricsFilter) -> Mask:
    """The bugs ``chosen`` keeps (the conditions of ``grouped_sql``'s bug query)."""
    bugs = facts.bugs
    keep: Mask = np.ones(bugs.size, np.bool_)
    among(keep, bugs, facts.codes, "product_id", chosen.product_ids)
    among(keep, bugs, facts.codes, "feature_id", chosen.feature_ids)
    among(keep, bugs, facts.codes, "test_id", chosen.test_ids)
    among(keep, bugs, facts.codes, "testing_type", chosen.testing_types)
    among(keep, bugs, facts.codes, "severity", chosen.severities)
    among(keep, bugs, facts.codes, "status", chosen.statuses)
    among(keep, bugs, facts.codes, "author", chosen.testers)
    if chosen.known is not None:
        among(keep, bugs, facts.codes, "known", [int(chosen.known)])
    in_period(keep, bugs, chosen.since, chosen.until)
    return keep


Aggregate = Callable[[Facts, dict[str, Any], Ints, int], Any]


def _coded(facts: Facts, column: str, value: Any) -> int:
    return facts.codes[column].index.get(value, -1)  # -1: no bug holds it


def _where(group: Ints, count: int, condition: Mask) -> Ints:
    return np.bincount(group[condition], minlength=count)


def _status(name: str) -> Aggregate:
    def counted(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
        return _where(group, count, cols["status"] == _coded(facts, "status", name))

    return counted


def _bugs(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    return np.bincount(group, minlength=count)


def _auto_accepted(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    accepted = cols["status"] == _coded(facts, "status", "accepted")
    automatic = cols["auto_accepted"] == _coded(facts, "auto_accepted", 1)
    return _where(group, count, accepted & automatic)


def _critical(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    return _where(group, count, cols["severity"] == _coded(facts, "severity", "critical"))


def _severity_points(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    weights = np.array(
        [
            SEVERITY_WEIGHTS.get(v, 0) if isinstance(v, str) else 0
            for v in facts.codes["severity"].values
        ],
        np.float64,
    )
    points = np.bincount(group, weights=weights[cols["severity"]], minlength=count)
    return np.rint(points).astype(np.int64)


def _testers(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    size = len(facts.codes["author"].values)
    return np.bincount(distinct_pairs(group, cols["author"], size) // size, minlength=count)


def _bug_features(
    facts: Facts, cols: dict[str, Any], group: Ints, count: int
) -> dict[int, frozenset[str]]:
    values = facts.codes["feature_id"].values
    return sets_of(distinct_pairs(group, cols["feature_id"], len(values)), len(values), values)


_AGGREGATES: dict[str, Aggregate] = {
    "bugs": _bugs,
    "accepted": _status("accepted"),
    "rejected": _status("rejected"),
    "forwarded": _status("forwarded"),
    "auto_accepted": _auto_accepted,
    "critical": _critical,
    "severity_points": _severity_points,
    "testers": _testers,
    "bug_features": _bug_features,
}
