"""Storing a set of triage changes: all of them or none, each with its base read from the
mirrored bug in the same transaction, and never a second live change deciding the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import aiosqlite

from testio_mirror.store.outbox_records import (
    Change,
    ChangeRequest,
    ChangeStateError,
    UnknownBugsError,
)
from testio_mirror.store.outbox_rows import (
    LIVE_SQL,
    add_event,
    base_columns,
    change_of,
    decision_of,
    load_change,
    select_changes,
    triage_json,
    triage_of_text,
)
from testio_mirror.triage import CONFLICT_STRATEGIES, TRIAGE_ACTIONS, ConflictStrategy


def check_request(request: ChangeRequest) -> None:
    """Raises ValueError: an action that is not a triage action, or a reason or comment on an
    action other than ``reject`` (the API takes them for a rejection only)."""
    if request.action not in TRIAGE_ACTIONS:
        raise ValueError(f"unknown triage action {request.action!r}: one of {TRIAGE_ACTIONS}")
    if request.action != "reject" and (request.reason is not None or request.comment is not None):
        raise ValueError(f"{request.action} takes no reason or comment (only reject does)")


def _same_ask(change: Change, request: ChangeRequest) -> bool:
    return (change.action, change.reason, change.comment) == (
        request.action,
        request.reason,
        request.comment,
    )


async def enqueue_changes(
    conn: aiosqlite.Connection,
    requests: Sequence[ChangeRequest],
    *,
    requested_by: str,
    client: str,
    strategy: ConflictStrategy,
    at: str,
) -> list[Change]:
    """Store ``requests`` as ``pending`` changes inside the caller's transaction; returns one
    change per request, in order. A request asking exactly what a live change of its bug
    already asks (same action, reason and comment) gets that change back, not a second one.

    Raises:
        UnknownBugsError: some bugs are not in the mirror (or removed); nothing is stored.
        ChangeStateError: a live change of the same bug decides the same thing differently
            (accept against reject, another reason); nothing is stored.
        ValueError: an unknown action or strategy, or a reason on an action other than reject.
    """
    if strategy not in CONFLICT_STRATEGIES:
        raise ValueError(f"unknown conflict strategy {strategy!r}: one of {CONFLICT_STRATEGIES}")
    for request in requests:
        check_request(request)
    bug_ids = list(dict.fromkeys(r.bug_id for r in requests))
    found = await conn.execute_fetchall(
        "SELECT id, triage FROM bugs WHERE deleted_at IS NULL "
        "AND id IN (SELECT value FROM json_each(?))",
        (json.dumps(bug_ids),),
    )
    triage = {row[0]: triage_of_text(row[1]) for row in found}
    unknown = [bug_id for bug_id in bug_ids if bug_id not in triage]
    if unknown:
        raise UnknownBugsError(unknown)
    live: dict[tuple[int, str], Change] = {}
    for row in await select_changes(
        conn,
        f"c.state IN {LIVE_SQL} AND c.bug_id IN (SELECT value FROM json_each(?))",
        (json.dumps(bug_ids),),
    ):
        change = change_of(row)
        live[(change.bug_id, decision_of(change.action))] = change
    stored: list[Change] = []
    for request in requests:
        key = (request.bug_id, decision_of(request.action))
        existing = live.get(key)
        if existing is not None:
            if not _same_ask(existing, request):
                raise ChangeStateError(
                    f"bug {request.bug_id} already has change {existing.id} ({existing.state}) "
                    f"to {existing.action}: nothing was stored; cancel it first "
                    "(cancel_change), or wait until it is settled"
                )
            stored.append(existing)
            continue
        base = triage[request.bug_id]
        cursor = await conn.execute(
            "INSERT INTO changes (bug_id, action, decision, reason, comment, base_status, "
            "base_known, base_fixed, base_exported, strategy, requested_by, client, created_at, "
            "updated_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            (
                request.bug_id,
                request.action,
                key[1],
                request.reason,
                request.comment,
                *base_columns(base),
                strategy,
                requested_by,
                client,
                at,
                at,
            ),
        )
        change_id = cursor.lastrowid
        assert change_id is not None
        await add_event(
            conn,
            change_id,
            at,
            "created",
            requested_by,
            data={
                "action": request.action,
                "reason": request.reason,
                "comment": request.comment,
                "base": triage_json(base),
                "strategy": strategy,
                "client": client,
            },
        )
        change = await load_change(conn, change_id)
        live[key] = change
        stored.append(change)
    return stored
