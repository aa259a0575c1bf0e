"""One sync at a time across processes: a claim recorded next to ``<data dir>/sync.lock``.

The claim (``sync.lock.json``: pid, process start time, host, run id, started, heartbeat) is read
and written only while holding the ``filelock`` on ``sync.lock``, which is held for milliseconds
and which the OS frees if its holder dies. A claim is free to take when there is none, or when its
owner is gone:

- its process is dead (same host);
- its pid now belongs to another process (the start time differs);
- its heartbeat stopped (older than ``stale_after`` seconds): the owner is hung or on another host
  that died.

A live owner whose heartbeat is fresh is never evicted, however long it has run. The holder
refreshes the heartbeat every ``heartbeat_every`` seconds and, should it find its claim taken
(it was hung and got reclaimed), calls ``on_lost`` with the new holder so the run stops. A hung
holder that resumes may reach a commit before its heartbeat looks: ``ensure_held``, which the
sync calls before each commit, reads the claim again whenever our last heartbeat is old enough
for another process to have judged it stopped, and raises ``SyncLockLostError``. Waiting for a
busy claim polls with ``asyncio.sleep`` and does the file work in a thread: the event loop never
blocks.

Example::

    lock = SyncLock(settings.mirror_home)
    async with lock.hold(run_id, wait_seconds=30) as claim:
        claim.reclaimed_from        # the dead/hung owner taken over, if any
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from testio_mirror.errors import MirrorError

logger = logging.getLogger("testio_mirror.sync")

HEARTBEAT_EVERY_SECONDS = 5.0
STALE_AFTER_SECONDS = 60.0
POLL_SECONDS = 0.1
_FILE_LOCK_TIMEOUT = 10.0
_START_TIME_TOLERANCE = 1.0


def _process_started(pid: int) -> float:
    # psutil and filelock are imported where they are used: this module's errors are needed
    # by the server before its first answer, the lock machinery only when a sync starts.
    import psutil

    return psutil.Process(pid).create_time()


class SyncLockBusyError(MirrorError):
    """Another live process is syncing; the message names it."""

    exit_code = 4

    def __init__(self, owner: LockOwner) -> None:
        super().__init__(
            f"another sync is running: pid {owner.pid} on {owner.host}, run {owner.run_id}, "
            f"since {owner.started_at} (heartbeat {owner.heartbeat_at}); wait for it or try "
            "again later"
        )
        self.owner: LockOwner | None = owner


class SyncLockFileHeldError(SyncLockBusyError):
    """Another process holds the lock file itself and keeps it: no sync of ours can claim it,
    and no claim record names it (``owner`` is ``None``)."""

    def __init__(self, lock_path: Path) -> None:
        MirrorError.__init__(
            self,
            f"the sync lock {lock_path} is held by another process that is not syncing this "
            "mirror (it does not answer for its claim); stop that process or try again later",
        )
        self.owner = None


class SyncLockLostError(MirrorError):
    """This run's claim was taken over while it hung: it must commit nothing more (the run
    ends ``failed`` with this message; it never reaches a caller)."""

    def __init__(self, holder: LockOwner | None) -> None:
        super().__init__(f"the sync lock was taken over by {describe_holder(holder)}")
        self.holder = holder


def describe_holder(holder: LockOwner | None) -> str:
    """Who took a claim over, in words (``None``: it has been released again since)."""
    if holder is None:
        return "another process, which has released it since"
    return f"pid {holder.pid} on {holder.host}, run {holder.run_id}"


@dataclass(frozen=True)
class LockOwner:
    """Who holds the sync claim."""

    pid: int
    process_started: float  # psutil create_time of the process
    host: str
    run_id: str
    started_at: str  # ISO 8601 UTC
    heartbeat_at: str  # ISO 8601 UTC

    @classmethod
    def me(cls, run_id: str) -> LockOwner:
        now = _now_text()
        return cls(
            pid=os.getpid(),
            process_started=_process_started(os.getpid()),
            host=socket.gethostname(),
            run_id=run_id,
            started_at=now,
            heartbeat_at=now,
        )

    def heartbeat_age(self) -> float:
        beat = datetime.fromisoformat(self.heartbeat_at)
        return (datetime.now(UTC) - beat).total_seconds()

    def gone_because(self, stale_after: float) -> str | None:
        """Why this owner no longer holds the claim, or None when it is alive."""
        if self.host == socket.gethostname():
            import psutil

            try:
                started = _process_started(self.pid)
            except psutil.NoSuchProcess:
                return f"its process {self.pid} is dead"
            except psutil.Error:
                started = self.process_started  # cannot tell: judge by the heartbeat alone
            if abs(started - self.process_started) > _START_TIME_TOLERANCE:
                return f"pid {self.pid} now belongs to another process"
        age = self.heartbeat_age()
        if age > stale_after:
            return f"its heartbeat stopped {age:.0f} s ago"
        return None


@dataclass(frozen=True)
class Claim:
    """A held claim."""

    owner: LockOwner
    reclaimed_from: LockOwner | None
    reclaim_reason: str | None


class SyncLock:
    """The cross-process sync claim in a data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        heartbeat_every: float = HEARTBEAT_EVERY_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self.lock_path = data_dir / "sync.lock"
        self.owner_path = data_dir / "sync.lock.json"
        import filelock

        self._file_lock = filelock.FileLock(self.lock_path, timeout=_FILE_LOCK_TIMEOUT, mode=0o600)
        self._heartbeat_every = heartbeat_every
        self._stale_after = stale_after
        # When each held claim last wrote its heartbeat (monotonic), by run id.
        self._beaten_at: dict[str, float] = {}

    def holder(self) -> LockOwner | None:
        """The live owner of the claim, if any (a dead or hung one counts as none)."""
        with self._file_lock:
            owner = self._read()
        if owner is None or owner.gone_because(self._stale_after) is not None:
            return None
        return owner

    @contextlib.asynccontextmanager
    async def hold(
        self,
        run_id: str,
        *,
        wait_seconds: float,
        on_lost: Callable[[LockOwner | None], None] | None = None,
    ) -> AsyncIterator[Claim]:
        """Hold the claim for a run; ``wait_seconds`` 0 fails at once when it is busy.
        ``on_lost`` hears the new holder (``None``: released again since) if it is taken over.

        Raises:
            SyncLockBusyError: a live owner still holds it after ``wait_seconds``.
            SyncLockFileHeldError: another process keeps the lock file itself.
        """
        claim = await self._acquire(run_id, wait_seconds)
        self._beaten_at[run_id] = time.monotonic()
        beating = asyncio.create_task(self._heartbeat(claim.owner, on_lost))
        try:
            yield claim
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            self._beaten_at.pop(run_id, None)
            await asyncio.shield(asyncio.to_thread(self._release, claim.owner))

    def ensure_held(self, owner: LockOwner) -> None:
        """Before a commit: is the claim still ``owner``'s? Reads the claim (a small file,
        written by rename, so no file lock is needed) only when the last heartbeat is old enough
        that another process may have found it stopped; the margin of half the stale age covers
        clocks that disagree a little between hosts.

        Raises:
            SyncLockLostError: the claim is someone else's now.
        """
        beaten_at = self._beaten_at.get(owner.run_id)
        if beaten_at is not None and time.monotonic() - beaten_at < self._stale_after / 2:
            return
        current = self._read()
        if current is None or current.run_id != owner.run_id or current.pid != owner.pid:
            raise SyncLockLostError(current)

    async def _acquire(self, run_id: str, wait_seconds: float) -> Claim:
        import filelock

        me = LockOwner.me(run_id)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                claim, busy = await asyncio.to_thread(self._try_claim, me)
            except filelock.Timeout:
                # Our own holders keep the file lock for a moment only: one that keeps it
                # past the timeout is not a sync of this mirror, and waiting longer is no use.
                raise SyncLockFileHeldError(self.lock_path) from None
            if claim is not None:
                if claim.reclaimed_from is not None:
                    logger.warning(
                        "reclaimed the sync lock from run %s (pid %d on %s): %s",
                        claim.reclaimed_from.run_id,
                        claim.reclaimed_from.pid,
                        claim.reclaimed_from.host,
                        claim.reclaim_reason,
                    )
                return claim
            assert busy is not None
            if time.monotonic() >= deadline:
                raise SyncLockBusyError(busy)
            await asyncio.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def _try_claim(self, me: LockOwner) -> tuple[Claim | None, LockOwner | None]:
        with self._file_lock:
            current = self._read()
            reason = None
            if current is not None:
                reason = current.gone_because(self._stale_after)
                if reason is None:
                    return None, current
            self._write(me)
        return Claim(me, current, reason), None

    async def _heartbeat(
        self, me: LockOwner, on_lost: Callable[[LockOwner | None], None] | None
    ) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_every)
            beat_at = time.monotonic()
            still_mine, holder = await asyncio.to_thread(self._beat, me)
            if not still_mine:
                logger.error(
                    "sync run %s: the sync lock was taken over by %s; stopping",
                    me.run_id,
                    describe_holder(holder),
                )
                if on_lost is not None:
                    on_lost(holder)
                return
            self._beaten_at[me.run_id] = beat_at

    def _beat(self, me: LockOwner) -> tuple[bool, LockOwner | None]:
        """Refresh ``me``'s heartbeat; returns whether the claim is still ``me``'s, and the
        claim's holder when it is not."""
        with self._file_lock:
            current = self._read()
            if current is None or current.run_id != me.run_id or current.pid != me.pid:
                return False, current
            self._write(LockOwner(**{**asdict(current), "heartbeat_at": _now_text()}))
            return True, None

    def _release(self, me: LockOwner) -> None:
        with self._file_lock:
            current = self._read()
            if current is not None and current.run_id == me.run_id and current.pid == me.pid:
                self._write(None)

    def _read(self) -> LockOwner | None:
        try:
            text = self.owner_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            owner = LockOwner(**json.loads(text))
            _check_fields(owner)
        except (ValueError, TypeError):
            logger.warning("ignoring an unreadable sync lock record at %s", self.owner_path)
            return None
        return owner

    def _write(self, owner: LockOwner | None) -> None:
        # Write aside and rename, so a reader never sees half a record.
        temporary = self.owner_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(owner)) if owner else "", encoding="utf-8")
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.owner_path)


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


def _check_fields(owner: LockOwner) -> None:
    """Raises ValueError or TypeError when a field of a record cannot be used."""
    if isinstance(owner.pid, bool) or not isinstance(owner.pid, int):
        raise TypeError("pid is not a whole number")
    if isinstance(owner.process_started, bool) or not isinstance(
        owner.process_started, int | float
    ):
        raise TypeError("process_started is not a number")
    if not isinstance(owner.host, str) or not isinstance(owner.run_id, str):
        raise TypeError("host and run_id must be text")
    for moment in (owner.started_at, owner.heartbeat_at):
        if datetime.fromisoformat(moment).tzinfo is None:
            raise ValueError("a time without a UTC offset")
