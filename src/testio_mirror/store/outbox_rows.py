"""The outbox's rows inside one connection: reading changes (with their bug as mirrored now) and
their events, appending an event, and the stored form of a ``TriageState``.

Every function takes the caller's connection, so a caller composes them into one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import aiosqlite
import orjson

from testio_mirror.store.outbox_records import (
    Change,
    ChangeEvent,
    ChangeNotFoundError,
    EventKind,
    RecordedResolution,
)
from testio_mirror.store.sqlite.timefmt import from_db, required_from_db
from testio_mirror.triage import ChangeState, ConflictStrategy, TriageAction, TriageState

# The bug as mirrored now, next to each change; a removed bug is shown as None.
CHANGE_SELECT = (
    "SELECT c.*, b.triage AS bug_triage, b.triage_seen_at AS bug_triage_seen_at "
    "FROM changes c LEFT JOIN bugs b ON b.id = c.bug_id AND b.deleted_at IS NULL"
)
LIVE_SQL = "('pending', 'sending', 'conflict')"
# A bug upsert keeps ``triage_seen_at`` while the triage state is unchanged: it says when the
# mirror first observed the state (what strategy ``latest`` compares).
KEEP_TRIAGE_SEEN = {
    "triage_seen_at": "CASE WHEN bugs.triage IS excluded.triage THEN bugs.triage_seen_at "
    "ELSE excluded.triage_seen_at END"
}


def triage_text(state: TriageState) -> str:
    """The stored form (``bugs.triage``): ``[status, known, fixed, exported]``, the flags as 0
    or 1, exactly as migration 7's ``json_array`` writes it for rows it backfills."""
    # orjson: every bug a sync writes goes through here; its text is json_array's (no spaces,
    # UTF-8 as is).
    flags = [int(state.known), int(state.fixed), int(state.exported)]
    return orjson.dumps([state.status, *flags]).decode("utf-8")


def triage_of_text(text: str) -> TriageState:
    status, known, fixed, exported = json.loads(text)
    return TriageState(
        status=status if isinstance(status, str) else None,
        known=bool(known),
        fixed=bool(fixed),
        exported=bool(exported),
    )


def triage_json(state: TriageState) -> dict[str, object]:
    """A triage state as an event's data shows it."""
    return {
        "status": state.status,
        "known": state.known,
        "fixed": state.fixed,
        "exported": state.exported,
    }


def decision_of(action: TriageAction) -> str:
    """What a change decides: accept and reject both decide the status; each mark its flag."""
    return "status" if action in ("accept", "reject") else action


def base_columns(state: TriageState) -> tuple[str | None, int, int, int]:
    """``base_status, base_known, base_fixed, base_exported``."""
    return state.status, int(state.known), int(state.fixed), int(state.exported)


def change_of(row: aiosqlite.Row, events: Sequence[ChangeEvent] = ()) -> Change:
    server_side = row["server_side"]
    bug_triage = row["bug_triage"]
    return Change(
        id=row["id"],
        bug_id=row["bug_id"],
        action=cast(TriageAction, row["action"]),
        reason=row["reason"],
        comment=row["comment"],
        base=TriageState(
            status=row["base_status"],
            known=bool(row["base_known"]),
            fixed=bool(row["base_fixed"]),
            exported=bool(row["base_exported"]),
        ),
        strategy=cast(ConflictStrategy, row["strategy"]),
        requested_by=row["requested_by"],
        client=row["client"],
        created_at=required_from_db(row["created_at"]),
        updated_at=required_from_db(row["updated_at"]),
        state=cast(ChangeState, row["state"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        server_side=triage_of_text(server_side) if server_side else None,
        conflict_seen_at=from_db(row["conflict_seen_at"]),
        resolution=cast(RecordedResolution | None, row["resolution"]),
        resolution_strategy=cast(ConflictStrategy | None, row["resolution_strategy"]),
        resolved_by=row["resolved_by"],
        resolved_at=from_db(row["resolved_at"]),
        applied_at=from_db(row["applied_at"]),
        bug_now=triage_of_text(bug_triage) if bug_triage else None,
        bug_triage_seen_at=from_db(row["bug_triage_seen_at"]),
        events=tuple(events),
    )


async def select_changes(
    conn: aiosqlite.Connection, where: str, params: Sequence[Any], tail: str = " ORDER BY c.id"
) -> list[aiosqlite.Row]:
    """Rows of ``CHANGE_SELECT`` with ``where`` (the store's own text; values in ``params``)."""
    return list(await conn.execute_fetchall(f"{CHANGE_SELECT} WHERE {where}{tail}", params))


async def load_change(conn: aiosqlite.Connection, change_id: int) -> Change:
    """Raises ChangeNotFoundError."""
    rows = await select_changes(conn, "c.id = ?", (change_id,))
    if not rows:
        raise ChangeNotFoundError(change_id)
    return change_of(rows[0])


async def load_events(
    conn: aiosqlite.Connection, change_ids: Sequence[int], per_change: int
) -> dict[int, list[ChangeEvent]]:
    """The last ``per_change`` events of each change, oldest first."""
    if not change_ids:
        return {}
    rows = await conn.execute_fetchall(
        "SELECT * FROM (SELECT e.*, row_number() OVER "
        "(PARTITION BY change_id ORDER BY id DESC) AS newest FROM change_events e "
        "WHERE change_id IN (SELECT value FROM json_each(?))) WHERE newest <= ? ORDER BY id",
        (json.dumps(list(change_ids)), per_change),
    )
    found: dict[int, list[ChangeEvent]] = {}
    for row in rows:
        found.setdefault(row["change_id"], []).append(
            ChangeEvent(
                id=row["id"],
                change_id=row["change_id"],
                at=required_from_db(row["at"]),
                kind=cast(EventKind, row["kind"]),
                actor=row["actor"],
                attempt=row["attempt"],
                outcome=row["outcome"],
                http_status=row["http_status"],
                message=row["message"],
                data=json.loads(row["data"]) if row["data"] else None,
            )
        )
    return found


async def add_event(
    conn: aiosqlite.Connection,
    change_id: int,
    at: str,
    kind: EventKind,
    actor: str,
    *,
    attempt: int | None = None,
    outcome: str | None = None,
    http_status: int | None = None,
    message: str | None = None,
    data: dict[str, object] | None = None,
) -> None:
    """Append one step to a change's audit."""
    await conn.execute(
        "INSERT INTO change_events (change_id, at, kind, actor, attempt, outcome, http_status, "
        "message, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            change_id,
            at,
            kind,
            actor,
            attempt,
            outcome,
            http_status,
            message,
            None if data is None else json.dumps(data, separators=(",", ":")),
        ),
    )


async def note_conflict(
    conn: aiosqlite.Connection,
    change: Change,
    server_side: TriageState,
    at: str,
    by: str,
    *,
    state: ChangeState,
    message: str | None = None,
) -> None:
    """Record that TestIO's side differs from the change's base: the server side, when first
    seen, and an event with both sides; the change ends in ``state``."""
    await conn.execute(
        "UPDATE changes SET state = ?, server_side = ?, "
        "conflict_seen_at = coalesce(conflict_seen_at, ?), updated_at = ? WHERE id = ?",
        (state, triage_text(server_side), at, at, change.id),
    )
    await add_event(
        conn,
        change.id,
        at,
        "conflict",
        by,
        outcome=state,
        message=message,
        data={
            "local": triage_json(change.base),
            "server": triage_json(server_side),
            "strategy": change.strategy,
        },
    )
