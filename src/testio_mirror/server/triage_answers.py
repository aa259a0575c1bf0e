"""What the triage tools answer: per change its id, state, the bug's triage state now and, for a
conflict, both sides; the plan a person confirms; the audit of a change."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from testio_mirror.schema import CompactSchema
from testio_mirror.sync.models import PushSummary
from testio_mirror.triage import ChangeState, ConflictStrategy, TriageAction, TriageState

if TYPE_CHECKING:  # the server lists its tools before the store and the sync are loaded
    from testio_mirror.store.outbox_records import Change, ChangeEvent
    from testio_mirror.sync.triage_desk import PlannedChange

TriageOutcomeKind = Literal["sent", "queued", "needs_confirmation", "declined", "dry_run"]

_NEXT_STEP: dict[ChangeState, str | None] = {
    "pending": "it goes out with the next push (sync_data, or the refresh loop)",
    "sending": "its answer was lost: the next push reads the bug and settles it",
    "applied": None,
    "conflict": "TestIO changed meanwhile: show the person both sides, then "
    "resolve_conflict(change_id, keep_local | keep_server)",
    "failed": None,
    "cancelled": None,
}


class TriageSide(CompactSchema):
    """A bug's triage state: its status and the known/fixed/exported flags."""

    status: str | None
    known: bool
    fixed: bool
    exported: bool

    @classmethod
    def of(cls, state: TriageState) -> TriageSide:
        return cls(
            status=state.status, known=state.known, fixed=state.fixed, exported=state.exported
        )


class ChangeEventView(CompactSchema):
    """One step of a change's audit."""

    at: datetime
    kind: str = Field(description="created, sending, answer, reconciled, conflict, resolved, ...")
    actor: str
    attempt: int | None = None
    outcome: str | None = None
    http_status: int | None = None
    message: str | None = None

    @classmethod
    def of(cls, event: ChangeEvent) -> ChangeEventView:
        return cls(
            at=event.at,
            kind=event.kind,
            actor=event.actor,
            attempt=event.attempt,
            outcome=event.outcome,
            http_status=event.http_status,
            message=event.message,
        )


class ChangeView(CompactSchema):
    """A triage change in the outbox."""

    change_id: int
    bug_id: int
    action: TriageAction
    reason: str | None = None
    comment: str | None = None
    state: ChangeState = Field(
        description="pending, sending, applied, conflict (a person decides), failed, cancelled"
    )
    bug_status_now: str | None = Field(description="the bug's status as mirrored now")
    bug_now: TriageSide | None = Field(description="the bug's triage state as mirrored now")
    local: TriageSide = Field(description="the bug as the caller saw it when asking")
    server: TriageSide | None = Field(
        default=None, description="TestIO's side, when it changed meanwhile (a conflict)"
    )
    strategy: ConflictStrategy
    resolution: str | None = None
    attempts: int
    last_error: str | None = None
    requested_by: str
    created_at: datetime
    applied_at: datetime | None = None
    next_step: str | None = None
    events: list[ChangeEventView] | None = Field(
        default=None, description="the change's audit, oldest first"
    )

    @classmethod
    def of(cls, change: Change, *, events: bool = False) -> ChangeView:
        return cls(
            change_id=change.id,
            bug_id=change.bug_id,
            action=change.action,
            reason=change.reason,
            comment=change.comment,
            state=change.state,
            bug_status_now=change.bug_now.status if change.bug_now else None,
            bug_now=TriageSide.of(change.bug_now) if change.bug_now else None,
            local=TriageSide.of(change.base),
            server=TriageSide.of(change.server_side) if change.server_side else None,
            strategy=change.strategy,
            resolution=change.resolution,
            attempts=change.attempts,
            last_error=change.last_error,
            requested_by=change.requested_by,
            created_at=change.created_at,
            applied_at=change.applied_at,
            next_step=_NEXT_STEP[change.state],
            events=[ChangeEventView.of(e) for e in change.events] if events else None,
        )


class PlannedView(CompactSchema):
    """A change as it would be sent: what a person confirms."""

    bug_id: int
    title: str | None
    action: TriageAction
    reason: str | None = None
    comment: str | None = None
    status_now: str | None = Field(description="the bug's status as mirrored now")
    effect: str

    @classmethod
    def of(cls, planned: PlannedChange) -> PlannedView:
        return cls(
            bug_id=planned.bug.id,
            title=planned.bug.title,
            action=planned.request.action,
            reason=planned.request.reason,
            comment=planned.request.comment,
            status_now=planned.bug.status,
            effect=planned.effect,
        )


class TriageAnswer(CompactSchema):
    """What triage_bugs did."""

    outcome: TriageOutcomeKind = Field(
        description="sent: stored and pushed; queued: stored, goes out with the next push; "
        "needs_confirmation: nothing stored, repeat with confirm=<token> once the person "
        "agrees; declined: the person said no, nothing stored; dry_run: checked only"
    )
    changes: list[ChangeView] = Field(default_factory=list, description="the stored changes")
    plan: list[PlannedView] = Field(
        default_factory=list, description="the changes as checked (not stored)"
    )
    confirm_token: str | None = Field(
        default=None, description="repeat the same call with confirm set to this (one use)"
    )
    confirm_expires_at: datetime | None = None
    push: PushSummary | None = Field(default=None, description="what the push did")
    hint: str | None = None


class ChangeList(CompactSchema):
    LIST_FIELD: ClassVar[str] = "changes"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit"

    changes: Annotated[list[ChangeView], Field(description="newest first, with their audit")]
    next_cursor: str | None = Field(description="pass as cursor to get older changes")
    hint: str | None = None
    truncated: bool | None = Field(default=None, description="true when the answer was cut")


class ChangeAnswer(CompactSchema):
    """One change after a resolution or a cancellation."""

    outcome: Literal["resolved", "cancelled", "needs_confirmation", "declined"] = Field(
        description="needs_confirmation / declined: nothing changed (see hint)"
    )
    change: ChangeView
    confirm_token: str | None = Field(
        default=None, description="repeat the same call with confirm set to this (one use)"
    )
    confirm_expires_at: datetime | None = None
    push: PushSummary | None = Field(default=None, description="the push that followed")
    hint: str | None = None
