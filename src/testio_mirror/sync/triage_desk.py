"""``TriageDesk``: the one way triage changes come in, for the MCP tools and the CLI alike.

A change set is checked before anything is stored (``plan``): each action is a triage action,
each reject reason is one of the account's (``GET bugs/reject_reasons``, mirrored; fetched once
when the mirror has none yet), each bug is one the mirror holds or can read through. Then it is
stored in the outbox, all or nothing, and pushed at once when TestIO can be reached (``submit``);
a change that cannot go out now stays ``pending`` for the next push (a sync, the refresh loop).

Example::

    desk = TriageDesk(app.mirror, app.client, app.sync.pusher, online=True)
    plan = await desk.plan([ChangeRequest(12, "reject", reason="invalid")])
    outcome = await desk.submit(plan, strategy="manual", requested_by="ana", client="cli")
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from testio_mirror.store.mirror import Mirror
from testio_mirror.store.outbox_enqueue import check_request
from testio_mirror.store.outbox_records import Change, ChangeRequest, OutboxError
from testio_mirror.store.records import BugRecord
from testio_mirror.sync.models import PushSummary
from testio_mirror.sync.push import Pusher, PushLockBusyError
from testio_mirror.triage import MAX_CHANGES_PER_CALL, ConflictStrategy
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import UpstreamError
from testio_mirror.upstream.models import RejectReason

_PAST = {
    "accept": "accepted",
    "reject": "rejected",
    "mark_known": "marked known",
    "mark_fixed": "marked fixed",
    "mark_exported": "marked exported",
}


class RejectReasonError(OutboxError):
    """A rejection without a reason, or with one the account does not have; nothing stored."""

    def __init__(self, bug_id: int, asked: str | None, reasons: Sequence[RejectReason]) -> None:
        valid = ", ".join(
            f"{r.key} ({r.name})" if r.name and r.name != r.key else r.key for r in reasons
        )
        what = (
            "a rejection needs a reason"
            if asked is None
            else f"{asked!r} is not a reject reason of this account"
        )
        super().__init__(f"bug {bug_id}: {what}; nothing was stored. Use one of: {valid}")
        self.valid = [r.key for r in reasons]


class RejectReasonsUnknownError(OutboxError):
    """The mirror holds no reject reasons and TestIO cannot be asked for them."""


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One checked change and its bug as the mirror holds it now."""

    request: ChangeRequest
    bug: BugRecord

    def describe(self) -> str:
        """One line a person reads before confirming: the action, the bug, where it stands."""
        title = self.bug.title or "(no title)"
        now = self.bug.status or "no status"
        flags = [
            name
            for name, on in (
                ("known", self.bug.known),
                ("exported", self.bug.exported_at is not None),
            )
            if on
        ]
        state = ", ".join([now, *flags])
        line = f"{self.request.action} bug {self.bug.id} “{title}” (now {state})"
        if self.request.reason:
            line += f", reason {self.request.reason}"
        if self.request.comment:
            line += f": {self.request.comment}"
        return line

    @property
    def effect(self) -> str:
        return f"bug {self.bug.id} will be {_PAST[self.request.action]}"


@dataclass(frozen=True, slots=True)
class TriageOutcome:
    """What ``submit`` did: the stored changes as they stand now, and the push (None: not
    pushed, ``note`` says why)."""

    changes: list[Change]
    push: PushSummary | None
    note: str | None = None


