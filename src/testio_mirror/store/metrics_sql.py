"""The two grouped queries behind ``query_metrics``: one over live bugs, one over live tests.

Only the vocabulary's own fragments (``metrics_vocabulary``) and the store's column names go
into the SQL text; every value the caller gave is bound with ``?``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from testio_mirror.store.metrics_fields import dimension
from testio_mirror.store.metrics_vocabulary import Dimension, Side, aggregate
from testio_mirror.store.sqlite.filters import Where
from testio_mirror.store.sqlite.timefmt import to_db


@dataclass(frozen=True, kw_only=True)
class MetricsFilter:
    """Which bugs and tests a metrics query covers. Test-level conditions (products, features,
    tests, testing types) choose both; bug-level ones (severities, statuses, testers, known)
    narrow the bugs only. ``since``/``until`` bound a bug's reported_at and a test's end_at
    (``since`` included, ``until`` not)."""

    product_ids: Sequence[int] | None = None
    feature_ids: Sequence[int] | None = None
    test_ids: Sequence[int] | None = None
    testing_types: Sequence[str] | None = None
    severities: Sequence[str] | None = None
    statuses: Sequence[str] | None = None
    testers: Sequence[str] | None = None
    known: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


# Every column the test side and the scope read but the environment's title (in the raw JSON)
# is in this index (migration 11); without statistics the planner reads the rows instead, each
# with its raw JSON: 40 to 60 ms more on 30,000 tests.
TESTS_INDEX = "INDEXED BY tests_for_metrics"


def _ids(values: Sequence[Any]) -> str:
    return json.dumps(list(values))


def _in(column: str) -> str:
    return f"{column} IN (SELECT value FROM json_each(?))"


def grouped_sql(
    side: Side, dimensions: Sequence[str], aggregates: Sequence[str], chosen: MetricsFilter
) -> tuple[str, list[Any]]:
    """``SELECT k0.., <aggregates> ... GROUP BY k0..`` over ``side`` and its parameters; key
    columns are ``k0``, ``k1``, then the aggregates in order (``a0``, ...)."""
    found = [dimension(d) for d in dimensions]
    assert all(found), "an unknown dimension (checked before)"
    dims: list[Dimension] = [d for d in found if d is not None]
    wanted = [aggregate(name) for name in aggregates]
    # Each custom field read gets its alias (the key itself is bound, never written).
    field_alias: dict[str, str] = {}
    for key in [d.field_key for d in dims] + [a.field_key for a in wanted]:
        if key is not None and key not in field_alias:
            field_alias[key] = f"cf{len(field_alias)}"
    keys = [(d.bug_key if side == "bugs" else d.test_key) for d in dims]
    assert all(keys), "a bugs-only dimension in a test query (checked before)"
    keys = [
        key.format(field=field_alias[d.field_key]) if key and d.field_key else key
        for key, d in zip(keys, dims, strict=True)
    ]
    columns = [f"{key} AS k{i}" for i, key in enumerate(keys)]
    columns += [
        f"{a.sql.format(field=field_alias[a.field_key]) if a.field_key else a.sql} AS a{i}"
        for i, a in enumerate(wanted)
    ]
    params: list[Any] = []
    where = Where()
    if side == "bugs":
        source = "bugs b"
        # A bug's test is read only when a dimension or the filter needs it: a join per bug
        # costs about as much as counting it.
        if chosen.testing_types or any(d.bug_needs_test for d in dims):
            source += " LEFT JOIN tests t ON t.id = b.test_id"
        # Platforms: the bug's distinct values of the columns asked for, so a bug is in each
        # of its groups once (two devices on one system: one row).
        platform = sorted({d.platform_column for d in dims if d.platform_column})
        if platform:
            source += (
                f" LEFT JOIN (SELECT DISTINCT bug_id, {', '.join(platform)} FROM bug_platforms)"
                " bp ON bp.bug_id = b.id"
            )
        for key, alias in field_alias.items():
            source += f" LEFT JOIN bug_fields {alias} ON {alias}.bug_id = b.id AND {alias}.key = ?"
            params.append(key)
        where.add("b.deleted_at IS NULL")
        if chosen.product_ids:
            where.add(_in("b.product_id"), _ids(chosen.product_ids))
        if chosen.feature_ids:
            where.add(_in("b.feature_id"), _ids(chosen.feature_ids))
        if chosen.test_ids:
            where.add(_in("b.test_id"), _ids(chosen.test_ids))
        where.among("t.testing_type", chosen.testing_types)
        where.among("b.severity", chosen.severities)
        where.among("b.status", chosen.statuses)
        where.among("b.author", chosen.testers)
        if chosen.known is not None:
            where.add("b.known = ?", int(chosen.known))
        where.since("b.reported_at", chosen.since)
        where.until("b.reported_at", chosen.until)
    else:
        source = f"tests t {TESTS_INDEX}"
        joins = []
        if any(d.needs_test_features for d in dims):
            joins.append(("tf", "LEFT JOIN test_features tf ON tf.test_id = t.id"))
        if "test_features" in aggregates:
            joins.append(("tfs", "LEFT JOIN test_features tfs ON tfs.test_id = t.id"))
        for alias, join in joins:
            source += f" {join}"
            if chosen.feature_ids:  # a feature filter keeps only those features' groups
                source += f" AND {_in(alias + '.feature_id')}"
                params.append(_ids(chosen.feature_ids))
        _live_tests_in_scope(where, chosen)
        where.since("t.end_at", chosen.since)
        where.until("t.end_at", chosen.until)
    group = f" GROUP BY {', '.join(f'k{i}' for i in range(len(keys)))}" if keys else ""
    sql = f"SELECT {', '.join(columns)} FROM {source}{where.sql}{group}"
    return sql, [*params, *where.params]


def _live_tests_in_scope(where: Where, chosen: MetricsFilter) -> None:
    """The test-level conditions every query over tests shares (``t``: live tests of the
    chosen products, features, tests and testing types)."""
    where.add("t.deleted_at IS NULL")
    if chosen.product_ids:
        where.add(_in("t.product_id"), _ids(chosen.product_ids))
    if chosen.feature_ids:
        where.add(
            f"t.id IN (SELECT test_id FROM test_features WHERE {_in('feature_id')})",
            _ids(chosen.feature_ids),
        )
    if chosen.test_ids:
        where.add(_in("t.id"), _ids(chosen.test_ids))
    where.among("t.testing_type", chosen.testing_types)


SCOPE_IDS = "t.id"
# How current the bug lists of the tests in scope are: how many tests, how many never fetched,
# the oldest fetch (from the tests_bug_freshness index when only products are chosen).
SCOPE_FRESHNESS = "count(*), count(*) - count(t.bugs_fetched_at), min(t.bugs_fetched_at)"


def scope_sql(chosen: MetricsFilter, columns: str = SCOPE_IDS) -> tuple[str, list[Any]]:
    """``columns`` of the live tests whose bugs a query may count: the test-level conditions,
    and a period that overlaps ``since``/``until`` (a bug is reported while its test runs)."""
    where = Where()
    _live_tests_in_scope(where, chosen)
    if chosen.since is not None:
        where.add("(t.end_at IS NULL OR t.end_at >= ?)", to_db(chosen.since))
    if chosen.until is not None:
        where.add("(t.start_at IS NULL OR t.start_at < ?)", to_db(chosen.until))
    # Without a period or testing types the planner's own choice, tests_bug_freshness (product,
    # bugs_fetched_at), is narrower and twice as quick to read.
    wide = chosen.since or chosen.until or chosen.testing_types
    return f"SELECT {columns} FROM tests t {TESTS_INDEX if wide else ''}{where.sql}", where.params
