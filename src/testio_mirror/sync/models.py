"""What a sync is asked to do and what it did."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field

from testio_mirror.errors import MirrorError
from testio_mirror.schema import CompactSchema

SHOWN_PRODUCT_IDS = 20  # the account's product ids an UnknownProductsError lists at most


class UnknownProductsError(MirrorError, ValueError):
    """A sync asked for products the account does not have: nothing is synced (a typo must
    not pass for an up-to-date product). ``unknown`` are the ids asked for that it lacks,
    ``known`` the ids it has."""

    def __init__(self, unknown: list[int], known: list[int], *, next_step: str = "") -> None:
        self.unknown = sorted(unknown)
        self.known = sorted(known)
        listed = ", ".join(str(p) for p in self.known[:SHOWN_PRODUCT_IDS])
        if len(self.known) > SHOWN_PRODUCT_IDS:
            listed += f" and {len(self.known) - SHOWN_PRODUCT_IDS} more"
        noun = "product" if len(self.unknown) == 1 else "products"
        message = (
            f"unknown {noun} {', '.join(str(p) for p in self.unknown)}: not in the account's "
            f"product list ({listed or 'none'}); nothing was synced"
        )
        super().__init__(message + (f"; {next_step}" if next_step else ""))


class SyncPhase(StrEnum):
    """The phases of a sync, in the only order they ever run."""

    PRODUCTS = "products"
    FEATURES = "features"
    NEW_TESTS = "new_tests"
    BUGS = "bugs"


PHASE_ORDER: tuple[SyncPhase, ...] = tuple(SyncPhase)
DEFAULT_PHASES: tuple[SyncPhase, ...] = (
    SyncPhase.PRODUCTS,
    SyncPhase.FEATURES,
    SyncPhase.NEW_TESTS,
)


class SyncDirection(StrEnum):
    """Which way a run moves data: ``down`` pulls TestIO into the mirror, ``up`` pushes the
    outbox's pending triage changes to TestIO, ``both`` pushes first, then pulls (so the pull
    already sees what the push changed)."""

    DOWN = "down"
    UP = "up"
    BOTH = "both"

    @property
    def pushes(self) -> bool:
        return self is not SyncDirection.DOWN

    @property
    def pulls(self) -> bool:
        return self is not SyncDirection.UP

    def covers(self, asked: SyncDirection) -> bool:
        """Does a run going this way do what a run going ``asked`` would?"""
        return self is SyncDirection.BOTH or self is asked


class SyncTrigger(StrEnum):
    """Who started a run."""

    STARTUP = "startup"
    SCHEDULE = "schedule"
    TOOL = "tool"
    CLI = "cli"


class SyncStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"  # everything in scope was synced
    PARTIAL = "partial"  # something in scope failed; the rest was kept
    FAILED = "failed"  # nothing useful could be done (bad token, TestIO down ...)
    CANCELLED = "cancelled"  # stopped on request; committed pages are kept
    INTERRUPTED = "interrupted"  # the process died mid-run; found at the next start


class SyncScope(CompactSchema):
    """Which part of the account a run covers."""

    model_config = ConfigDict(frozen=True)

    product_ids: tuple[int, ...] | None = Field(
        default=None, description="only these products (default: all)"
    )
    since: datetime | None = Field(
        default=None, description="only tests ending at or after this time (UTC)"
    )
    bugs_since: datetime | None = Field(
        default=None,
        description="bugs only of tests ending at or after this time (UTC); listings unaffected",
    )

    @property
    def bug_horizon(self) -> datetime | None:
        """The tests whose bugs the run covers end at or after this (None: all)."""
        bounds = [b for b in (self.since, self.bugs_since) if b is not None]
        return max(bounds) if bounds else None


class SyncOptions(CompactSchema):
    """How a run goes about it."""

    model_config = ConfigDict(frozen=True)

    force_refresh: bool = Field(
        default=False, description="list every test and re-fetch every bug list in scope"
    )
    incremental_only: bool = Field(
        default=False, description="never turn a listing into a full one (no reconciliation)"
    )
    nuke: bool = Field(
        default=False, description="empty the mirror first, then sync everything in scope"
    )
    direction: SyncDirection = Field(
        default=SyncDirection.BOTH,
        description="down: pull only; up: push pending triage changes only; both: push, then pull",
    )


class PhaseStats(CompactSchema):
    """What one phase did."""

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    api_requests: int = 0
    retries: int = 0


class PushSummary(CompactSchema):
    """What one push of the outbox did (``sync/push.py``)."""

    considered: int = Field(default=0, description="changes it looked at (pending or sending)")
    sent: int = Field(default=0, description="triage writes sent to TestIO")
    applied: int = Field(default=0, description="changes now applied (answered or reconciled)")
    conflicts: int = Field(default=0, description="changes parked for a person (manual)")
    settled_for_server: int = Field(
        default=0, description="changes dropped by their strategy: TestIO's decision kept"
    )
    failed: int = Field(default=0, description="changes TestIO refused: they will not succeed")
    pending: int = Field(default=0, description="changes left pending: sent by the next push")
    unresolved: int = Field(
        default=0, description="changes whose answer was lost and the bug could not be read yet"
    )
    stopped: str | None = Field(
        default=None, description="why the push stopped before the end (TestIO unreachable ...)"
    )
    change_ids: list[int] = Field(default_factory=list, description="the changes it handled")


class SyncResult(CompactSchema):
    """The outcome of one run."""

    run_id: str
    trigger: SyncTrigger
    status: SyncStatus
    phases: list[SyncPhase] = Field(description="phases asked for, in the order they ran")
    phases_completed: list[SyncPhase]
    stats: dict[str, PhaseStats] = Field(description="per phase")
    api_requests: int
    retries: int
    warnings: list[str]
    errors: list[str]
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    push: PushSummary | None = Field(
        default=None,
        description="what the push of pending triage changes did (absent: nothing to push)",
        # Absent rather than null: a pull's result reads the same wherever it is shown.
        exclude_if=lambda value: value is None,
    )

    @property
    def items_synced(self) -> int:
        return sum(s.inserted + s.updated + s.deleted for s in self.stats.values())

    def summary(self) -> str:
        """The final log line: status, duration and counts."""
        totals = PhaseStats()
        for stats in self.stats.values():
            for field in ("fetched", "inserted", "updated", "unchanged", "deleted"):
                setattr(totals, field, getattr(totals, field) + getattr(stats, field))
        word = {
            SyncStatus.SUCCESS: "completed",
            SyncStatus.PARTIAL: "completed partially",
            SyncStatus.FAILED: "failed",
            SyncStatus.CANCELLED: "was cancelled",
            SyncStatus.INTERRUPTED: "was interrupted",
            SyncStatus.RUNNING: "is running",
        }[self.status]
        return (
            f"Sync {word} in {self.duration_seconds:.1f}s: {totals.fetched} fetched, "
            f"{totals.inserted} new, {totals.updated} updated, {totals.deleted} deleted, "
            f"{self.api_requests} API requests ({self.retries} retries)"
            + (f", {len(self.errors)} errors" if self.errors else "")
        )