def change_set_digest(requests: Sequence[ChangeRequest], strategy: ConflictStrategy) -> str:
    """A digest of exactly this change set: what a confirmation token is bound to."""
    items = [[r.bug_id, r.action, r.reason, r.comment] for r in requests]
    text = json.dumps({"changes": items, "strategy": strategy}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class TriageDesk:
    """Checks, stores and pushes triage change sets for one mirror."""

    def __init__(
        self, mirror: Mirror, client: CustomerApiClient, pusher: Pusher, *, online: bool
    ) -> None:
        self._mirror = mirror
        self._client = client
        self._pusher = pusher
        self._online = online  # a TestIO token is configured: changes can be sent now

    async def plan(self, requests: Sequence[ChangeRequest]) -> list[PlannedChange]:
        """The change set checked, each change with its bug; nothing is stored.

        Raises:
            ValueError: no changes, too many, an unknown action, a reason on a non-reject.
            RejectReasonError, RejectReasonsUnknownError: a reject reason cannot be used.
            NotFoundError, RemovedError, OfflineError: a bug the mirror cannot give.
        """
        if not requests:
            raise ValueError("no changes given: pass at least one {bug_id, action}")
        if len(requests) > MAX_CHANGES_PER_CALL:
            raise ValueError(
                f"{len(requests)} changes given: at most {MAX_CHANGES_PER_CALL} per call"
            )
        for request in requests:
            check_request(request)
        rejects = [r for r in requests if r.action == "reject"]
        if rejects:
            reasons = await self.reject_reasons()
            keys = {reason.key for reason in reasons}
            for request in rejects:
                if request.reason not in keys:
                    raise RejectReasonError(request.bug_id, request.reason, reasons)
        bugs: dict[int, BugRecord] = {}
        for bug_id in dict.fromkeys(r.bug_id for r in requests):
            bugs[bug_id] = (await self._mirror.bugs.get_bug(bug_id)).value
        return [PlannedChange(request, bugs[request.bug_id]) for request in requests]

    async def reject_reasons(self) -> list[RejectReason]:
        """The account's reject reasons: the mirrored ones, fetched once when there are none.

        Raises:
            RejectReasonsUnknownError: none mirrored and TestIO cannot be asked.
        """
        reasons = await self._mirror.outbox.reject_reasons()
        if reasons:
            return reasons
        if not self._online:
            raise RejectReasonsUnknownError(
                "the mirror holds no reject reasons yet and no TestIO token is configured: set "
                "TESTIO_CUSTOMER_API_TOKEN and sync once (with bugs), then reject again"
            )
        try:
            fetched = await self._client.reject_reasons()
        except UpstreamError as exc:
            raise RejectReasonsUnknownError(
                f"the mirror holds no reject reasons yet and TestIO could not give them ({exc}); "
                "nothing was stored: try again when TestIO answers"
            ) from None
        await self._mirror.outbox.replace_reject_reasons(fetched)
        return fetched

    async def submit(
        self,
        plan: Sequence[PlannedChange],
        *,
        strategy: ConflictStrategy,
        requested_by: str,
        client: str,
    ) -> TriageOutcome:
        """Store the planned changes (all or none), then push them when TestIO can be reached.

        Raises:
            UnknownBugsError, ChangeStateError: nothing was stored (another live change of a
                bug decides the same thing differently, or a bug left the mirror meanwhile).
            StoreError: the mirror could not be written.
        """
        stored = await self._mirror.outbox.enqueue(
            [planned.request for planned in plan],
            requested_by=requested_by,
            client=client,
            strategy=strategy,
        )
        ids = list(dict.fromkeys(change.id for change in stored))
        push, note = await self.push(ids)
        return TriageOutcome(await self.current(ids), push, note)

    async def push(self, change_ids: Sequence[int]) -> tuple[PushSummary | None, str | None]:
        """Push ``change_ids`` now if TestIO can be reached; else why not (they stay pending)."""
        if not self._online:
            return None, (
                "no TestIO token is configured: the changes stay pending until one is set "
                "and a sync runs"
            )
        try:
            return await self._pusher.push(change_ids), None
        except PushLockBusyError as exc:
            return None, str(exc)

    async def current(self, change_ids: Sequence[int]) -> list[Change]:
        """The changes as they stand now, in the order given (no events)."""
        return [await self._mirror.outbox.get(change_id) for change_id in change_ids]
