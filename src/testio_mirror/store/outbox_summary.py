"""The outbox at a glance (``OutboxSummary``): what ``sync_status`` and ``testio-mirror status``
show of the two-way sync. Conflict counts come from the audit, so a run's own are counted by
its start time; the last push is the latest answer TestIO gave to a push or a reconcile."""

from __future__ import annotations

from datetime import datetime

import aiosqlite

from testio_mirror.store.outbox_records import OutboxSummary, RecordedResolution
from testio_mirror.store.sqlite.timefmt import from_db, to_db
from testio_mirror.triage import CHANGE_STATES, ChangeState, ConflictStrategy


async def read_summary(conn: aiosqlite.Connection, since: datetime | None) -> OutboxSummary:
    """The summary; ``since``: conflicts counted from then on only (a run's), else in total."""
    start = to_db(since) or ""
    counts = await conn.execute_fetchall("SELECT state, count(*) FROM changes GROUP BY state")
    oldest = list(
        await conn.execute_fetchall(
            "SELECT id, created_at FROM changes WHERE state = 'pending' ORDER BY id LIMIT 1"
        )
    )
    # Changes that met a conflict, by the strategy chosen when they were made.
    detected = await conn.execute_fetchall(
        "SELECT c.strategy, count(DISTINCT e.change_id) FROM change_events e "
        "JOIN changes c ON c.id = e.change_id WHERE e.kind = 'conflict' AND e.at >= ? "
        "GROUP BY c.strategy",
        (start,),
    )
    # Resolutions, by the strategy that settled them (manual: a person).
    resolved = await conn.execute_fetchall(
        "SELECT json_extract(data, '$.strategy'), json_extract(data, '$.resolution'), "
        "count(*) FROM change_events WHERE kind = 'resolved' AND at >= ? GROUP BY 1, 2",
        (start,),
    )
    times = list(
        await conn.execute_fetchall(
            "SELECT (SELECT max(at) FROM change_events WHERE kind = 'answer'), "
            "(SELECT max(at) FROM change_events WHERE kind = 'reconciled'), "
            "(SELECT max(at) FROM change_events WHERE kind = 'applied')"
        )
    )
    by_state: dict[ChangeState, int] = dict.fromkeys(CHANGE_STATES, 0)
    by_state.update({row[0]: row[1] for row in counts})
    by_strategy: dict[ConflictStrategy, int] = {}
    resolutions: dict[RecordedResolution, int] = {}
    for strategy, resolution, count in resolved:
        by_strategy[strategy] = by_strategy.get(strategy, 0) + count
        resolutions[resolution] = resolutions.get(resolution, 0) + count
    answer, reconciled, applied = times[0]
    pushes = [moment for moment in (answer, reconciled) if moment is not None]
    return OutboxSummary(
        by_state=by_state,
        oldest_pending_id=oldest[0][0] if oldest else None,
        oldest_pending_at=from_db(oldest[0][1]) if oldest else None,
        conflicts_detected={row[0]: row[1] for row in detected},
        conflicts_resolved=by_strategy,
        resolutions=resolutions,
        last_push_at=from_db(max(pushes)) if pushes else None,
        last_applied_at=from_db(applied),
    )
