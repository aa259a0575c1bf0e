"""Sync orchestration: ``SyncService``, its models, the cross-process lock, progress."""

from testio_mirror.sync.lock import Claim, LockOwner, SyncLock, SyncLockBusyError
from testio_mirror.sync.models import (
    DEFAULT_PHASES,
    PHASE_ORDER,
    PhaseStats,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)
from testio_mirror.sync.progress import OnProgress, ProgressTracker
from testio_mirror.sync.service import RunView, SyncService, normalize_phases

__all__ = [
    "DEFAULT_PHASES",
    "PHASE_ORDER",
    "Claim",
    "LockOwner",
    "OnProgress",
    "PhaseStats",
    "ProgressTracker",
    "RunView",
    "SyncLock",
    "SyncLockBusyError",
    "SyncOptions",
    "SyncPhase",
    "SyncResult",
    "SyncScope",
    "SyncService",
    "SyncStatus",
    "SyncTrigger",
    "normalize_phases",
]
