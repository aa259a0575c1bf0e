"""The cross-process sync claim: owner metadata, busy errors, waiting, reclaiming, heartbeats."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import psutil
import pytest

from testio_mirror.sync.lock import Claim, LockOwner, SyncLock, SyncLockBusyError


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _write_record(data_dir: Path, owner: LockOwner) -> None:
    (data_dir / "sync.lock.json").write_text(json.dumps(asdict(owner)), encoding="utf-8")


def _read_record(data_dir: Path) -> dict[str, object] | None:
    text = (data_dir / "sync.lock.json").read_text(encoding="utf-8")
    if not text.strip():
        return None
    record: dict[str, object] = json.loads(text)
    return record


def _owner_of(pid: int, created: float, *, run_id: str = "other-run") -> LockOwner:
    """A record for process ``pid`` with a fresh heartbeat and a start years ago."""
    return LockOwner(
        pid=pid,
        process_started=created,
        host=socket.gethostname(),
        run_id=run_id,
        started_at=_iso(datetime(2019, 1, 1, tzinfo=UTC)),
        heartbeat_at=_iso(datetime.now(UTC)),
    )


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live child process that does nothing; stopped through its handle."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _dead_pid() -> tuple[int, float]:
    """The pid and start time of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Not yet waited for, so the pid is still ours (at worst a zombie) and readable.
        created = psutil.Process(process.pid).create_time()
    finally:
        process.wait(timeout=30)
    return process.pid, created


async def test_hold_records_its_owner_and_clears_it_on_exit(tmp_path: Path) -> None:
    lock = SyncLock(tmp_path)
    assert lock.holder() is None
    before = datetime.now(UTC)
    async with lock.hold("run-a", wait_seconds=0) as claim:
        record = _read_record(tmp_path)
        assert record is not None
        assert record["pid"] == os.getpid()
        assert record["process_started"] == psutil.Process().create_time()
        assert record["host"] == socket.gethostname()
        assert record["run_id"] == "run-a"
        started = datetime.fromisoformat(str(record["started_at"]))
        beat = datetime.fromisoformat(str(record["heartbeat_at"]))
        assert started.tzinfo is not None
        assert before - timedelta(seconds=1) <= started <= datetime.now(UTC)
        assert beat >= started
        assert asdict(claim.owner) == record
        assert claim.reclaimed_from is None
        assert claim.reclaim_reason is None
        assert lock.holder() == claim.owner
        assert SyncLock(tmp_path).holder() == claim.owner  # another reader sees it too
    assert _read_record(tmp_path) is None
    assert lock.holder() is None


async def test_a_second_hold_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    async with SyncLock(tmp_path).hold("first-run", wait_seconds=0) as claim:
        began = time.monotonic()
        with pytest.raises(SyncLockBusyError) as caught:
            async with SyncLock(tmp_path).hold("second-run", wait_seconds=0):
                pytest.fail("the second hold got the claim while the first held it")
        assert time.monotonic() - began < 1.0
        error = caught.value
        assert error.owner == claim.owner
        assert error.exit_code == 4
        message = str(error)
        assert f"pid {os.getpid()}" in message
        assert socket.gethostname() in message
        assert "first-run" in message
        assert f"since {claim.owner.started_at}" in message
        # The failed attempt left the holder's record alone.
        assert SyncLock(tmp_path).holder() == claim.owner
    assert SyncLock(tmp_path).holder() is None


async def test_a_waiting_hold_gets_the_claim_once_it_is_released(tmp_path: Path) -> None:
    first_held = asyncio.Event()

    async def first() -> None:
        async with SyncLock(tmp_path).hold("first-run", wait_seconds=0):
            first_held.set()
            await asyncio.sleep(0.3)

    holding = asyncio.create_task(first())
    await first_held.wait()
    began = time.monotonic()
    async with SyncLock(tmp_path).hold("second-run", wait_seconds=1) as claim:
        waited = time.monotonic() - began
        assert claim.reclaimed_from is None  # released, not taken over
        assert _read_record(tmp_path) == asdict(claim.owner)
    await holding
    assert waited >= 0.2


