"""The grouped aggregates of a ``query_metrics`` request: over the in-memory columns
(``bug_facts``, ``metrics_engine``) when those answer them, the others by SQL
(``metrics_sql.grouped_sql``). Both give the same groups: a key (a tuple, one value per
dimension) and the aggregates its metrics are made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import aiosqlite

from testio_mirror.store.bug_facts import BugFacts, Facts
from testio_mirror.store.metrics_engine import grouped, supports
from testio_mirror.store.metrics_fields import metric
from testio_mirror.store.metrics_sql import MetricsFilter, grouped_sql
from testio_mirror.store.metrics_vocabulary import Side, aggregate

Key = tuple[Any, ...]
Group = dict[str, Any]  # aggregate name -> its value in one group


class Query(Protocol):
    """What a grouping reads of a ``MetricsQuery``."""

    @property
    def metrics(self) -> Sequence[str]: ...

    @property
    def dimensions(self) -> Sequence[str]: ...


def _uses(name: str) -> tuple[str, ...]:
    found = metric(name)
    assert found is not None, "an unknown metric (checked before)"
    return found.uses


class Grouping:
    """Runs a query's grouped aggregates: over the in-memory columns when those answer them
    (``metrics_engine.supports``), the rest by SQL over ``conn``."""

    def __init__(self, conn: aiosqlite.Connection, facts: BugFacts | None) -> None:
        self._conn = conn
        self._facts = facts
        self._snapshot: Facts | None = None

    async def groups(
        self, query: Query, chosen: MetricsFilter, *, only: Sequence[str] | None = None
    ) -> dict[Key, Group]:
        """Every group of ``query`` over ``chosen``: its key and the aggregates its metrics
        are made of. Metrics are computed from them later, for the rows answered only (and the
        sort metric): a grouping by test and tester has thousands of groups."""
        wanted = set(only) if only is not None else {a for m in query.metrics for a in _uses(m)}
        partials: dict[Key, Group] = {}
        side: Side
        for side in ("bugs", "tests"):
            names = sorted(a for a in wanted if aggregate(a).side == side)
            if not names:
                continue
            if self._facts is not None and supports(side, query.dimensions, names):
                if self._snapshot is None:  # once per request: every side reads one state
                    self._snapshot = await self._facts.current(self._conn)
                facts = self._snapshot
                found = grouped(facts, side, query.dimensions, names, chosen)
                if not partials:  # the first side's groups are the groups (thousands of them)
                    partials = found
                    continue
                for key, values in found.items():
                    partials.setdefault(key, {}).update(values)
                continue
            await self._by_sql(side, query, names, chosen, partials)
        return partials

    async def _by_sql(
        self,
        side: Side,
        query: Query,
        names: Sequence[str],
        chosen: MetricsFilter,
        partials: dict[Key, Group],
    ) -> None:
        sql, params = grouped_sql(side, query.dimensions, names, chosen)
        width = len(query.dimensions)  # the keys come first, then the aggregates in order
        sets = [(width + i, name) for i, name in enumerate(names) if aggregate(name).kind == "set"]
        for row in await self._conn.execute_fetchall(sql, params):
            values = tuple(row)  # by position: thousands of rows, and names cost a lookup each
            found = partials.setdefault(values[:width], {})
            found.update(zip(names, values[width:], strict=True))
            for at, name in sets:
                found[name] = frozenset(str(values[at]).split(",")) if values[at] else frozenset()
