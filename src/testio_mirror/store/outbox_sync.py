"""What the outbox does inside other writes, in their transaction: a bug upsert that brings a new
triage state from TestIO (a conflict with a live change), our own applied answer (the bug's other
pending changes move their base along), and a nuke (live changes are cancelled, never sent to
the account the mirror is refilled from).

Kept cheap for the sync's hot path: a bug write first asks whether any change is pending or in
conflict at all (one probe of the ``changes_by_state`` index); only then are the live changes of
that write's bugs read (``changes_one_live``, restricted to the batch's ids).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import aiosqlite

from testio_mirror.store.outbox_rows import (
    LIVE_SQL,
    add_event,
    base_columns,
    change_of,
    note_conflict,
    select_changes,
    triage_json,
)
from testio_mirror.triage import ChangeState, TriageState

SYNC_ACTOR = "sync"


async def outbox_waits(conn: aiosqlite.Connection) -> bool:
    """Whether any change is pending or in conflict: the only ones a bug write can affect."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT EXISTS (SELECT 1 FROM changes WHERE state IN ('pending', 'conflict'))"
        )
    )
    return bool(rows[0][0])


async def note_sync_conflicts(
    conn: aiosqlite.Connection, incoming: Mapping[int, TriageState], at: str
) -> int:
    """Record the conflicts ``incoming`` (bug id -> its triage state from TestIO, about to be
    written) makes with live changes; call before the bugs are written. Returns how many changes
    met one.

    A bug whose mirrored triage state does not change is no news. A ``pending`` change whose
    base differs from the new state meets a conflict: with strategy ``manual`` it goes to
    ``conflict`` (both sides kept); with any other it stays ``pending`` with the server side
    and the time recorded, and the push applies its strategy when it sends. A change already
    in ``conflict`` gets the newer server side. A ``sending`` change is the push's: left alone.
    """
    if not incoming or not await outbox_waits(conn):
        return 0
    rows = await select_changes(
        conn,
        f"c.state IN {LIVE_SQL} AND c.bug_id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(incoming)),),
    )
    met = 0
    for row in rows:
        change = change_of(row)
        new = incoming[change.bug_id]
        if change.state == "sending" or change.bug_now == new:
            continue
        if change.state == "pending" and new == change.base:
            continue  # TestIO is back at what the caller saw: nothing to decide
        state: ChangeState = (
            "conflict" if change.state == "conflict" or change.strategy == "manual" else "pending"
        )
        await note_conflict(
            conn,
            change,
            new,
            at,
            SYNC_ACTOR,
            state=state,
            message="a sync found the bug changed in TestIO since the change was asked for",
        )
        met += 1
    return met


async def rebase_after_apply(
    conn: aiosqlite.Connection,
    bug_id: int,
    applied_id: int,
    before: TriageState | None,
    after: TriageState,
    at: str,
    actor: str,
) -> None:
    """Our own write moved the bug from ``before`` to ``after``: its other pending changes that
    saw ``before`` now see ``after`` (our write is no conflict of theirs)."""
    if before is None or before == after:
        return
    rows = await select_changes(
        conn, f"c.state IN {LIVE_SQL} AND c.bug_id = ? AND c.id != ?", (bug_id, applied_id)
    )
    for row in rows:
        change = change_of(row)
        if change.state != "pending" or change.base != before:
            continue
        await conn.execute(
            "UPDATE changes SET base_status = ?, base_known = ?, base_fixed = ?, "
            "base_exported = ?, updated_at = ? WHERE id = ?",
            (*base_columns(after), at, change.id),
        )
        await add_event(
            conn,
            change.id,
            at,
            "rebased",
            actor,
            message=f"change {applied_id} of the same bug was applied; this one now expects "
            "the bug as that left it",
            data={"before": triage_json(before), "after": triage_json(after)},
        )


async def cancel_live_changes(conn: aiosqlite.Connection, at: str, actor: str, why: str) -> int:
    """Cancel every live change (a nuke: the mirror is refilled, maybe from another account).
    Returns how many."""
    rows = await select_changes(conn, f"c.state IN {LIVE_SQL}", ())
    for row in rows:
        await conn.execute(
            "UPDATE changes SET state = 'cancelled', updated_at = ? WHERE id = ?", (at, row["id"])
        )
        await add_event(conn, row["id"], at, "cancelled", actor, message=why)
    return len(rows)
