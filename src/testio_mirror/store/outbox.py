"""``Outbox``: the durable queue of triage changes, every move of a change one transaction.

A change is stored (``pending``) before anything is sent; ``claim`` commits ``sending`` before the
request leaves (the exactly-once anchor: a change found ``sending`` after a crash is reconciled by
reading the bug, never sent blindly again); the answer is recorded with the bug it returned in
the same transaction (``record_applied``). States and moves (docs/store.md):

    pending  -> sending (claim) -> applied | pending (not applied) | failed | conflict
    pending  -> conflict (a sync or the push saw TestIO differ, strategy manual) | failed
    conflict -> pending (keep_local: base := server side) | cancelled (keep_server)
    pending, conflict -> cancelled (cancel)

Example::

    outbox = mirror.outbox
    [change] = await outbox.enqueue([ChangeRequest(5, "accept")], requested_by="local",
                                    client="cli", strategy="manual")
    claimed = await outbox.claim(change.id)          # None: someone else took it
    ...PUT bugs/5/accept...
    await outbox.record_applied(change.id, answer["bug"], http_status=200)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

import aiosqlite

from testio_mirror.store.bugs import load_reject_reasons, write_bugs, write_reject_reasons
from testio_mirror.store.outbox_enqueue import enqueue_changes
from testio_mirror.store.outbox_records import (
    LOCAL_RESOLUTIONS,
    RECORDED_RESOLUTIONS,
    Change,
    ChangePage,
    ChangeRequest,
    ChangeStateError,
    OutboxSummary,
    RecordedResolution,
)
from testio_mirror.store.outbox_rows import (
    add_event,
    base_columns,
    change_of,
    load_change,
    load_events,
    note_conflict,
    select_changes,
    triage_json,
)
from testio_mirror.store.outbox_summary import read_summary
from testio_mirror.store.outbox_sync import rebase_after_apply
from testio_mirror.store.sqlite.cursor import decode_position, encode_position
from testio_mirror.store.sqlite.db import Database
from testio_mirror.triage import (
    CHANGE_STATES,
    ChangeState,
    ConflictStrategy,
    TriageState,
)
from testio_mirror.upstream.errors import BadResponseError
from testio_mirror.upstream.models import Bug, RejectReason

PUSH_ACTOR = "push"
MAX_LIMIT = 200
# Events shown per change in a listing: the latest ones (``get`` shows up to GET_EVENTS).
LIST_EVENTS = 20
GET_EVENTS = 200
Via = Literal["answer", "reconciled"]


class Outbox:
    """The outbox of one mirror (``mirror.outbox``). Every call is one transaction through the
    store's writer (busy waits, failures as ``StoreError``)."""

    def __init__(self, db: Database, stamp: Callable[[], str]) -> None:
        self._db = db
        self._stamp = stamp

    async def enqueue(
        self,
        changes: Sequence[ChangeRequest],
        *,
        requested_by: str,
        client: str,
        strategy: ConflictStrategy,
    ) -> list[Change]:
        """Store ``changes`` as ``pending``, all or none, each with its base read from the
        mirrored bug in the same transaction. A change asking exactly what a live change of its
        bug asks gets that one back (a retried call stores nothing twice).

        Raises:
            UnknownBugsError: some bugs are not in the mirror (or removed); nothing stored.
            ChangeStateError: a live change of a bug decides the same thing differently.
            ValueError: an unknown action or strategy, or a reason on a non-reject action.
            StoreError: the mirror could not be written.
        """
        async with self._db.transaction() as conn:
            return await enqueue_changes(
                conn,
                changes,
                requested_by=requested_by,
                client=client,
                strategy=strategy,
                at=self._stamp(),
            )

    async def claim(self, change_id: int, *, by: str = PUSH_ACTOR) -> Change | None:
        """``pending -> sending``, one attempt more, committed before the request is sent.
        None when the change is not pending (claimed by another push, cancelled, settled).

        Raises:
            ChangeNotFoundError: no such change.
        """
        at = self._stamp()
        async with self._db.transaction() as conn:
            change = await load_change(conn, change_id)
            if change.state != "pending":
                return None
            await conn.execute(
                "UPDATE changes SET state = 'sending', attempts = attempts + 1, updated_at = ? "
                "WHERE id = ?",
                (at, change_id),
            )
            await add_event(conn, change_id, at, "sending", by, attempt=change.attempts + 1)
            return await load_change(conn, change_id)

    async def record_applied(
        self,
        change_id: int,
        bug_raw: Mapping[str, Any],
        *,
        http_status: int | None = None,
        via: Via = "answer",
        by: str = PUSH_ACTOR,
    ) -> Change:
        """``sending -> applied``: the bug TestIO answered (or a reconcile read) is written
        through the sync's bug path (search, stats and lists see it at once) and the change
        marked applied, in one transaction. The bug's other pending changes that expected the
        bug as it was expect it as it is now (our write is no conflict of theirs).

        Raises:
            ChangeNotFoundError, ChangeStateError: no such change, or it is not ``sending``.
            BadResponseError: ``bug_raw`` is not a usable bug, or another bug than the change's.
        """
        bug = Bug.from_wire(dict(bug_raw))
        at = self._stamp()
        async with self._db.transaction() as conn:
            change = await self._load_in(conn, change_id, {"sending"}, "recorded as applied")
            if bug.id != change.bug_id:
                raise BadResponseError(
                    f"the answer for change {change_id} is bug {bug.id}, not bug {change.bug_id}"
                )
            await write_bugs(conn, [bug], at, from_upstream_read=False)
            after = TriageState.of_bug(bug.raw)
            await rebase_after_apply(conn, bug.id, change_id, change.bug_now, after, at, by)
            await mark_applied(conn, change, at, by, http_status=http_status, via=via)
            return await load_change(conn, change_id)

    async def record_read(self, bug_raw: Mapping[str, Any]) -> None:
        """A bug the push read from TestIO before sending: written through the sync's bug path,
        so a triage state that differs from a live change's base is a conflict recorded exactly
        as a sync records it (``manual`` parks the change, other strategies note the server
        side and leave it ``pending`` for the push to settle).

        Raises:
            BadResponseError: ``bug_raw`` is not a usable bug.
            StoreError: the mirror could not be written.
        """
        bug = Bug.from_wire(dict(bug_raw))
        async with self._db.transaction() as conn:
            await write_bugs(conn, [bug], self._stamp(), from_upstream_read=True)

    async def record_not_applied(
        self,
        change_id: int,
        error: str,
        *,
        http_status: int | None = None,
        via: Via = "answer",
        by: str = PUSH_ACTOR,
    ) -> Change:
        """``sending -> pending``: TestIO surely did not apply it (a definitive answer, or a
        reconcile read); the next push sends it again. ``error``: our own words, never
        TestIO's text.

        Raises:
            ChangeNotFoundError, ChangeStateError: no such change, or it is not ``sending``.
        """
        at = self._stamp()
        async with self._db.transaction() as conn:
            await self._load_in(conn, change_id, {"sending"}, "recorded as not applied")
            await conn.execute(
                "UPDATE changes SET state = 'pending', last_error = ?, updated_at = ? WHERE id = ?",
                (error, at, change_id),
            )
            await add_event(
                conn,
                change_id,
                at,
                via,
                by,
                outcome="not_applied",
                http_status=http_status,
                message=error,
            )
            return await load_change(conn, change_id)

    async def record_failed(
        self,
        change_id: int,
        error: str,
        *,
        http_status: int | None = None,
        by: str = PUSH_ACTOR,
    ) -> Change:
        """``pending | sending -> failed``: it will not succeed as asked (a 4xx, an unknown
        reject reason). ``error``: our own words.

        Raises:
            ChangeNotFoundError, ChangeStateError: no such change, or it is settled or in
                conflict.
        """
        at = self._stamp()
        async with self._db.transaction() as conn:
            change = await self._load_in(conn, change_id, {"pending", "sending"}, "failed")
            await conn.execute(
                "UPDATE changes SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ?",
                (error, at, change_id),
            )
            if change.state == "sending":
                await add_event(
                    conn,
                    change_id,
                    at,
                    "answer",
                    by,
                    outcome="failed",
                    http_status=http_status,
                    message=error,
                )
            await add_event(
                conn, change_id, at, "failed", by, http_status=http_status, message=error
            )
            return await load_change(conn, change_id)

    async def record_conflict(
        self, change_id: int, server_side: TriageState, *, by: str = PUSH_ACTOR
    ) -> Change:
        """``pending | sending -> conflict``: TestIO's state differs from the base and a person
        must decide (strategy ``manual``); both sides are kept.

        Raises:
            ChangeNotFoundError, ChangeStateError: no such change, or it is settled.
        """
        at = self._stamp()
        async with self._db.transaction() as conn:
            change = await self._load_in(
                conn, change_id, {"pending", "sending", "conflict"}, "parked as a conflict"
            )
            await note_conflict(conn, change, server_side, at, by, state="conflict")
            return await load_change(conn, change_id)

    async def resolve(
        self,
        change_id: int,
        resolution: RecordedResolution,
        *,
        by: str,
        strategy: ConflictStrategy,
        server_side: TriageState | None = None,
    ) -> Change:
        """Settle a conflict. ``keep_local`` / ``keep_server`` (a person, on a change in
        ``conflict``); ``local_wins`` / ``server_wins`` / ``latest_local`` / ``latest_server``
        (a strategy, also on a ``pending`` or ``sending`` change, with the ``server_side`` the
        push read). Local resolutions set the base to the server side (the next send is a
        plain write): ``conflict -> pending``, a pending or sending change stays as it is.
        Server resolutions end it ``cancelled`` (the resolution says why). Recorded with who
        and the strategy.

        Raises:
            ChangeNotFoundError, ChangeStateError: no such change, a state the resolution does
                not apply to, or no server side known for it.
            ValueError: not a resolution.
        """
        if resolution not in RECORDED_RESOLUTIONS:
            raise ValueError(f"unknown resolution {resolution!r}: one of {RECORDED_RESOLUTIONS}")
        manual = resolution in ("keep_local", "keep_server")
        allowed: set[ChangeState] = {"conflict"} if manual else {"pending", "sending", "conflict"}
        at = self._stamp()
        async with self._db.transaction() as conn:
            change = await self._load_in(conn, change_id, allowed, f"resolved with {resolution}")
            if server_side is not None and server_side != change.server_side:
                await note_conflict(conn, change, server_side, at, by, state=change.state)
            server = server_side or change.server_side
            if server is None:
                raise ChangeStateError(
                    f"change {change_id} has no conflict recorded: nothing to resolve"
                )
            if resolution in LOCAL_RESOLUTIONS:
                state: ChangeState = "pending" if change.state == "conflict" else change.state
                await conn.execute(
                    "UPDATE changes SET base_status = ?, base_known = ?, base_fixed = ?, "
                    "base_exported = ? WHERE id = ?",
                    (*base_columns(server), change_id),
                )
            else:
                state = "cancelled"
            await conn.execute(
                "UPDATE changes SET state = ?, resolution = ?, resolution_strategy = ?, "
                "resolved_by = ?, resolved_at = ?, updated_at = ? WHERE id = ?",
                (state, resolution, strategy, by, at, at, change_id),
            )
            await add_event(
                conn,
                change_id,
                at,
                "resolved",
                by,
                outcome=state,
                data={
                    "resolution": resolution,
                    "strategy": strategy,
                    "local": triage_json(change.base),
                    "server": triage_json(server),
                },
            )
            return await load_change(conn, change_id)

    async def cancel(self, change_id: int, *, by: str) -> Change:
        """``pending | conflict -> cancelled``: nothing will be sent.

        Raises:
            ChangeNotFoundError, ChangeStateError: no such change, or it is being sent or is
                settled already.
        """
        at = self._stamp()
        async with self._db.transaction() as conn:
            await self._load_in(conn, change_id, {"pending", "conflict"}, "cancelled")
            await conn.execute(
                "UPDATE changes SET state = 'cancelled', updated_at = ? WHERE id = ?",
                (at, change_id),
            )
            await add_event(conn, change_id, at, "cancelled", by)
            return await load_change(conn, change_id)

    async def in_state(self, state: ChangeState) -> list[Change]:
        """Every change in ``state``, oldest first (no events).

        Raises:
            ValueError: not a change state.
        """
        if state not in CHANGE_STATES:
            raise ValueError(f"unknown change state {state!r}: one of {CHANGE_STATES}")
        async with self._db.reader() as conn:
            rows = await select_changes(conn, "c.state = ?", (state,))
        return [change_of(row) for row in rows]

    async def sending_changes(self) -> list[Change]:
        """What a start-up reconcile reads: changes whose answer may have been lost."""
        return await self.in_state("sending")

    async def pending_changes(self) -> list[Change]:
        """What a push sends, oldest first."""
        return await self.in_state("pending")

    async def get(self, change_id: int) -> Change:
        """One change with its events (the latest ``GET_EVENTS``).

        Raises:
            ChangeNotFoundError: no such change.
        """
        async with self._db.reader() as conn:
            change = await load_change(conn, change_id)
            events = await load_events(conn, [change_id], GET_EVENTS)
        return replace(change, events=tuple(events.get(change_id, [])))

    async def list_changes(
        self, state: ChangeState | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> ChangePage:
        """Changes newest first (in ``state`` if given), each with its latest ``LIST_EVENTS``
        events and its bug as mirrored now; ``limit`` at most ``MAX_LIMIT``.

        Raises:
            CursorError: ``cursor`` is not one this listing handed out.
            ValueError: not a change state.
        """
        if state is not None and state not in CHANGE_STATES:
            raise ValueError(f"unknown change state {state!r}: one of {CHANGE_STATES}")
        limit = max(1, min(limit, MAX_LIMIT))
        scope = f"changes:{state or 'all'}"
        where: list[str] = ["1"]
        params: list[object] = []
        if state is not None:
            where.append("c.state = ?")
            params.append(state)
        if cursor is not None:
            where.append("c.id < ?")
            params.append(decode_position(cursor, scope))
        async with self._db.reader() as conn:
            rows = await select_changes(
                conn, " AND ".join(where), (*params, limit + 1), " ORDER BY c.id DESC LIMIT ?"
            )
            shown = rows[:limit]
            events = await load_events(conn, [row["id"] for row in shown], LIST_EVENTS)
        items = [change_of(row, events.get(row["id"], [])) for row in shown]
        cursors = [encode_position(scope, item.id) for item in items]
        more = len(rows) > limit
        return ChangePage(items=items, next_cursor=cursors[-1] if more else None, cursors=cursors)

    async def summary(self, *, since: datetime | None = None) -> OutboxSummary:
        """Counts by state, the oldest pending change, conflicts detected and resolved by
        strategy, the last push. ``since`` (a run's start): the conflict counts cover only what
        happened from then on (per run); the rest is always in total."""
        async with self._db.reader() as conn:
            return await read_summary(conn, since)

    async def replace_reject_reasons(self, reasons: Sequence[RejectReason]) -> None:
        """The account's reject reasons are now exactly ``reasons`` (``GET bugs/reject_reasons``).

        Raises:
            StoreError: the mirror could not be written.
        """
        async with self._db.transaction() as conn:
            await write_reject_reasons(conn, reasons, self._stamp())
            await conn.execute(
                "DELETE FROM reject_reasons WHERE key NOT IN (SELECT value FROM json_each(?))",
                (json.dumps([r.key for r in reasons]),),
            )

    async def reject_reasons(self) -> list[RejectReason]:
        """The mirrored reject reasons, by key."""
        async with self._db.reader() as conn:
            return await load_reject_reasons(conn)

    async def _load_in(
        self,
        conn: aiosqlite.Connection,
        change_id: int,
        allowed: Collection[ChangeState],
        verb: str,
    ) -> Change:
        change = await load_change(conn, change_id)
        if change.state not in allowed:
            states = " or ".join(sorted(allowed))
            raise ChangeStateError(
                f"change {change_id} is {change.state}: it cannot be {verb} (only a change "
                f"that is {states} can); list_changes shows where it stands"
            )
        return change


async def mark_applied(
    conn: aiosqlite.Connection,
    change: Change,
    at: str,
    by: str,
    *,
    http_status: int | None,
    via: Via,
) -> None:
    """The change's answer and its ``applied`` state (after the bug was written)."""
    await conn.execute(
        "UPDATE changes SET state = 'applied', applied_at = ?, last_error = NULL, "
        "updated_at = ? WHERE id = ?",
        (at, at, change.id),
    )
    await add_event(conn, change.id, at, via, by, outcome="applied", http_status=http_status)
    await add_event(conn, change.id, at, "applied", by)
