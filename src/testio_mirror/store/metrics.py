"""``query_metrics``: metrics of bugs and tests grouped by up to two dimensions, answered by SQL
over the mirror (read through first for the bugs of the tests in scope).

A request runs at most two grouped queries (``metrics_sql``): over bugs for bug metrics, over
tests for test metrics; their groups are merged by key, time buckets without data are filled in,
rates are computed from the counts (``metrics_vocabulary``), and a page of the sorted groups is
answered with the totals over all of them. Pages are positions in that order
(``cursor.encode_position``), scoped to the query, as ``bug_stats`` pages are.

Example::

    metrics = MetricsRepository(mirror.db, mirror.bugs, mirror.policy)
    result = await metrics.query(MetricsQuery(metrics=("bug_count",), dimensions=("month",)))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from testio_mirror.store.bug_details import check_field_keys
from testio_mirror.store.bug_facts import BugFacts
from testio_mirror.store.bugs import BugRepository
from testio_mirror.store.metrics_buckets import (
    MetricsQueryError,
    bucket_of,
    buckets_between,
    period_buckets,
)
from testio_mirror.store.metrics_fields import dimension, field_keys, metric
from testio_mirror.store.metrics_grouping import Group, Grouping, Key
from testio_mirror.store.metrics_sql import SCOPE_FRESHNESS, MetricsFilter, scope_sql
from testio_mirror.store.metrics_vocabulary import (
    DIMENSIONS,
    METRICS,
    Dimension,
    Metric,
    Partials,
    Side,
    Value,
    aggregate,
    sides,
)
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.records import Freshness
from testio_mirror.store.sqlite.cursor import decode_position, encode_position
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import from_db

MAX_DIMENSIONS = 2
MAX_LIMIT = 100
READ_THROUGH_TESTS = 200  # more tests in scope: answered from the mirror as sync left it
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class MetricsQuery:
    metrics: Sequence[str]
    dimensions: Sequence[str] = ()
    filter: MetricsFilter = field(default_factory=MetricsFilter)
    sort_by: str | None = None
    compare: bool = False


@dataclass
class MetricsRow:
    group: dict[str, str | None]
    labels: dict[str, str | None]
    values: dict[str, Value]
    previous: dict[str, Value] | None = None
    change: dict[str, Value] | None = None
    relative_change: dict[str, Value] | None = None


@dataclass
class MetricsResult:
    rows: list[MetricsRow]
    row_count: int
    totals: dict[str, Value]
    previous_totals: dict[str, Value] | None
    previous_period: tuple[datetime, datetime] | None
    next_cursor: str | None
    cursors: list[str]
    freshness: Freshness


def _names(kind: str, valid: Sequence[str]) -> str:
    return f"valid {kind}: {', '.join(valid)}"


def check(query: MetricsQuery) -> None:
    """Refuse a query the vocabulary cannot answer, saying what is valid.

    Raises:
        MetricsQueryError: unknown names, too many dimensions, test metrics by a bug dimension.
    """
    valid_metrics = _names("metrics", [*METRICS, "field_<count|sum|mean|min|max>:<key>"])
    if not query.metrics:
        raise MetricsQueryError(f"name at least one metric; {valid_metrics}")
    for name in query.metrics:
        if metric(name) is None:
            raise MetricsQueryError(f"unknown metric {name!r}; {valid_metrics}")
    for name in query.dimensions:
        if dimension(name) is None:
            raise MetricsQueryError(
                f"unknown dimension {name!r}; "
                f"{_names('dimensions', [*DIMENSIONS, 'custom_field:<key>'])}"
            )
    if len(query.dimensions) > MAX_DIMENSIONS or len(set(query.dimensions)) != len(
        query.dimensions
    ):
        raise MetricsQueryError("give 0 to 2 different dimensions")
    if sum(_dimension(d).time for d in query.dimensions) > 1:
        raise MetricsQueryError("at most one time dimension (day, week, month or quarter)")
    bug_only = [d for d in query.dimensions if _dimension(d).test_key is None]
    counting_tests = [m for m in query.metrics if "tests" in sides(_metric(m))]
    if bug_only and counting_tests:
        raise MetricsQueryError(
            f"{', '.join(counting_tests)} count tests, which have no {bug_only[0]} (a property "
            f"of bugs): drop the dimension or those metrics"
        )
    valid_sorts = [*query.metrics, *query.dimensions]
    if query.sort_by is not None and query.sort_by not in valid_sorts:
        raise MetricsQueryError(
            f"sort_by must be one of the query's metrics or dimensions: {', '.join(valid_sorts)}"
        )
    chosen = query.filter
    if query.compare and (chosen.since is None or chosen.until is None):
        raise MetricsQueryError("compare needs both since and until (the period to compare)")
    if (
        query.compare
        and chosen.until is not None
        and chosen.since is not None
        and (chosen.until <= chosen.since)
    ):
        raise MetricsQueryError("compare needs until after since")


def _metric(name: str) -> Metric:
    found = metric(name)
    assert found is not None, "an unknown metric (checked before)"
    return found


def _dimension(name: str) -> Dimension:
    found = dimension(name)
    assert found is not None, "an unknown dimension (checked before)"
    return found


def _previous(chosen: MetricsFilter) -> MetricsFilter:
    assert chosen.since is not None
    assert chosen.until is not None
    try:
        start = chosen.since - (chosen.until - chosen.since)
    except OverflowError:
        raise MetricsQueryError("the previous period would begin before year 1") from None
    return replace(chosen, since=start, until=chosen.since)


class MetricsRepository:
    """Metrics over the mirror; bugs of the tests in scope read through first."""

    def __init__(
        self,
        db: Database,
        bugs: BugRepository,
        policy: FreshnessPolicy,
        facts: BugFacts | None = None,
    ) -> None:
        self._db = db
        self._bugs = bugs
        self._policy = policy
        self._facts = facts  # None: bug metrics by SQL only

    async def query(
        self, query: MetricsQuery, *, limit: int = 50, cursor: str | None = None
    ) -> MetricsResult:
        """A page of ``query``'s groups after ``cursor`` with the totals over all of them.

        Raises:
            MetricsQueryError: the query cannot be answered as asked (the message says why).
            CursorError: ``cursor`` is not the next_cursor of a page of this same query.
            OfflineError, UpstreamError: as ``BugRepository.ensure_fresh``.
        """
        check(query)
        limit = max(1, min(limit, MAX_LIMIT))
        scope = "metrics:" + _digest(query)
        start = decode_position(cursor, scope) if cursor else 0
        previous = _previous(query.filter) if query.compare else None
        covered = query.filter
        if previous is not None:
            covered = replace(covered, since=previous.since)
        freshness = await self._read_through(covered)
        async with self._db.reader() as conn:
            await check_field_keys(conn, field_keys([*query.dimensions, *query.metrics]))
            grouping = Grouping(conn, self._facts)
            rows = await grouping.groups(query, query.filter)
            totals = await _total(grouping, query, query.filter, rows)
            rows = _fill_buckets(query, query.filter, rows)
            prior: dict[Key, Group] = {}
            prior_totals: dict[str, Value] | None = None
            if previous is not None:
                before = await grouping.groups(query, previous)
                prior_totals = await _total(grouping, query, previous, before)
                prior = _shifted(query, previous, before)
            ordered = _sorted(query, rows)
            page = ordered[start : start + limit]
            labels = await _labels(conn, query, [key for key, _ in page])
        shown = [
            _row(query, key, partials, labels, prior if previous is not None else None)
            for key, partials in page
        ]
        end = start + len(page)
        return MetricsResult(
            rows=shown,
            row_count=len(ordered),
            totals=totals,
            previous_totals=prior_totals,
            previous_period=_period(previous),
            next_cursor=encode_position(scope, end) if end < len(ordered) else None,
            cursors=[encode_position(scope, start + i + 1) for i in range(len(page))],
            freshness=freshness,
        )

    async def _read_through(self, chosen: MetricsFilter) -> Freshness:
        """Bugs of the tests in scope fetched first when missing or stale (given tests, or up to
        ``READ_THROUGH_TESTS`` of them); a wider scope, or none, is answered as the last sync
        left the mirror (its freshness says how old the bug lists are)."""
        if chosen.test_ids:
            return await self._bugs.ensure_fresh(chosen.test_ids)
        async with self._db.reader() as conn:
            # How many tests, how fresh their bug lists: one statement; their ids only when
            # few enough to read through.
            rows = await conn.execute_fetchall(*scope_sql(chosen, SCOPE_FRESHNESS))
            count, missing, oldest = next(iter(rows))
            ids = None
            if 0 < count <= READ_THROUGH_TESTS:
                ids = [row[0] for row in await conn.execute_fetchall(*scope_sql(chosen))]
            elif not count:  # none in scope: as fresh as the mirror's bug lists are
                rows = await conn.execute_fetchall(*scope_sql(MetricsFilter(), SCOPE_FRESHNESS))
                count, missing, oldest = next(iter(rows))
        if ids is not None:
            return await self._bugs.ensure_fresh(ids)
        if not count:
            return self._policy.mirror(None, None, "no tests in the mirror: run sync_data")
        if missing:
            return self._policy.mirror(
                from_db(oldest),
                None,
                f"bugs of {missing} of {count} tests were never fetched: run sync_data "
                "with include_bugs, or narrow the query",
            )
        return self._policy.mirror(from_db(oldest), self._policy.product_ttl)


def _period(chosen: MetricsFilter | None) -> tuple[datetime, datetime] | None:
    if chosen is None or chosen.since is None or chosen.until is None:
        return None
    return chosen.since, chosen.until


def _digest(query: MetricsQuery) -> str:
    text = json.dumps(asdict(query), default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def _total(
    grouping: Grouping, query: MetricsQuery, chosen: MetricsFilter, groups: dict[Key, Group]
) -> dict[str, Value]:
    """Every metric over all of ``chosen``: aggregates that add up summed over ``groups`` (sets
    joined), the others (distinct counts) asked for again without dimensions."""
    wanted = {a for m in query.metrics for a in _metric(m).uses}
    if query.dimensions:
        # A row in several groups (a test by feature, a bug by platform) makes sums count it
        # more than once: those aggregates are asked for again without dimensions.
        split: set[Side] = set()
        if any(_dimension(d).needs_test_features for d in query.dimensions):
            split.add("tests")
        if any(_dimension(d).platform_column for d in query.dimensions):
            split.add("bugs")
        summed = {
            a
            for a in wanted
            if aggregate(a).kind == "set"
            or (aggregate(a).additive and aggregate(a).side not in split)
        }
    else:
        summed = set()
    total: Group = {}
    for name in summed:
        parts = [group[name] for group in groups.values() if group.get(name) is not None]
        if aggregate(name).kind == "set":
            total[name] = frozenset().union(*parts)
        else:
            total[name] = sum(parts)
    asked = sorted(wanted - summed)
    if asked:
        found = await grouping.groups(replace(query, dimensions=()), chosen, only=asked)
        total.update(found.get((), {}))
    return _values(query, total)


def _values(query: MetricsQuery, partials: Partials) -> dict[str, Value]:
    return {name: _metric(name).compute(partials) for name in query.metrics}


def _time_position(query: MetricsQuery) -> int | None:
    for i, name in enumerate(query.dimensions):
        if _dimension(name).time:
            return i
    return None


def _bucket_line(
    query: MetricsQuery, chosen: MetricsFilter, keys: Sequence[Any]
) -> list[str] | None:
    """Every bucket of the time dimension: of since/until when both are given, else from the
    first to the last bucket with data (or the bound that is given)."""
    at = _time_position(query)
    if at is None:
        return None
    unit = query.dimensions[at]
    if chosen.since is not None and chosen.until is not None:
        return period_buckets(unit, chosen.since, chosen.until)
    present = sorted(k for k in keys if k is not None)
    first = bucket_of(unit, chosen.since) if chosen.since is not None else None
    last = None
    if chosen.until is not None:  # the last instant before until (it is not included)
        last = bucket_of(unit, max(chosen.until, _EARLIEST) - timedelta(microseconds=1))
    first = first or (present[0] if present else None)
    last = last or (present[-1] if present else None)
    if first is None or last is None or last < first:
        return []
    return buckets_between(unit, first, last)


def _fill_buckets(
    query: MetricsQuery, chosen: MetricsFilter, rows: dict[Key, Group]
) -> dict[Key, Group]:
    """``rows`` with every time bucket present (for each value of the other dimension)."""
    at = _time_position(query)
    if at is None:
        return rows
    line = _bucket_line(query, chosen, [key[at] for key in rows])
    others = (
        sorted({key[1 - at] for key in rows}, key=_order) if len(query.dimensions) == 2 else [None]
    )
    filled = dict(rows)
    for bucket in line or []:
        for other in others:
            key: Key = (
                (bucket,)
                if len(query.dimensions) == 1
                else ((bucket, other) if at == 0 else (other, bucket))
            )
            filled.setdefault(key, {})
    return filled


def _shifted(
    query: MetricsQuery, previous: MetricsFilter, rows: dict[Key, Group]
) -> dict[Key, Group]:
    """The previous period's groups keyed as the current period's: a time bucket becomes the
    bucket as many buckets later as the current period has (aligned at the periods' ends)."""
    at = _time_position(query)
    if at is None:
        return rows
    unit = query.dimensions[at]
    assert previous.since is not None
    assert previous.until is not None
    before = period_buckets(unit, previous.since, previous.until)
    now = period_buckets(unit, previous.until, previous.until + (previous.until - previous.since))
    offset = len(before) - len(now)
    moved = {old: now[i - offset] for i, old in enumerate(before) if 0 <= i - offset < len(now)}
    shifted: dict[Key, Group] = {}
    for key, values in rows.items():
        if key[at] in moved:
            new = list(key)
            new[at] = moved[key[at]]
            shifted[tuple(new)] = values
    return shifted


def _order(value: Any) -> tuple[int, Any]:
    """Keys ascending, numbers before text, none last."""
    if value is None:
        return (2, 0)
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))