async def test_waiting_for_the_claim_keeps_the_event_loop_responsive(tmp_path: Path) -> None:
    first_held = asyncio.Event()
    stop = asyncio.Event()
    ticks: list[float] = []

    async def first() -> None:
        async with SyncLock(tmp_path).hold("first-run", wait_seconds=0):
            first_held.set()
            await asyncio.sleep(1.0)

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    holding = asyncio.create_task(first())
    await first_held.wait()
    ticking = asyncio.create_task(ticker())
    began = time.monotonic()
    async with SyncLock(tmp_path).hold("second-run", wait_seconds=10):
        waited = time.monotonic() - began
    stop.set()
    await ticking
    await holding
    assert waited >= 0.8  # it really waited for the first holder
    assert len(ticks) >= 10
    gaps = [later - earlier for earlier, later in pairwise(ticks)]
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.3f} s while waiting"


async def test_a_dead_owner_is_reclaimed_at_once(tmp_path: Path) -> None:
    pid, created = _dead_pid()
    assert not psutil.pid_exists(pid)
    dead = _owner_of(pid, created, run_id="dead-run")
    _write_record(tmp_path, dead)
    lock = SyncLock(tmp_path)
    assert lock.holder() is None  # a dead owner counts as none
    async with lock.hold("next-run", wait_seconds=0) as claim:
        assert claim.reclaimed_from == dead
        assert claim.reclaim_reason is not None
        assert "dead" in claim.reclaim_reason
        assert str(pid) in claim.reclaim_reason
        assert lock.holder() == claim.owner
        assert claim.owner.pid == os.getpid()
    assert _read_record(tmp_path) is None


@pytest.mark.parametrize("pid_of", [os.getppid, os.getpid], ids=["parent", "self"])
async def test_a_pid_now_used_by_another_process_is_reclaimed(
    tmp_path: Path, pid_of: Callable[[], int]
) -> None:
    pid = pid_of()
    real_start = psutil.Process(pid).create_time()
    impostor = _owner_of(pid, real_start - 3600.0, run_id="old-run")
    _write_record(tmp_path, impostor)
    lock = SyncLock(tmp_path)
    assert lock.holder() is None
    async with lock.hold("next-run", wait_seconds=0) as claim:
        assert claim.reclaimed_from == impostor
        assert claim.reclaim_reason is not None
        assert "belongs to another process" in claim.reclaim_reason


