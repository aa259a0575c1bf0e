"""Hostile syncs: TestIO sends what the mirror cannot store, a lock is lost, a listing lies.

Each test is a regression test of a defect of issue 17; the odd answers come from the sandbox's
per-id reshaping (``ReshapingSandbox``, tests/reliability/test_upstream_surprises.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from testio_mirror.sandbox import SandboxConfig
from testio_mirror.sandbox.app import SandboxKnobs
from testio_mirror.sandbox.dataset import DatasetSpec
from testio_mirror.store.mirror import Mirror
from testio_mirror.sync.lock import SyncLock, SyncLockBusyError
from testio_mirror.sync.models import SyncOptions, SyncStatus
from testio_mirror.sync.service import SyncService
from testio_mirror.upstream.client import CustomerApiClient
from tests.conftest import SandboxFactory
from tests.helpers.command_line import CHILD_TIMEOUT, Children, sync_env
from tests.helpers.mcp_session import call, connect
from tests.helpers.reliability_ledger import Ledger
from tests.helpers.settings import make_settings
from tests.reliability.test_upstream_surprises import ReshapingSandbox, edit

TOO_BIG = 2**63  # one past what SQLite's INTEGER holds (the sandbox sends up to 2**64 - 1)


async def test_numbers_out_of_range_skip_their_objects_not_the_run(
    tmp_path: Path, ledger: Ledger
) -> None:
    spec = DatasetSpec(seed=5, products=3, section_products=0, tests_per_product=12)
    with ReshapingSandbox(SandboxConfig(dataset=spec)) as sandbox:
        world = sandbox.reshaped
        first, second, third = sorted(p["id"] for p in world.products())
        tests = [t["id"] for t in world.tests_page(second, 1, 1000)]
        deep_test = tests[-1]  # on the listing's last page
        buggy = tests[0]
        bug_ids = [b["id"] for b in world.bugs(test_ids=[buggy])] or [world.add_bug(buggy)]
        world.product_shapes[third] = [edit({"id": TOO_BIG})]
        world.test_shapes[deep_test] = [edit({"id": TOO_BIG + 7})]
        world.test_shapes[tests[1]] = [edit({"section": {"id": 2**64 - 1}})]
        world.bug_shapes[bug_ids[0]] = [edit({"id": 2**64 - 1})]
        settings = make_settings(sandbox, tmp_path / "home")
        async with connect(settings) as client:
            answer = await call(client, "sync_data", {"include_bugs": True})
            result = answer["result"]
            status = await call(client, "sync_status")
            products = await call(client, "list_products")
            listed = await call(client, "list_tests", {"product_id": second, "limit": 100})
    warnings = " ".join(result["warnings"])
    assert result["status"] == "partial", result
    errors = result["errors"]
    assert any("4 objects skipped: a number out of range" in e for e in errors), errors
    assert warnings.count("skipped: a number out of range") == 4, warnings
    assert status["last_result"]["status"] == "partial"
    assert sorted(p["id"] for p in products["products"]) == [first, second]
    shown = {t["id"] for t in listed["tests"]}
    assert shown == set(tests) - {deep_test, tests[1]}
    ledger.record("hostile sync", trials=4, faults=4)


_HOLD_THE_FILE_LOCK = """
import sys, time, filelock
with filelock.FileLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_sync_no_wait_while_another_process_holds_the_lock_file_says_so(
    make_sandbox: SandboxFactory, tmp_path: Path, ledger: Ledger
) -> None:
    """A process that is not a sync of this mirror holds ``sync.lock`` itself (the file lock,
    not the claim record): ``sync --no-wait`` answers in one line with the busy exit code."""
    sandbox = make_sandbox(DatasetSpec(seed=3, products=1, tests_per_product=2))
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_FILE_LOCK, str(home / "sync.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        children = Children(tmp_path)
        try:
            refused = children.run(sync_env(sandbox, home), "sync", "--no-wait")
        finally:
            children.stop_all()
    finally:
        holder.communicate(input="", timeout=CHILD_TIMEOUT)
    ledger.record("hostile sync", trials=1)
    assert refused.returncode == SyncLockBusyError.exit_code, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    assert "sync.lock" in refused.stderr, refused.stderr
    assert "another process" in refused.stderr, refused.stderr


def _mirror_content(database: Path) -> list[str]:
    """The mirror's content as SQL, without the runs' own records (a run's end is recorded
    whatever happens to it)."""
    with sqlite3.connect(database) as connection:
        return [
            line
            for line in connection.iterdump()
            if "sync_runs" not in line and "sync_events" not in line
        ]


@pytest.mark.parametrize(
    "heartbeat_every",
    # Who notices first: the heartbeat (it cancels the run), or the next commit (the heartbeat
    # is not due yet; the commit guard reads the claim and refuses).
    [pytest.param(0.05, id="heartbeat-notices"), pytest.param(5.0, id="commit-notices")],
)
async def test_a_sync_taken_over_while_it_hung_ends_failed_and_commits_nothing_more(
    heartbeat_every: float,
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    ledger: Ledger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The run hangs (its event loop blocked: a stopped process), another process finds its
    heartbeat stopped and takes the lock over; when the run resumes it commits nothing more and
    ends ``failed``, naming the new holder, with no traceback."""
    sandbox = make_sandbox(
        DatasetSpec(seed=11, products=4, section_products=0, tests_per_product=30),
        knobs=SandboxKnobs(latency_ms=20),
    )
    home = tmp_path / "home"
    settings = make_settings(sandbox, home, max_concurrent_requests=2)
    taken, release = threading.Event(), threading.Event()

    def take_over() -> None:
        async def hold() -> None:
            async with SyncLock(home, heartbeat_every=0.05, stale_after=0.4).hold(
                "taker-run", wait_seconds=CHILD_TIMEOUT
            ):
                taken.set()
                await asyncio.to_thread(release.wait, CHILD_TIMEOUT)

        asyncio.run(hold())

    snapshot: list[list[str]] = []

    def hang_once(done: int, total: int, message: str) -> None:
        if done >= 3 and not snapshot:
            # Blocks the loop as a stopped process would: no heartbeat, no commit.
            taker.start()
            assert taken.wait(CHILD_TIMEOUT), "the other process never took the lock over"
            snapshot.append(_mirror_content(settings.database_path))

    client = CustomerApiClient(settings)
    mirror = await Mirror.open(settings, client)
    lock = SyncLock(home, heartbeat_every=heartbeat_every, stale_after=0.4)
    taker = threading.Thread(target=take_over)
    try:
        service = SyncService(settings, client, mirror, lock=lock)
        running = asyncio.create_task(
            service.execute_sync(options=SyncOptions(include_bugs=True), on_progress=hang_once)
        )
        with caplog.at_level(logging.WARNING):
            result = await asyncio.wait_for(running, CHILD_TIMEOUT)
        after = _mirror_content(settings.database_path)
    finally:
        release.set()
        if taker.is_alive():
            taker.join(CHILD_TIMEOUT)
        await mirror.close()
        await client.aclose()

    assert snapshot, "the run finished before it could hang"
    assert result.status is SyncStatus.FAILED, result
    assert any(
        f"the sync lock was taken over by pid {os.getpid()} on " in e and "run taker-run" in e
        for e in result.errors
    ), result.errors
    assert after == snapshot[0], "the run committed after its lock was taken over"
    assert [r for r in caplog.records if r.exc_info] == []
    ledger.record("hostile sync", trials=1, faults=1)


@pytest.mark.parametrize(
    ("answers", "removed", "listings", "status"),
    [
        # One empty answer, then the real list: nothing is removed and the run says so.
        pytest.param("empty-once", 0, 2, SyncStatus.PARTIAL, id="empty-once"),
        # Empty twice: the listings agree, so the account really has no products any more.
        pytest.param("empty-twice", 4, 2, SyncStatus.SUCCESS, id="empty-twice"),
        # Three of four missing once (more than half, at least three): nothing is removed.
        pytest.param("three-missing-once", 0, 2, SyncStatus.PARTIAL, id="three-missing-once"),
        # One of four missing: too small a share to ask twice; it is removed at once.
        pytest.param("one-missing", 1, 1, SyncStatus.SUCCESS, id="one-missing"),
    ],
)
async def test_a_product_list_that_would_remove_much_is_listed_twice(
    answers: str,
    removed: int,
    listings: int,
    status: SyncStatus,
    tmp_path: Path,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = DatasetSpec(seed=13, products=4, section_products=0, tests_per_product=3)
    with ReshapingSandbox(SandboxConfig(dataset=spec)) as sandbox:
        world = sandbox.reshaped
        every = world.products()
        lies = {
            "empty-once": [[]],
            "empty-twice": [[], []],
            "three-missing-once": [every[:1]],
            "one-missing": [every[1:]],
        }[answers]
        settings = make_settings(sandbox, tmp_path / "home")
        client = CustomerApiClient(settings)
        mirror = await Mirror.open(settings, client)
        try:
            service = SyncService(settings, client, mirror)
            assert (await service.execute_sync(phases=["products"])).status is SyncStatus.SUCCESS
            real_products = world.products
            monkeypatch.setattr(world, "products", lambda: lies.pop(0) if lies else real_products())
            before = len(sandbox.requests.records())
            result = await service.execute_sync(phases=["products"])
            asked = [r for r in sandbox.requests.records()[before:] if r.path == "products"]
            live = await mirror.products.stored_products()
        finally:
            await mirror.close()
            await client.aclose()
    ledger.record("hostile sync", trials=1, faults=1)
    assert result.status is status, result
    assert len(asked) == listings
    assert len(live) == 4 - removed
    said = " ".join([*result.warnings, *result.errors])
    if listings == 2:
        assert "a second listing" in said, said
    if status is SyncStatus.PARTIAL:
        assert any("nothing was removed" in e for e in result.errors), result.errors


async def test_a_read_through_product_list_that_would_remove_all_is_listed_twice(
    tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DatasetSpec(seed=13, products=3, section_products=0, tests_per_product=2)
    with ReshapingSandbox(SandboxConfig(dataset=spec)) as sandbox:
        world = sandbox.reshaped
        settings = make_settings(sandbox, tmp_path / "home", product_ttl_seconds=0)
        client = CustomerApiClient(settings)
        mirror = await Mirror.open(settings, client)
        try:
            await SyncService(settings, client, mirror).execute_sync(phases=["products"])
            lies: list[list[object]] = [[]]
            real_products = world.products
            monkeypatch.setattr(world, "products", lambda: lies.pop(0) if lies else real_products())
            answer = await mirror.products.list_products()  # stale at once: read through
        finally:
            await mirror.close()
            await client.aclose()
    ledger.record("hostile sync", trials=1, faults=1)
    assert not lies, "the read-through did not ask TestIO"
    assert len(answer.value) == 3, answer
