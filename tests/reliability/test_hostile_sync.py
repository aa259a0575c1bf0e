"""Hostile syncs: TestIO sends what the mirror cannot store, a lock is lost, a listing lies.

Each test is a regression test of a defect of issue 17; the odd answers come from the sandbox's
per-id reshaping (``ReshapingSandbox``, tests/reliability/test_upstream_surprises.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testio_mirror.sandbox import SandboxConfig
from testio_mirror.sandbox.dataset import DatasetSpec
from testio_mirror.sync.lock import SyncLockBusyError
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
