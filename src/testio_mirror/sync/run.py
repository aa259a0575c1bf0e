"""One run while it executes: what the phases share (``RunContext``), what ``sync_status`` shows
(``RunView``), the run in flight (``ActiveRun``), and its rows in ``sync_events`` (``RunRecorder``).

Example::

    recorder = RunRecorder(mirror.db)
    await recorder.begin(run, started_at, claim)
    ...
    await recorder.finish(run, run_result(run, SyncStatus.SUCCESS, started_at, duration))
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from testio_mirror.errors import StoreError
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sync_state import (
    SyncEvent,
    add_event,
    mark_interrupted,
    running_run_ids,
    update_run,
)
from testio_mirror.sync.lock import Claim, SyncLockLostError
from testio_mirror.sync.models import (
    PhaseStats,
    PushSummary,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)
from testio_mirror.sync.progress import OnProgress, ProgressTracker

logger = logging.getLogger("testio_mirror.sync")

DIED = "the process running this sync died before it finished"
SHUT_DOWN = (
    "the server stopped before this sync finished (its client went away); committed pages "
    "are kept and the next sync resumes"
)


@dataclass
class RunView:
    """What a run in flight is doing, for ``sync_status``."""

    run_id: str
    trigger: SyncTrigger
    phases: list[SyncPhase]
    started_at: datetime
    phase: SyncPhase | None = None
    done: int = 0
    total: int = 0
    message: str = "waiting for the sync lock"
    # The stats of the phases that ended, the run context's own dict (the CLI prints each
    # phase's counts as it ends).
    stats: dict[str, PhaseStats] = field(default_factory=dict)


@dataclass
class RunContext:
    """What the phases need of the run they work for, and what they report back to it."""

    run_id: str
    scope: SyncScope
    options: SyncOptions
    tracker: ProgressTracker
    stats: dict[str, PhaseStats] = field(default_factory=dict)
    completed: list[SyncPhase] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Units of work that succeeded (a product list, a product's features or tests, a bug
    # batch): a run with errors and none of these is failed, not partial.
    succeeded_units: int = 0
    push: PushSummary | None = None  # what the push before the pull did (directions up, both)

    def outcome(self) -> SyncStatus:
        """How a run that went through its phases ended."""
        if not self.errors:
            return SyncStatus.SUCCESS
        return SyncStatus.PARTIAL if self.succeeded_units else SyncStatus.FAILED


@dataclass
class ActiveRun:
    """The run in flight in this process: what it was asked, who listens, where it stands."""

    context: RunContext
    trigger: SyncTrigger
    phases: list[SyncPhase]
    view: RunView
    listeners: list[OnProgress] = field(default_factory=list)
    lost_lock: SyncLockLostError | None = None  # set when another process took the lock over
    shutting_down: bool = False  # cancelled because the process ends: recorded interrupted
    ended: bool = False  # recorded and its lock released; only its listeners are still told

    @classmethod
    def create(
        cls,
        run_id: str,
        trigger: SyncTrigger,
        phases: list[SyncPhase],
        scope: SyncScope,
        options: SyncOptions,
        started_at: datetime,
        listener: OnProgress | None,
    ) -> ActiveRun:
        """A run about to start, whose progress reaches its view and ``listener``."""
        run = cls(
            context=RunContext(run_id, scope, options, ProgressTracker(None)),
            trigger=trigger,
            phases=phases,
            view=RunView(run_id, trigger, phases, started_at),
            listeners=[listener] if listener else [],
        )
        run.context.tracker = ProgressTracker(run.report)
        run.view.stats = run.context.stats
        return run

    @property
    def run_id(self) -> str:
        return self.context.run_id

    async def report(self, done: int, total: int, message: str) -> None:
        """A step finished: update the view and tell every listener."""
        self.view.done, self.view.total, self.view.message = done, total, message
        for listener in list(self.listeners):
            try:
                outcome = listener(done, total, message)
                if outcome is not None:
                    await outcome
            except Exception:
                # A listener that fails (a client gone away mid-progress) loses its place; the
                # run, which others may be waiting for, goes on.
                logger.warning("a progress listener of sync %s failed; dropped", self.run_id)
                if listener in self.listeners:
                    self.listeners.remove(listener)


def run_result(
    run: ActiveRun, status: SyncStatus, started_at: datetime, duration: float
) -> SyncResult:
    """The result of ``run``, ended with ``status`` after ``duration`` seconds."""
    context = run.context
    return SyncResult(
        run_id=run.run_id,
        trigger=run.trigger,
        status=status,
        phases=run.phases,
        phases_completed=context.completed,
        stats=context.stats,
        api_requests=sum(s.api_requests for s in context.stats.values()),
        retries=sum(s.retries for s in context.stats.values()),
        warnings=context.warnings,
        errors=context.errors,
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=duration),
        duration_seconds=round(duration, 3),
        push=context.push,
    )


class RunRecorder:
    """A run's rows in ``sync_events``: its ``run`` row from start to end, and its events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin(self, run: ActiveRun, started_at: datetime, claim: Claim) -> None:
        """Record the start of ``run``, which holds ``claim``: other runs still marked running
        become interrupted, and a reclaimed lock is recorded (and warned about)."""
        context = run.context
        run.view.message = "starting"
        async with self._db.transaction() as conn:
            # We hold the lock, so any other run still marked running is dead.
            others = [r for r in await running_run_ids(conn) if r != run.run_id]
            if others:
                await mark_interrupted(conn, others, started_at, DIED)
            if claim.reclaimed_from is not None:
                old = claim.reclaimed_from
                message = (
                    f"reclaimed the sync lock from run {old.run_id} (pid {old.pid} on "
                    f"{old.host}): {claim.reclaim_reason}"
                )
                context.warnings.append(message)
                await add_event(
                    conn, SyncEvent(run.run_id, started_at, "lock_reclaimed", message=message)
                )
            await add_event(
                conn,
                SyncEvent(
                    run.run_id,
                    started_at,
                    "run",
                    trigger=run.trigger.value,
                    status=SyncStatus.RUNNING.value,
                    message="started",
                    data={
                        "phases": [p.value for p in run.phases],
                        "scope": context.scope.model_dump(mode="json"),
                        "options": context.options.model_dump(mode="json"),
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                    },
                ),
            )
        logger.info(
            "sync %s started (%s): %s",
            run.run_id,
            run.trigger.value,
            ", ".join(p.value for p in run.phases),
        )

    async def phase(self, run_id: str, phase: SyncPhase) -> None:
        """The run entered ``phase``."""
        async with self._db.transaction() as conn:
            await update_run(
                conn, run_id, status="running", phase=phase.value, message=f"{phase} phase"
            )

    async def finish(self, run: ActiveRun, result: SyncResult) -> None:
        """Record how the run ended and each of its errors; a failure to record is logged,
        never raised (the run's result stands)."""
        try:
            async with self._db.transaction() as conn:
                await update_run(
                    conn,
                    run.run_id,
                    status=result.status.value,
                    phase=None,
                    message=result.summary(),
                    finished_at=result.finished_at,
                    duration_seconds=result.duration_seconds,
                    items_synced=result.items_synced,
                    data={
                        "phases": [p.value for p in run.phases],
                        "result": result.model_dump(mode="json"),
                    },
                )
                for problem in result.errors:
                    await add_event(
                        conn, SyncEvent(run.run_id, result.finished_at, "error", message=problem)
                    )
        except StoreError as exc:
            # The mirror is busy, damaged or full: the run's own error says so already.
            logger.warning("could not record the end of sync %s: %s", run.run_id, exc)
        except Exception:
            logger.exception("could not record the end of sync %s", run.run_id)
