"""What the outbox takes and answers: a change asked for, a stored change with its audit, a page
of them, the summary; and the errors its calls raise (each says what to do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from testio_mirror.errors import MirrorError
from testio_mirror.triage import (
    ChangeState,
    ConflictStrategy,
    TriageAction,
    TriageState,
)

# How a conflict was settled, as recorded: a person's choice (``keep_local``, ``keep_server``)
# or what a strategy decided (``latest_local``: the local decision was the later one).
RecordedResolution = Literal[
    "keep_local", "keep_server", "server_wins", "local_wins", "latest_local", "latest_server"
]
RECORDED_RESOLUTIONS: tuple[RecordedResolution, ...] = (
    "keep_local",
    "keep_server",
    "server_wins",
    "local_wins",
    "latest_local",
    "latest_server",
)
# The resolutions that keep the local change (it is sent as a plain write against the server
# side); the others drop it (state ``cancelled``, the resolution says why).
LOCAL_RESOLUTIONS: frozenset[RecordedResolution] = frozenset(
    {"keep_local", "local_wins", "latest_local"}
)
# Live changes: something may still be sent for them.
LIVE_STATES: tuple[ChangeState, ...] = ("pending", "sending", "conflict")

EventKind = Literal[
    "created",
    "sending",
    "answer",
    "reconciled",
    "conflict",
    "resolved",
    "rebased",
    "cancelled",
    "failed",
    "applied",
]


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """One triage change as asked for: ``reason`` (a reject reason's key) and ``comment`` are
    for ``reject`` only."""

    bug_id: int
    action: TriageAction
    reason: str | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One step of a change (``change_events``): who did what, when, and the answer."""

    id: int
    change_id: int
    at: datetime
    kind: EventKind
    actor: str
    attempt: int | None = None
    outcome: str | None = None
    http_status: int | None = None
    message: str | None = None
    data: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A change in the outbox. ``base`` is the bug's triage state as the caller saw it (the
    mirror's row when the change was made, or the server side a local resolution accepted);
    ``bug_now`` and ``bug_triage_seen_at`` are the mirrored bug as it is now (None when the
    mirror no longer holds it). ``events``: its audit, oldest first, when the call says it
    fills them (``Outbox.get``, ``Outbox.list_changes``)."""

    id: int
    bug_id: int
    action: TriageAction
    reason: str | None
    comment: str | None
    base: TriageState
    strategy: ConflictStrategy
    requested_by: str
    client: str
    created_at: datetime
    updated_at: datetime
    state: ChangeState
    attempts: int
    last_error: str | None
    server_side: TriageState | None
    conflict_seen_at: datetime | None
    resolution: RecordedResolution | None
    resolution_strategy: ConflictStrategy | None
    resolved_by: str | None
    resolved_at: datetime | None
    applied_at: datetime | None
    bug_now: TriageState | None
    bug_triage_seen_at: datetime | None
    events: tuple[ChangeEvent, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Changes newest first; ``next_cursor`` goes on after the last one, ``cursors`` after each."""

    items: list[Change]
    next_cursor: str | None
    cursors: list[str]


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """The outbox at a glance. ``conflicts_detected``: changes that met a conflict, by the
    strategy chosen at their creation; ``conflicts_resolved``: changes whose conflict was
    settled, by the strategy that settled it (``manual`` for a person's choice);
    ``last_push_at``: the latest answer TestIO gave to a push (or a reconcile's read)."""

    by_state: dict[ChangeState, int]
    oldest_pending_id: int | None
    oldest_pending_at: datetime | None
    conflicts_detected: dict[ConflictStrategy, int]
    conflicts_resolved: dict[ConflictStrategy, int]
    resolutions: dict[RecordedResolution, int]
    last_push_at: datetime | None
    last_applied_at: datetime | None


class OutboxError(MirrorError):
    """A triage change cannot be stored or moved as asked; the message says why and what to do."""


class UnknownBugsError(OutboxError):
    """Some bugs of a change set are not in the mirror (or were removed); nothing was stored."""

    def __init__(self, bug_ids: list[int]) -> None:
        shown = ", ".join(str(i) for i in bug_ids[:10])
        more = f" and {len(bug_ids) - 10} more" if len(bug_ids) > 10 else ""
        noun = "bug" if len(bug_ids) == 1 else "bugs"
        super().__init__(
            f"{noun} {shown}{more} not in the mirror (or removed from the account): nothing "
            "was stored; sync or read them first (get_bug), then ask again"
        )
        self.bug_ids = bug_ids


class ChangeNotFoundError(OutboxError):
    """No change has that id."""

    def __init__(self, change_id: int) -> None:
        super().__init__(f"no change {change_id} in the outbox: list_changes shows them")
        self.change_id = change_id


class ChangeStateError(OutboxError):
    """The change is in a state that does not allow the call (cancelling an applied change), or
    another live change of the same bug decides the same thing."""