async def test_a_live_owner_with_a_fresh_heartbeat_is_never_evicted_for_age(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    alive = _owner_of(sleeper.pid, psutil.Process(sleeper.pid).create_time(), run_id="long-run")
    assert datetime.fromisoformat(alive.started_at) < datetime.now(UTC) - timedelta(days=365)
    _write_record(tmp_path, alive)
    lock = SyncLock(tmp_path, stale_after=1.0)
    assert lock.holder() == alive
    with pytest.raises(SyncLockBusyError) as caught:
        async with lock.hold("next-run", wait_seconds=0):
            pytest.fail("a live owner with a fresh heartbeat was evicted")
    assert caught.value.owner == alive
    assert f"pid {sleeper.pid}" in str(caught.value)
    assert _read_record(tmp_path) == asdict(alive)


async def test_a_live_owner_whose_heartbeat_stopped_is_reclaimed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    alive = _owner_of(sleeper.pid, psutil.Process(sleeper.pid).create_time(), run_id="hung-run")
    hung = replace(alive, heartbeat_at=_iso(datetime.now(UTC) - timedelta(seconds=5)))
    _write_record(tmp_path, hung)
    lock = SyncLock(tmp_path, stale_after=1.0)
    assert lock.holder() is None
    assert SyncLock(tmp_path).holder() == hung  # under the default 60 s it is still alive
    async with lock.hold("next-run", wait_seconds=0) as claim:
        assert claim.reclaimed_from == hung
        assert claim.reclaim_reason is not None
        assert "heartbeat stopped" in claim.reclaim_reason


async def test_the_heartbeat_is_refreshed_while_held(tmp_path: Path) -> None:
    lock = SyncLock(tmp_path, heartbeat_every=0.1)
    async with lock.hold("beating-run", wait_seconds=0) as claim:
        first = _read_record(tmp_path)
        assert first is not None
        beats: set[str] = {str(first["heartbeat_at"])}
        deadline = time.monotonic() + 3.0
        while len(beats) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            record = _read_record(tmp_path)
            assert record is not None
            assert record["run_id"] == "beating-run"
            assert record["started_at"] == claim.owner.started_at
            beats.add(str(record["heartbeat_at"]))
        assert len(beats) >= 3, "the heartbeat was not refreshed"
        latest = max(datetime.fromisoformat(beat) for beat in beats)
        assert latest > datetime.fromisoformat(claim.owner.heartbeat_at)


async def test_a_claim_taken_by_someone_else_calls_on_lost(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    lost = asyncio.Event()
    usurper = _owner_of(sleeper.pid, psutil.Process(sleeper.pid).create_time(), run_id="usurper")
    lock = SyncLock(tmp_path, heartbeat_every=0.1)
    async with lock.hold("victim-run", wait_seconds=0, on_lost=lambda _holder: lost.set()):
        _write_record(tmp_path, usurper)
        await asyncio.wait_for(lost.wait(), timeout=3.0)
    # Leaving must not clear a record that is no longer ours.
    assert _read_record(tmp_path) == asdict(usurper)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2, 3]",
        "null",
        '{"pid": 1}',
        '{"pid": 1, "unknown": true}',
        "",
        json.dumps(
            {
                "pid": 1,
                "process_started": 0.0,
                "host": "another-host.invalid",  # judged by its heartbeat alone
                "run_id": "garbled",
                "started_at": "yesterday",
                "heartbeat_at": "not a time",
            }
        ),
    ],
    ids=[
        "not-json",
        "a-list",
        "null",
        "missing-fields",
        "unknown-field",
        "empty",
        "bad-times",
    ],
)
async def test_an_unreadable_record_counts_as_free(tmp_path: Path, content: str) -> None:
    (tmp_path / "sync.lock.json").write_text(content, encoding="utf-8")
    lock = SyncLock(tmp_path)
    assert lock.holder() is None
    async with lock.hold("next-run", wait_seconds=0) as claim:
        assert claim.reclaimed_from is None
        assert _read_record(tmp_path) == asdict(claim.owner)


async def test_the_lock_file_itself_is_never_deleted(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    lock_file = tmp_path / "sync.lock"
    claims: list[Claim] = []
    async with SyncLock(tmp_path).hold("run-1", wait_seconds=0) as claim:
        claims.append(claim)
        inode = lock_file.stat().st_ino
    assert lock_file.stat().st_ino == inode
    assert SyncLock(tmp_path).holder() is None
    assert lock_file.stat().st_ino == inode

    pid, created = _dead_pid()
    _write_record(tmp_path, _owner_of(pid, created, run_id="dead-run"))
    async with SyncLock(tmp_path).hold("run-2", wait_seconds=0) as claim:
        claims.append(claim)
    assert lock_file.stat().st_ino == inode

    _write_record(
        tmp_path, _owner_of(sleeper.pid, psutil.Process(sleeper.pid).create_time(), run_id="busy")
    )
    with pytest.raises(SyncLockBusyError):
        async with SyncLock(tmp_path).hold("run-3", wait_seconds=0.3):
            pytest.fail("took a live owner's claim")
    assert lock_file.exists()
    assert lock_file.stat().st_ino == inode
    assert [c.reclaimed_from is not None for c in claims] == [False, True]
