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
from functools import cached_property
from typing import Any

import numpy as np

from testio_mirror.store.bug_facts import Facts
from testio_mirror.store.metrics_columns import (
    TIME_DIMENSIONS,
    Group,
    Ints,
    Kept,
    Key,
    KeyCodes,
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
from testio_mirror.store.metrics_engine_details import (
    PLATFORM_DIMENSIONS,
    field_aggregate,
    field_of,
    number_column,
    platform_rows,
    value_column,
    with_fields,
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
    return all(
        d in CODED_DIMENSIONS
        or d in TIME_DIMENSIONS
        or d in PLATFORM_DIMENSIONS
        or field_of(d) is not None
        for d in dimensions
    ) and all(a in _AGGREGATES or field_of(a) is not None for a in aggregates)


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
    keys_read = [found[1] for found in map(field_of, [*dimensions, *aggregates]) if found]
    columns = with_fields(facts, keys_read) if keys_read else facts.bugs.columns
    wanted = sorted({PLATFORM_DIMENSIONS[d] for d in dimensions if d in PLATFORM_DIMENSIONS})
    if wanted:  # a bug in each of its platforms' groups: one row per bug and value
        rows, platforms = platform_rows(facts, keep, wanted)
        cols = Kept(columns, rows)
        cols.update(platforms)
        size = len(rows)
    else:
        size = int(np.count_nonzero(keep))
        cols = Kept(columns, None if size == facts.bugs.size else keep)
    keys = [_key(facts, name, cols) for name in dimensions]
    group, count, decode = groups_of(keys, size)
    counting = _Counting(facts, cols, group, count)
    result = {name: _aggregate(name, counting) for name in aggregates}
    return answered(dimensions, aggregates, result, counting.bugs, decode)


def _key(facts: Facts, name: str, cols: dict[str, Any]) -> KeyCodes:
    if name in TIME_DIMENSIONS:
        return time_key(name, cols, facts.bugs)
    if name in PLATFORM_DIMENSIONS:
        column = PLATFORM_DIMENSIONS[name]
        return coded_key(facts.codes[column].values, cols[column])
    field = field_of(name)
    if field is not None:
        return coded_key(facts.codes["field_value"].values, cols[value_column(field[1])])
    column = CODED_DIMENSIONS[name]
    return coded_key(facts.codes[column].values, cols[column], known=name == "known")


def _aggregate(name: str, counting: _Counting) -> Any:
    field = field_of(name)
    if field is None:
        return _AGGREGATES[name](counting)
    kind, key = field
    return field_aggregate(kind, counting.cols[number_column(key)], counting.group, counting.count)


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


class _Counting:
    """One query's groups and the counts its aggregates share, each counted once: the bugs per
    group and status, per group and severity (one ``bincount`` each, not one per aggregate)."""

    def __init__(self, facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> None:
        self.facts = facts
        self.cols = cols
        self.group = group
        self.count = count

    def code(self, column: str, value: Any) -> int | None:
        return self.facts.codes[column].index.get(value)  # None: no bug holds it

    def per(self, column: str) -> Ints:
        """Bugs per group (rows) and value code of ``column`` (columns)."""
        size = len(self.facts.codes[column].values)
        numbers = self.group * size + self.cols[column]
        counted: Ints = np.bincount(numbers, minlength=self.count * size)
        return counted.reshape(self.count, size)

    @cached_property
    def by_status(self) -> Ints:
        return self.per("status")

    @cached_property
    def by_severity(self) -> Ints:
        return self.per("severity")

    @cached_property
    def bugs(self) -> Ints:
        counted: Ints = np.bincount(self.group, minlength=self.count)
        return counted

    def status(self, name: str) -> Ints:
        code = self.code("status", name)
        return self.by_status[:, code] if code is not None else np.zeros(self.count, np.int64)


Aggregate = Callable[[_Counting], Any]


def _status(name: str) -> Aggregate:
    return lambda counting: counting.status(name)


def _auto_accepted(counting: _Counting) -> Ints:
    accepted, automatic = counting.code("status", "accepted"), counting.code("auto_accepted", 1)
    if accepted is None or automatic is None:
        return np.zeros(counting.count, np.int64)
    both = (counting.cols["status"] == accepted) & (counting.cols["auto_accepted"] == automatic)
    counted: Ints = np.bincount(counting.group[both], minlength=counting.count)
    return counted


def _critical(counting: _Counting) -> Ints:
    code = counting.code("severity", "critical")
    return counting.by_severity[:, code] if code is not None else np.zeros(counting.count, np.int64)


def _severity_points(counting: _Counting) -> Ints:
    weights = np.array(
        [
            SEVERITY_WEIGHTS.get(v, 0) if isinstance(v, str) else 0
            for v in counting.facts.codes["severity"].values
        ],
        np.int64,
    )
    points: Ints = counting.by_severity @ weights
    return points


def _testers(counting: _Counting) -> Ints:
    size = len(counting.facts.codes["author"].values)
    pairs = distinct_pairs(counting.group, counting.cols["author"], size)
    counted: Ints = np.bincount(pairs // size, minlength=counting.count)
    return counted


def _bug_features(counting: _Counting) -> dict[int, frozenset[str]]:
    values = counting.facts.codes["feature_id"].values
    pairs = distinct_pairs(counting.group, counting.cols["feature_id"], len(values))
    return sets_of(pairs, len(values), values)


_AGGREGATES: dict[str, Aggregate] = {
    "bugs": lambda counting: counting.bugs,
    "accepted": _status("accepted"),
    "rejected": _status("rejected"),
    "forwarded": _status("forwarded"),
    "auto_accepted": _auto_accepted,
    "critical": _critical,
    "severity_points": _severity_points,
    "testers": _testers,
    "bug_features": _bug_features,
}
