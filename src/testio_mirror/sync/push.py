"""``Pusher``: the outbox's pending triage changes to TestIO, each applied exactly once.

A push, under the cross-process push lock (``<home>/push.lock``: one sender per mirror):

1. Reconciles every change left ``sending`` (a process died between sending and recording, or
   an answer was lost): the bug is read and ``TriageState.shows`` decides ``applied`` or back to
   ``pending``. Nothing is sent for a change whose fate is unknown; one that cannot be read stays
   ``sending`` and the push stops (TestIO is not answering).
2. For each pending change, oldest first: reads the bug (``GET bugs/{id}``) and writes it through
   the sync's bug path, which records a conflict when TestIO's triage state differs from the
   change's base. The change's strategy settles it: ``manual`` parks it (``conflict``, both sides
   kept), ``server_wins`` drops it, ``local_wins`` sends it anyway, ``latest`` keeps the later
   of the local decision (the change's creation) and the upstream change as the mirror first
   observed it; one first seen now, at send time, counts as later (TestIO gives no change time).
3. Claims it (``sending`` committed first), sends the PUT once (``client.send_triage``) and
   records the outcome: ``applied`` with the bug TestIO answered, in one transaction; a 4xx
   ``failed``; not applied (nothing went out, a 429) back to ``pending``; unknown (a timeout
   after sending, a 5xx) reconciled at once by reading the bug.

A change surely not applied is tried again in the same push, up to ``TESTIO_RETRY_MAX_ATTEMPTS``
attempts with the client's backoff (a 429 pauses every request of the client anyway). When TestIO
cannot be reached, or refuses the token, the push stops: the rest stays ``pending`` and the next
push (a ``sync`` going up or both ways, the refresh loop, ``triage_bugs``) sends it.

Example::

    pusher = Pusher(settings, client, mirror)
    summary = await pusher.push()            # every pending change
    summary = await pusher.push([12, 13])    # only these (triage_bugs)
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from testio_mirror.errors import MirrorError
from testio_mirror.settings import Settings
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.outbox_records import Change, ChangeStateError, RecordedResolution
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.sync.models import PushSummary
from testio_mirror.sync.progress import ProgressTracker
from testio_mirror.triage import ChangeState, TriageState
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import AuthError, BugNotFoundError, UpstreamError
from testio_mirror.upstream.models import Bug
from testio_mirror.upstream.retry import RetryPolicy
from testio_mirror.upstream.triage_writes import (
    TriageApplied,
    TriageNotApplied,
    TriageRefused,
    TriageUnknown,
)

logger = logging.getLogger("testio_mirror.push")

PUSH_LOCK_NAME = "push.lock"
PUSH_LOCK_WAIT_SECONDS = 30.0
# Where a handled change stands after the push, as the summary counts it.
_SUMMARY_FIELD: dict[ChangeState, str] = {
    "applied": "applied",
    "conflict": "conflicts",
    "cancelled": "settled_for_server",
    "failed": "failed",
    "pending": "pending",
    "sending": "unresolved",
}


class PushLockBusyError(MirrorError):
    """Another process has been pushing the outbox for longer than the push waits."""


class _PushStoppedError(Exception):
    """The push cannot go on (TestIO unreachable, the token refused): the reason, our words."""


class Pusher:
    """Sends a mirror's outbox; one push at a time per process and, through the push lock,
    per mirror."""

    def __init__(
        self,
        settings: Settings,
        client: CustomerApiClient,
        mirror: Mirror,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._client = client
        self._mirror = mirror
        self._clock = clock
        self._sleep = sleep
        self._policy = RetryPolicy(
            max_attempts=settings.retry_max_attempts, max_delay=settings.retry_max_delay_seconds
        )
        self._rng = random.Random()
        self._in_process = asyncio.Lock()
        import filelock

        self._file_lock = filelock.FileLock(
            settings.mirror_home / PUSH_LOCK_NAME, mode=0o600, thread_local=False
        )
        self.last_push_at: datetime | None = None

    async def push(
        self, change_ids: Sequence[int] | None = None, tracker: ProgressTracker | None = None
    ) -> PushSummary:
        """Reconcile the changes left ``sending``, then send the pending ones (only
        ``change_ids`` when given), oldest first. ``tracker`` hears a step per change (and one
        when the push stops early); an empty outbox reports nothing.

        Raises:
            PushLockBusyError: another process kept pushing for ``PUSH_LOCK_WAIT_SECONDS``.
            StoreError: the mirror could not be read or written (nothing is sent after that).
        """
        async with self._in_process:
            await self._acquire_file_lock()
            try:
                summary = PushSummary()
                try:
                    await self._reconcile(summary, tracker)
                    await self._send_pending(summary, change_ids, tracker)
                except _PushStoppedError as stop:
                    summary.stopped = str(stop)
                    if tracker is not None:
                        await tracker.step("push: stopped, the rest stays pending")
                await self._count_left(summary)
                self.last_push_at = self._clock()
                if summary.considered:
                    logger.info(_describe(summary))
                return summary
            finally:
                await asyncio.shield(asyncio.to_thread(self._file_lock.release))

    async def _acquire_file_lock(self) -> None:
        import filelock

        try:
            await asyncio.to_thread(self._file_lock.acquire, timeout=PUSH_LOCK_WAIT_SECONDS)
        except filelock.Timeout:
            raise PushLockBusyError(
                f"another process has been sending triage changes for over "
                f"{PUSH_LOCK_WAIT_SECONDS:.0f} s; the changes stay pending: try again shortly"
            ) from None

    async def _reconcile(self, summary: PushSummary, tracker: ProgressTracker | None) -> None:
        sending = await self._mirror.outbox.sending_changes()
        if tracker is not None:
            tracker.expect(len(sending))
        for change in sending:
            _handled(summary, change)
            after = await self._reconcile_one(change)
            await _step(tracker, after)

    async def _reconcile_one(self, change: Change) -> Change:
        """A change whose answer is unknown: applied if the bug shows it, else pending again.

        Raises:
            _PushStoppedError: the bug could not be read (it stays ``sending``).
        """
        outbox = self._mirror.outbox
        try:
            bug = await self._client.bug(change.bug_id)
        except BugNotFoundError:
            return await outbox.record_failed(
                change.id,
                f"bug {change.bug_id} is not in TestIO (HTTP 404) and the answer to this "
                "change was lost: it was deleted, or this token cannot see it",
                http_status=404,
            )
        except UpstreamError as exc:
            raise _PushStoppedError(
                f"could not read bug {change.bug_id} to learn whether change {change.id} was "
                f"applied ({exc}); it is checked again before anything is sent for it"
            ) from None
        if TriageState.of_bug(bug.raw).shows(change.action):
            return await outbox.record_applied(change.id, bug.raw, via="reconciled")
        return await outbox.record_not_applied(
            change.id,
            "TestIO does not show the change after an answer was lost: it was not applied, "
            "and is sent again",
            via="reconciled",
        )

    async def _send_pending(
        self,
        summary: PushSummary,
        change_ids: Sequence[int] | None,
        tracker: ProgressTracker | None,
    ) -> None:
        wanted = set(change_ids) if change_ids is not None else None
        pending = [
            c
            for c in await self._mirror.outbox.pending_changes()
            if wanted is None or c.id in wanted
        ]
        if tracker is not None:
            tracker.expect(len(pending))
        for change in pending:
            _handled(summary, change)
            await self._push_one(change, summary)
            await _step(tracker, await self._mirror.outbox.get(change.id))

    async def _push_one(self, change: Change, summary: PushSummary) -> None:
        for attempt in range(1, self._policy.max_attempts + 1):
            retry_after = await self._attempt(change, summary)
            if retry_after is None or attempt == self._policy.max_attempts:
                return
            await self._sleep(retry_after or self._policy.backoff(attempt, self._rng))

    async def _attempt(self, change: Change, summary: PushSummary) -> float | None:
        """One try of one pending change. Returns None when it is settled, parked or left for
        later; otherwise the wait before trying it again (0: the client's backoff).

        Raises:
            _PushStoppedError: TestIO is unreachable or refuses the token.
        """
        outbox = self._mirror.outbox
        bug = await self._read_bug(change)
        if bug is None:
            return None
        await outbox.record_read(bug.raw)
        current = await outbox.get(change.id)
        if current.state != "pending":
            return None  # parked as a conflict by the read (manual), or settled meanwhile
        server = TriageState.of_bug(bug.raw)
        if server != current.base and not await self._settle(current, server, change):
            return None
        claimed = await outbox.claim(change.id)
        if claimed is None:
            return None
        outcome = await self._client.send_triage(
            change.bug_id, change.action, reason=change.reason, comment=change.comment
        )
        summary.sent += 1
        match outcome:
            case TriageApplied(bug=answered, status=status):
                await outbox.record_applied(change.id, answered.raw, http_status=status)
                return None
            case TriageRefused(cause="token", reason=reason, status=status):
                await outbox.record_not_applied(change.id, reason, http_status=status)
                raise _PushStoppedError(reason)
            case TriageRefused(reason=reason, status=status):
                await outbox.record_failed(change.id, reason, http_status=status)
                return None
            case TriageNotApplied(reason=reason, status=status, retry_after=retry_after):
                await outbox.record_not_applied(change.id, reason, http_status=status)
                return retry_after or 0.0
            case TriageUnknown():
                after = await self._reconcile_one(claimed)
                return 0.0 if after.state == "pending" else None
        return None  # pragma: no cover - the match is exhaustive

    async def _read_bug(self, change: Change) -> Bug | None:
        """The bug as TestIO holds it now; None when it is gone (the change failed).

        Raises:
            _PushStoppedError: TestIO could not be asked.
        """
        try:
            return await self._client.bug(change.bug_id)
        except BugNotFoundError:
            await self._mirror.outbox.record_failed(
                change.id,
                f"bug {change.bug_id} is not in TestIO (HTTP 404): it was deleted, or this token "
                "cannot see it; nothing was sent",
                http_status=404,
            )
            return None
        except AuthError as exc:
            raise _PushStoppedError(
                f"TestIO refused the token ({exc}); the changes stay pending"
            ) from None
        except UpstreamError as exc:
            raise _PushStoppedError(
                f"TestIO could not be reached ({exc}); the changes stay pending and go out "
                "with the next push"
            ) from None

    async def _settle(self, change: Change, server: TriageState, before_read: Change) -> bool:
        """Apply a pending change's strategy to TestIO's differing state; True when the change
        is still to be sent (against the server side as its new base). ``before_read``: the
        change as this push found it, before its read of the bug recorded anything."""
        outbox = self._mirror.outbox
        strategy = change.strategy
        if strategy == "manual":
            await outbox.record_conflict(change.id, server)
            return False
        if strategy == "latest":
            # The upstream change as the mirror first observed it: a conflict a sync noted
            # before this push has its time; one first seen now counts as the later one.
            seen = _first_seen(before_read, server)
            local_later = seen is not None and change.created_at > seen
            resolution: RecordedResolution = "latest_local" if local_later else "latest_server"
        else:
            resolution = "local_wins" if strategy == "local_wins" else "server_wins"
        try:
            settled = await outbox.resolve(
                change.id, resolution, by="push", strategy=strategy, server_side=server
            )
        except ChangeStateError:
            return False  # cancelled or settled meanwhile
        return settled.state == "pending"

    async def _count_left(self, summary: PushSummary) -> None:
        """Tally where the handled changes stand now."""
        for change_id in summary.change_ids:
            state = (await self._mirror.outbox.get(change_id)).state
            counter = _SUMMARY_FIELD[state]
            setattr(summary, counter, getattr(summary, counter) + 1)


async def _step(tracker: ProgressTracker | None, change: Change) -> None:
    if tracker is not None:
        await tracker.step(f"push: change {change.id} (bug {change.bug_id}) {change.state}")


def _first_seen(change: Change, server: TriageState) -> datetime | None:
    """When the mirror first observed TestIO's ``server`` state of the change's bug, before this
    push read it: a conflict a sync noted, or the mirrored bug's own triage time when it already
    showed that state (a caller who saw an older state than the mirror held). None: first seen
    by this push, which counts as later than any local decision."""
    if change.server_side == server and change.conflict_seen_at is not None:
        return change.conflict_seen_at
    if change.bug_now == server:
        return change.bug_triage_seen_at
    return None


def _handled(summary: PushSummary, change: Change) -> None:
    if change.id not in summary.change_ids:
        summary.change_ids.append(change.id)
        summary.considered += 1


def _describe(summary: PushSummary) -> str:
    text = (
        f"push: {summary.considered} changes, {summary.sent} sent, {summary.applied} applied, "
        f"{summary.conflicts} in conflict, {summary.settled_for_server} kept TestIO's decision, "
        f"{summary.failed} failed, {summary.pending} pending, {summary.unresolved} unresolved"
    )
    return text + (f"; stopped: {summary.stopped}" if summary.stopped else "")
