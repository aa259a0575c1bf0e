"""The test side of ``query_metrics`` over the in-memory columns: what ``grouped_sql("tests",
...)`` answers, for the dimensions and aggregates listed here.

The SQL reads live tests ``t``, joined to the features they cover (``test_features``) when the
feature dimension or the features_tested metric needs them, each join narrowed to the filter's
features. Here that is: the kept tests, expanded to one row per (test, feature) pair (and one
row without a feature for a test covering none: the LEFT JOIN) only when grouping by feature;
a test counts once per group either way (``count(DISTINCT t.id)``).
"""

from __future__ import annotations

from collections.abc import Sequence
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
from testio_mirror.store.metrics_sql import MetricsFilter

# Dimension name -> the coded test column its key is (feature: of the (test, feature) pairs).
CODED_TEST_DIMENSIONS = {
    "product": "product_id",
    "feature": "feature_id",
    "test": "test_id",
    "testing_type": "testing_type",
    "test_status": "test_status",
    "test_environment": "test_environment",
}
TEST_DIMENSIONS = (*CODED_TEST_DIMENSIONS, *TIME_DIMENSIONS)
TEST_AGGREGATES = ("tests", "created", "submitted", "test_features")


def test_groups(
    facts: Facts, dimensions: Sequence[str], aggregates: Sequence[str], chosen: MetricsFilter
) -> dict[Key, Group]:
    """Every group with a test (with no dimension: the one group) and its aggregates."""
    tests = facts.tests
    keep: Mask = np.ones(tests.size, np.bool_)
    among(keep, tests, facts.codes, "product_id", chosen.product_ids)
    among(keep, tests, facts.codes, "test_id", chosen.test_ids)
    among(keep, tests, facts.codes, "testing_type", chosen.testing_types)
    in_period(keep, tests, chosen.since, chosen.until)
    pair_tests: Any = facts.test_features["test_row"]
    pair_features = facts.test_features["feature_id"]
    if chosen.feature_ids:  # tests covering one of them, and only their pairs
        wanted = np.array(facts.codes["feature_id"].codes_of(chosen.feature_ids), np.int32)
        narrowed = np.isin(pair_features, wanted)
        pair_tests, pair_features = pair_tests[narrowed], pair_features[narrowed]
        keep &= _marked(tests.size, pair_tests)
    held = keep[pair_tests]
    pair_tests, pair_features = pair_tests[held], pair_features[held]
    rows: Ints = np.flatnonzero(keep)
    cols = Kept(tests.columns, rows)
    if "feature" in dimensions:
        alone = rows[~_marked(tests.size, pair_tests)[rows]]
        rows = np.concatenate([pair_tests, alone])
        cols = Kept(tests.columns, rows)
        cols["feature_id"] = np.concatenate([pair_features, np.zeros(len(alone), np.int32)])
    keys = [
        time_key(name, cols, tests)
        if name in TIME_DIMENSIONS
        else coded_key(
            facts.codes[CODED_TEST_DIMENSIONS[name]].values, cols[CODED_TEST_DIMENSIONS[name]]
        )
        for name in dimensions
    ]
    group, count, decode = groups_of(keys, len(rows))
    counts = np.bincount(group, minlength=count)
    result: dict[str, Any] = {}
    for name in aggregates:
        if name == "tests":
            result[name] = counts
        elif name in ("created", "submitted"):
            result[name] = np.bincount(group[cols[name] == 1], minlength=count)
        else:
            result[name] = _features(facts, rows, group, pair_tests, pair_features)
    return answered(dimensions, aggregates, result, counts, decode)


def _marked(size: int, rows: Ints) -> Mask:
    marked: Mask = np.zeros(size, np.bool_)
    marked[rows] = True
    return marked


def _features(
    facts: Facts, rows: Ints, group: Ints, pair_tests: Ints, pair_features: Any
) -> dict[int, frozenset[str]]:
    """Per group, the features its tests cover (``group_concat(DISTINCT tfs.feature_id)``):
    each row's test joined to its pairs, through the pairs sorted by test."""
    order = np.argsort(pair_tests, kind="stable")
    by_test, features = pair_tests[order], pair_features[order]
    starts = np.searchsorted(by_test, rows, "left")
    ends = np.searchsorted(by_test, rows, "right")
    lengths = ends - starts
    total = int(lengths.sum())
    # every row's run of pairs, one after another: the position in the run plus its start
    firsts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    at = np.arange(total) - firsts + np.repeat(starts, lengths)
    values = facts.codes["feature_id"].values
    size = len(values)
    pairs = distinct_pairs(np.repeat(group, lengths), features[at], size)
    return sets_of(pairs, size, values)
