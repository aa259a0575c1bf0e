"""The conditions of a ``BugFilter`` over bugs ``b``: what ``list_bugs`` and ``bug_stats`` read.

Example::

    where = bug_where(BugFilter(product_id=7, field="customer_impact", field_value="high"))
    sql = f"SELECT b.id FROM bugs b{where.sql}"
"""

from __future__ import annotations

import json

from testio_mirror.store.records import BugFilter
from testio_mirror.store.search import fts_query
from testio_mirror.store.sqlite.filters import Where


def flag(value: bool | None) -> int | None:
    """A boolean as SQLite stores it (1, 0, NULL)."""
    return None if value is None else int(value)


def bug_where(bug_filter: BugFilter) -> Where:
    """The conditions of ``bug_filter`` over bugs ``b``."""
    where = Where()
    where.equal("b.product_id", bug_filter.product_id)
    if bug_filter.test_ids:
        where.add(
            "b.test_id IN (SELECT value FROM json_each(?))", json.dumps(list(bug_filter.test_ids))
        )
    where.equal("b.feature_id", bug_filter.feature_id)
    where.among("b.severity", bug_filter.severities)
    where.among("b.status", bug_filter.statuses)
    where.equal("b.known", flag(bug_filter.known))
    where.since("b.reported_at", bug_filter.since)
    where.until("b.reported_at", bug_filter.until)
    if bug_filter.field is not None:
        # bug_fields_by_key (key, value) finds them; "" is a field left blank.
        if bug_filter.field_value is None:
            where.add(
                "b.id IN (SELECT bug_id FROM bug_fields WHERE key = ? AND value <> '')",
                bug_filter.field,
            )
        else:
            where.add(
                "b.id IN (SELECT bug_id FROM bug_fields WHERE key = ? AND value = ?)",
                bug_filter.field,
                bug_filter.field_value,
            )
    if bug_filter.text is not None:
        query = fts_query(bug_filter.text)
        if query is None:
            where.add("0")  # no searchable word: match nothing rather than everything
        else:
            where.add(
                "b.id IN (SELECT entity_id FROM search_index WHERE search_index MATCH ? "
                "AND kind = 'bug')",
                query,
            )
    return where
