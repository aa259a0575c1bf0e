"""What ``testio-mirror sync`` shows while it runs without a terminal (a CI job, a log file):
a line when each phase starts and when it ends, with its counts, and a summary every few
seconds, instead of a line per request (``--steps``: those, and only those). Also the filter
that keeps the run's final summary to the one line the command prints on stdout, and its
errors each once; and the "Triage outbox" lines of ``testio-mirror status`` (``outbox_lines``).

Example::

    lines = PhaseLines(write, lambda: app.sync.current, counts=app.mirror.sync_state.counts,
                       requests=lambda: client.metrics.requests)
    async with lines.running():
        result = await app.sync.execute_sync(..., on_progress=lines.step)
    lines.finish(result)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from testio_mirror.sync.models import PhaseStats, SyncResult

if TYPE_CHECKING:
    from testio_mirror.sync.run import RunView
    from testio_mirror.sync.status import ConflictCounts, OutboxStatus

SUMMARY_INTERVAL_SECONDS: Final = 5.0
POLL_SECONDS: Final = 0.25  # how soon a phase's start shows when it has no step yet

logger = logging.getLogger("testio_mirror.cli")

# The words of SyncResult.summary(), the line the sync service logs when a run ends.
_RUN_SUMMARY = re.compile(
    r"^Sync (completed|completed partially|failed|was cancelled|was interrupted) in \d"
)


class RunSummaryFilter(logging.Filter):
    """Drops the sync service's log of a run's summary: the command prints that line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "testio_mirror.sync" and _RUN_SUMMARY.match(record.getMessage()))


def phase_counts(stats: PhaseStats) -> str:
    """A phase's counts as one line shows them."""
    requests = "request" if stats.api_requests == 1 else "requests"
    return (
        f"{stats.fetched} fetched, {stats.inserted} new, {stats.updated} updated, "
        f"{stats.unchanged} unchanged, {stats.deleted} deleted, {stats.api_requests} {requests}"
        + (f" ({stats.retries} retried)" if stats.retries else "")
    )


def distinct_errors(errors: list[str]) -> list[str]:
    """``errors`` without those another one already says (a phase records ``products: X``, and
    the run ``X`` again when nothing could replace what failed)."""
    return [
        error
        for i, error in enumerate(errors)
        if error not in errors[:i] and not any(error in other for other in errors if other != error)
    ]


class PhaseLines:
    """Phase lines and periodic summaries of the run in flight, written through ``write``."""

    def __init__(
        self,
        write: Callable[[str], None],
        current: Callable[[], RunView | None],
        *,
        counts: Callable[[], Awaitable[dict[str, int]]],
        requests: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        interval: float = SUMMARY_INTERVAL_SECONDS,
    ) -> None:
        self._write = write
        self._current = current
        self._counts = counts
        self._requests = requests
        self._clock = clock
        self._interval = interval
        self._began = self._last_summary = clock()
        self._started: list[str] = []
        self._ended: set[str] = set()
        self._done = 0
        self._total = 0

    def step(self, done: int, total: int, message: str) -> None:
        """The sync's progress callback: counts the step, shows a phase change at once."""
        self._done, self._total = done, total
        self._follow(self._current())

    async def poll(self) -> None:
        """Show a phase that started, and the summary when one is due."""
        view = self._current()
        self._follow(view)
        now = self._clock()
        if view is None or now - self._last_summary < self._interval:
            return
        self._last_summary = now
        held = await self._counts()
        phase = view.phase.value if view.phase is not None else "waiting"
        self._write(
            f"... {now - self._began:.0f} s: {phase}, {self._done} of ~{self._total} steps, "
            f"{self._requests()} requests; the mirror holds "
            + ", ".join(f"{n} {kind}" for kind, n in held.items())
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Poll in the background while the body runs."""
        task = asyncio.create_task(self._poll_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def finish(self, result: SyncResult) -> None:
        """Show the end of every phase not shown yet, from the run's result."""
        for name in (phase.value for phase in result.phases):
            if name in result.stats:
                self._start(name)
                self._end(name, result.stats[name])
            elif name in self._started and name not in self._ended:
                self._ended.add(name)
                self._write(f"{name}: not finished")

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.poll()
            except Exception:
                # Counting what the mirror holds must never stop the sync it reports on.
                logger.debug("a progress summary failed", exc_info=True)

    def _follow(self, view: RunView | None) -> None:
        if view is None or view.phase is None:
            return
        order = [phase.value for phase in view.phases]
        current = view.phase.value
        # Phases run in order: those before the current one have ended (a short one may have
        # run entirely between two looks).
        for name in order[: order.index(current)] if current in order else ():
            self._start(name)
            stats = view.stats.get(name)
            if stats is not None:
                self._end(name, stats)
        self._start(current)

    def _start(self, name: str) -> None:
        if name not in self._started:
            self._started.append(name)
            self._write(f"{name}: started")

    def _end(self, name: str, stats: PhaseStats) -> None:
        if name not in self._ended:
            self._ended.add(name)
            self._write(f"{name}: done, {phase_counts(stats)}")


# How the outbox's states read in a sentence, in the order a user cares about.
_STATE_WORDS: Final = {
    "pending": "pending",
    "sending": "sent with no answer yet (checked before anything is sent again)",
    "conflict": "in conflict (waiting for a person)",
    "failed": "failed",
    "applied": "applied",
    "cancelled": "cancelled",
}


def outbox_lines(outbox: OutboxStatus) -> list[str]:
    """The "Triage outbox" section of ``testio-mirror status``: a line of changes by state,
    then only the lines that have something to say (the oldest pending change, conflicts in
    total and in the latest run, the last push); "no changes yet" for an empty outbox."""
    held = {state: n for state, n in outbox.changes.items() if n}
    if not held:
        return ["Triage outbox: no changes yet"]
    order = [s for s in _STATE_WORDS if s in held] + [s for s in held if s not in _STATE_WORDS]
    lines = ["Triage outbox: " + ", ".join(f"{held[s]} {_STATE_WORDS.get(s, s)}" for s in order)]
    oldest = outbox.oldest_pending
    if oldest is not None:
        lines.append(
            f"  oldest pending: change {oldest.change_id}, waiting {_age(oldest.age_seconds)} "
            f"(since {_utc(oldest.created_at)})"
        )
    conflicts = outbox.conflicts
    if conflicts.detected or conflicts.resolved:
        lines.append(f"  conflicts: {_conflict_counts(conflicts)}")
    run = conflicts.last_run
    if run is not None and (run.detected or run.resolved):
        since = _utc(run.since)
        lines.append(f"  conflicts in the latest run (from {since}): {_conflict_counts(run)}")
    if outbox.last_push_at is not None:
        lines.append(f"  last push: {_utc(outbox.last_push_at)}")
    return lines


def _conflict_counts(counts: ConflictCounts) -> str:
    text = f"{sum(counts.detected.values())} detected{_by(counts.detected)}, "
    text += f"{sum(counts.resolved.values())} resolved{_by(counts.resolved)}"
    return text + (f"; {_by(counts.resolutions).strip(' ()')}" if counts.resolutions else "")


def _by(counts: Mapping[str, int]) -> str:
    return f" ({', '.join(f'{key} {n}' for key, n in sorted(counts.items()))})" if counts else ""


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _utc(moment: datetime) -> str:
    """As ``testio-mirror status`` writes times: UTC with ``Z``, to the second."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