def _sorted(query: MetricsQuery, rows: dict[Key, Group]) -> list[tuple[Key, Group]]:
    """Groups in the answer's order: ``sort_by`` a dimension ascending or a metric descending
    (nulls last); by default the time dimension in time order, then the first metric; ties by
    the keys ascending. One sort; each group's key made once, of orders computed once per
    distinct value (thousands of groups share a few products and months)."""
    sort_by = query.sort_by
    at = _time_position(query)
    orders: dict[tuple[type, Any], tuple[int, Any]] = {}

    def order(value: Any) -> tuple[int, Any]:
        cached = orders.get((type(value), value))
        if cached is None:
            cached = orders[(type(value), value)] = _order(value)
        return cached

    def keys(key: Key) -> tuple[tuple[int, Any], ...]:
        return tuple(map(order, key))

    items = list(rows.items())
    if sort_by is None or sort_by in query.metrics:
        compute = _metric(sort_by or query.metrics[0]).compute
        if sort_by is None and at is not None:
            decorated = [
                (order(key[at]), _descending(compute(group)), keys(key), n)
                for n, (key, group) in enumerate(items)
            ]
        else:
            decorated = [
                ((0, 0), _descending(compute(group)), keys(key), n)
                for n, (key, group) in enumerate(items)
            ]
    else:
        position = list(query.dimensions).index(sort_by)
        decorated = [
            (order(key[position]), (0, 0.0), keys(key), n) for n, (key, _) in enumerate(items)
        ]
    decorated.sort()
    return [items[entry[-1]] for entry in decorated]


