"""Bug statistics: counts by status and acceptance rates of bugs, grouped, a page at a time.

Every group is counted (the totals cover them all), then a page of them is answered in the
statistic's order: largest groups first, except time groups (``month``), oldest first and undated
last. Pages are positions in that order (``cursor.encode_position``): groups have no id of their
own to continue after, and each call counts them afresh anyway.
"""

from __future__ import annotations

import aiosqlite

from testio_mirror.store.records import GroupBy, StatsGroup, StatsPage
from testio_mirror.store.sqlite.cursor import decode_position, encode_position
from testio_mirror.store.sqlite.filters import Where

GROUPS: dict[GroupBy, tuple[str, str]] = {
    # group key expression over bugs b; label expression over the grouped row g. Labels are
    # looked up once per group, after grouping, so counting reads only the covering index.
    "severity": ("b.severity", "g.key"),
    "status": ("b.status", "g.key"),
    "feature": ("b.feature_id", "(SELECT title FROM features WHERE id = g.key)"),
    "test": ("b.test_id", "(SELECT title FROM tests WHERE id = g.key)"),
    "tester": ("b.author", "g.key"),
    "month": ("substr(b.reported_at, 1, 7)", "g.key"),
}
TIME_GROUPS: frozenset[GroupBy] = frozenset({"month"})  # answered in time order, not by size


async def count_groups(
    conn: aiosqlite.Connection, group_by: GroupBy, where: Where, *, by_index: bool
) -> list[StatsGroup]:
    """Every group of the bugs ``where`` chooses (over bugs ``b``), in the statistic's order.
    ``by_index``: count through the covering index (not for bugs of a few tests, which
    ``bugs_by_test`` finds faster).

    Raises:
        ValueError: ``group_by`` is not one of ``GroupBy``.
    """
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of: {', '.join(GROUPS)}")
    key, label = GROUPS[group_by]
    # Without statistics SQLite prefers the newest-first index, which reads every bug row;
    # the covering index counts without reading them.
    index = " INDEXED BY bugs_for_stats" if by_index else ""
    order = "g.key IS NULL, g.key" if group_by in TIME_GROUPS else "g.total DESC, g.key"
    sql = (
        f"SELECT g.*, {label} AS label FROM (SELECT {key} AS key, count(*) AS total, "
        "sum(b.status = 'accepted') AS accepted, sum(b.status = 'rejected') AS rejected, "
        f"sum(b.status = 'forwarded') AS forwarded FROM bugs b{index}{where.sql} "
        f"GROUP BY {key}) g ORDER BY {order}"
    )
    rows = await conn.execute_fetchall(sql, where.params)
    groups = []
    for row in rows:
        decided = row["accepted"] + row["rejected"]
        groups.append(
            StatsGroup(
                key=None if row["key"] is None else str(row["key"]),
                label=row["label"],
                total=row["total"],
                accepted=row["accepted"],
                rejected=row["rejected"],
                forwarded=row["forwarded"],
                acceptance_rate=round(row["accepted"] / decided, 4) if decided else None,
            )
        )
    return groups


def stats_page(
    groups: list[StatsGroup], group_by: GroupBy, limit: int | None, cursor: str | None
) -> StatsPage:
    """The page of ``groups`` after ``cursor`` (every group when ``limit`` is None), with the
    totals of all of them.

    Raises:
        CursorError: ``cursor`` is not the next_cursor of a page of this grouping.
    """
    scope = f"stats:{group_by}"
    start = decode_position(cursor, scope) if cursor else 0
    end = len(groups) if limit is None else start + limit
    shown = groups[start:end]
    return StatsPage(
        groups=shown,
        group_count=len(groups),
        total=sum(g.total for g in groups),
        accepted=sum(g.accepted for g in groups),
        rejected=sum(g.rejected for g in groups),
        forwarded=sum(g.forwarded for g in groups),
        next_cursor=encode_position(scope, end) if end < len(groups) else None,
        cursors=[encode_position(scope, start + i + 1) for i in range(len(shown))],
    )