def _descending(value: Value) -> tuple[int, float]:
    return (1, 0.0) if value is None else (0, -float(value))


async def _labels(
    conn: aiosqlite.Connection, query: MetricsQuery, keys: Sequence[Key]
) -> dict[tuple[int, Any], str | None]:
    """Names of the ids on a page (products, features, tests, reject reasons)."""
    found: dict[tuple[int, Any], str | None] = {}
    for i, name in enumerate(query.dimensions):
        sql = _dimension(name).label
        wanted = sorted({key[i] for key in keys if key[i] is not None}, key=_order)
        if sql is None or not wanted:
            continue
        for row in await conn.execute_fetchall(sql, (json.dumps(wanted),)):
            found[(i, row[0])] = row[1]
    return found


def _row(
    query: MetricsQuery,
    key: Key,
    partials: Group,
    labels: dict[tuple[int, Any], str | None],
    prior: dict[Key, Group] | None,
) -> MetricsRow:
    group = {
        name: None if k is None else str(k) for name, k in zip(query.dimensions, key, strict=True)
    }
    named = {
        name: labels.get((i, key[i]))
        for i, name in enumerate(query.dimensions)
        if _dimension(name).label is not None and key[i] is not None
    }
    values = _values(query, partials)
    row = MetricsRow(group=group, labels=named, values=values)
    if prior is not None:
        before = _values(query, prior.get(key, {}))
        row.previous = before
        row.change = {}
        row.relative_change = {}
        for name, value in values.items():
            old = before.get(name)
            delta = None if value is None or old is None else round(value - old, 4)
            row.change[name] = delta
            row.relative_change[name] = round(delta / old, 4) if delta is not None and old else None
    return row
