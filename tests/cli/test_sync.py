"""``testio-mirror sync`` run as a user runs them: child processes against a sandbox
served by this test process on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxKnobs
from tests.conftest import SandboxFactory
from tests.helpers.command_line import CHILD_TIMEOUT, Children, one_line, sync_env
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.polling import wait_for

SMALL = DatasetSpec(products=3, tests_per_product=60, bugs_per_test=2)
# Enough pages that a sync under sandbox latency takes a while.
CONTENDED = DatasetSpec(products=3, tests_per_product=300, bugs_per_test=1)
LONG = DatasetSpec(products=2, tests_per_product=600, bugs_per_test=1)


def _rows(database: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    with sqlite3.connect(database) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params))


def _runs(database: Path) -> list[sqlite3.Row]:
    return _rows(database, "SELECT * FROM sync_events WHERE kind = 'run' ORDER BY at")


def _lock_record(home: Path) -> dict[str, Any] | None:
    try:
        text = (home / "sync.lock.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    record: dict[str, Any] = json.loads(text)
    return record


# -- one process ---------------------------------------------------------------------------------


def test_sync_mirrors_the_account_and_prints_a_summary(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    result = children.run(sync_env(sandbox, home), "sync")
    assert result.returncode == 0, result.stderr
    assert "Sync completed in" in result.stdout
    assert "new_tests" in result.stdout  # the per-phase table
    assert "Traceback" not in result.stderr
    # Without a terminal, progress is a line when each phase starts and ends (with its
    # counts), not a line per request; the run's summary is printed once, on stdout.
    phases = re.findall(r"^(\w+): (started|done)", result.stderr, re.MULTILINE)
    assert phases == [
        (phase, event)
        for phase in ("products", "features", "new_tests")
        for event in ("started", "done")
    ]
    truth = sandbox.world.counts()
    assert f"new_tests: done, {truth['tests']} fetched, {truth['tests']} new" in result.stderr
    assert not re.search(r"^\[\d+/\d+\]", result.stderr, re.MULTILINE)
    assert len(result.stderr.splitlines()) < 10
    assert (result.stdout + result.stderr).count("Sync completed") == 1
    assert sandbox.token not in result.stdout + result.stderr
    assert mirror_differences(home / "mirror.db", sandbox.world) == []
    runs = _runs(home / "mirror.db")
    assert [(r["trigger"], r["status"]) for r in runs] == [("cli", "success")]
    assert _lock_record(home) is None  # released


def test_steps_writes_a_line_per_step_counting_up(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    result = children.run(sync_env(make_sandbox(dataset=SMALL), home), "sync", "--steps")
    assert result.returncode == 0, result.stderr
    steps = [
        (int(m[1]), int(m[2])) for m in re.finditer(r"^\[(\d+)/(\d+)\] \S", result.stderr, re.M)
    ]
    assert [done for done, _ in steps] == list(range(1, len(steps) + 1))
    assert len(steps) > 10
    assert all(done <= total for done, total in steps)
    assert "new_tests: done" not in result.stderr  # instead of the phase lines


def test_on_a_terminal_log_lines_print_above_the_progress_bar(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL, knobs=SandboxKnobs(latency_ms=20))
    sandbox.faults.add(FaultRule(kind="error", status=503, path="products/101/exploratory_tests"))
    controller, terminal = pty.openpty()  # stderr is a terminal: the progress bar shows
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "testio_mirror", "sync"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            env=sync_env(sandbox, home, COLUMNS="120", TESTIO_RETRY_MAX_DELAY_SECONDS="0.05"),
            cwd=children.cwd,
        )
        children.started.append(process)
        os.close(terminal)
        terminal = -1
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := os.read(controller, 65536):
                shown += chunk
        process.communicate(timeout=CHILD_TIMEOUT)
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    assert process.returncode == 0, shown
    text = shown.decode("utf-8", "replace")
    assert "retry 1 of" in text
    # Through the bar's console, a log line starts on a line the bar has cleared (ESC[2K);
    # written past the console, it would land right after the bar's own text.
    assert re.search(r"\x1b\[2K[^\r\n]*WARNING testio_mirror\.upstream: [^\r\n]*retry 1 of", text)


def test_sync_with_bugs_prints_json_on_stdout(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    result = children.run(sync_env(sandbox, home), "sync", "--bugs", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert not re.search(r"^\w+: (started|done)", result.stderr, re.MULTILINE), "--json is quiet"
    assert report["status"] == "success"
    assert report["trigger"] == "cli"
    assert report["phases_completed"] == ["products", "features", "new_tests", "bugs"]
    assert report["stats"]["bugs"]["fetched"] == sandbox.world.counts()["bugs"]
    assert report["stats"]["new_tests"]["inserted"] == sandbox.world.counts()["tests"]
    assert report["errors"] == []
    assert mirror_differences(home / "mirror.db", sandbox.world, bugs=True) == []
    # The product list is asked for before the mirror opens; its request still counts in the
    # products phase, and the run's total is every request TestIO saw.
    assert report["stats"]["products"]["api_requests"] == 1
    assert len(sandbox.requests.records("products")) == 1
    assert report["api_requests"] == len(sandbox.requests.records())


def test_sync_without_a_token_is_a_usage_error(children: Children, home: Path) -> None:
    result = children.run(sync_env(None, home), "sync")
    assert result.returncode == 2
    assert "TESTIO_CUSTOMER_API_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [(("--nuke",), "--yes"), (("--since", "notadate"), "notadate")],
    ids=["nuke-without-yes", "since-not-a-date"],
)
def test_bad_sync_arguments_are_usage_errors(
    make_sandbox: SandboxFactory,
    children: Children,
    home: Path,
    args: tuple[str, ...],
    named: str,
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    result = children.run(sync_env(sandbox, home), "sync", *args)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "mirror.db").exists()  # refused before touching anything
    assert len(sandbox.requests) == 0


def test_a_product_that_keeps_failing_makes_the_sync_partial(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    sandbox.faults.add(
        FaultRule(kind="error", status=503, path="products/102/exploratory_tests", times=None)
    )
    env = sync_env(
        sandbox, home, TESTIO_RETRY_MAX_ATTEMPTS="2", TESTIO_RETRY_MAX_DELAY_SECONDS="0.05"
    )
    result = children.run(env, "sync")
    assert result.returncode == 3, result.stdout + result.stderr
    text = one_line(result.stdout)
    assert "Sync completed partially" in text
    assert "tests of product 102" in text
    listed = {
        row[0]: row[1]
        for row in _rows(
            home / "mirror.db",
            "SELECT product_id, count(*) FROM tests WHERE deleted_at IS NULL GROUP BY product_id",
        )
    }
    assert listed == {101: 60, 103: 60}  # the other products were synced all the same
    assert [r["status"] for r in _runs(home / "mirror.db")] == ["partial"]


def test_a_wrong_token_fails_the_sync(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    result = children.run(
        sync_env(sandbox, home, TESTIO_CUSTOMER_API_TOKEN="not-the-token"), "sync"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Sync failed" in one_line(result.stdout)
    assert "1 API requests" in one_line(result.stdout)  # the refused one is counted
    # The error and what to do, once; no table of phases that never ran.
    assert one_line(result.stdout).count("check TESTIO_CUSTOMER_API_TOKEN") == 1
    assert "fetched │" not in result.stdout
    assert "requests" not in result.stdout.replace("API requests", "")
    assert "not-the-token" not in result.stdout + result.stderr
    assert [r["status"] for r in _runs(home / "mirror.db")] == ["failed"]
    assert _rows(home / "mirror.db", "SELECT count(*) FROM tests")[0][0] == 0


def test_an_unknown_product_fails_the_sync_listing_the_products(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    result = children.run(
        sync_env(sandbox, home), "sync", "--product", "101", "--product", "999999"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    text = one_line(result.stdout + result.stderr)
    assert "unknown product 999999" in text
    assert "101, 102, 103" in text  # what the account has
    assert [r["status"] for r in _runs(home / "mirror.db")] == ["failed"]
    assert _rows(home / "mirror.db", "SELECT count(*) FROM tests")[0][0] == 0


# -- several processes ---------------------------------------------------------------------------


def test_two_syncs_started_together_take_turns(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=CONTENDED, knobs=SandboxKnobs(latency_ms=30))
    env = sync_env(sandbox, home)
    processes = [children.start(env, "sync", "--json"), children.start(env, "sync", "--json")]
    outputs = [process.communicate(timeout=CHILD_TIMEOUT) for process in processes]
    reports = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stdout + stderr
        reports.append(json.loads(stdout))
    assert [r["status"] for r in reports] == ["success", "success"]

    runs = _runs(home / "mirror.db")
    assert sorted(r["run_id"] for r in runs) == sorted(r["run_id"] for r in reports)
    assert [r["status"] for r in runs] == ["success", "success"]
    earlier, later = runs
    # One at a time: the later run started only once the earlier one had finished.
    assert earlier["finished_at"] <= later["at"], (
        f"the recorded runs overlap: {earlier['at']} .. {earlier['finished_at']} and "
        f"{later['at']} .. {later['finished_at']}"
    )
    assert (
        _rows(home / "mirror.db", "SELECT * FROM sync_events WHERE kind = 'lock_reclaimed'") == []
    )
    assert mirror_differences(home / "mirror.db", sandbox.world) == []


def test_no_wait_fails_at_once_naming_the_holder(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=CONTENDED, knobs=SandboxKnobs(latency_ms=30))
    # The first listing page of one product answers only after 2 s: the holder keeps the lock.
    sandbox.faults.add(
        FaultRule(kind="hang", path="products/101/exploratory_tests", hang_seconds=2.0)
    )
    env = sync_env(sandbox, home)
    holder = children.start(env, "sync")
    assert wait_for(lambda: (_lock_record(home) or {}).get("pid") == holder.pid, 20.0), (
        "the first sync never took the lock"
    )
    began = time.monotonic()
    refused = children.run(env, "sync", "--no-wait")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert time.monotonic() - began < CHILD_TIMEOUT / 2
    message = one_line(refused.stderr)
    assert f"pid {holder.pid}" in message
    assert "another sync is running" in message
    assert "Traceback" not in refused.stderr

    stdout, stderr = holder.communicate(timeout=CHILD_TIMEOUT)
    assert holder.returncode == 0, stdout + stderr
    # The refused run never started: only the holder's run is in the history.
    assert [r["status"] for r in _runs(home / "mirror.db")] == ["success"]
    assert mirror_differences(home / "mirror.db", sandbox.world) == []


def _listing_states(database: Path) -> dict[int, sqlite3.Row]:
    try:
        rows = _rows(database, "SELECT * FROM listing_state")
    except sqlite3.Error:
        return {}  # not created yet
    return {row["product_id"]: row for row in rows}


def _page(query: str) -> int:
    return int(parse_qs(query)["page"][0])


def test_a_killed_sync_is_reclaimed_and_resumed_by_the_next(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=LONG, knobs=SandboxKnobs(latency_ms=50))
    env = sync_env(sandbox, home, TESTIO_SYNC_LOCK_TIMEOUT_SECONDS="30")
    database = home / "mirror.db"
    victim = children.start(env, "sync")

    def some_pages_committed() -> bool:
        return any(
            s["next_page"] >= 3 and not s["complete"] for s in _listing_states(database).values()
        )

    assert wait_for(some_pages_committed, 30.0), "the first sync never committed a page"
    victim.kill()
    victim.communicate(timeout=CHILD_TIMEOUT)
    killed_at = time.time()
    assert victim.returncode == -9

    dead = _lock_record(home)
    assert dead is not None
    assert dead["pid"] == victim.pid  # the dead process's claim was left behind
    resumable = {
        pid: s["next_page"]
        for pid, s in _listing_states(database).items()
        if not s["complete"] and s["next_page"] > 1
    }
    assert resumable, "no listing was left half done"
    assert [(r["run_id"], r["status"]) for r in _runs(database)] == [(dead["run_id"], "running")]

    began = time.monotonic()
    result = children.run(env, "sync", "--json")
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    assert took < 15.0, f"the next sync took {took:.1f} s: it waited for the dead claim"
    report = json.loads(result.stdout)
    assert report["status"] == "success"

    statuses = {r["run_id"]: r["status"] for r in _runs(database)}
    assert statuses == {dead["run_id"]: "interrupted", report["run_id"]: "success"}
    reclaimed = _rows(database, "SELECT * FROM sync_events WHERE kind = 'lock_reclaimed'")
    assert len(reclaimed) == 1
    assert reclaimed[0]["run_id"] == report["run_id"]
    assert dead["run_id"] in reclaimed[0]["message"]
    assert f"pid {victim.pid}" in reclaimed[0]["message"]
    assert "dead" in reclaimed[0]["message"]

    for product_id, next_page in resumable.items():
        asked = [
            _page(r.query)
            for r in sorted(
                sandbox.requests.records(f"products/{product_id}/exploratory_tests"),
                key=lambda r: r.at,
            )
            if r.at > killed_at
        ]
        assert asked, f"product {product_id} was not listed again"
        assert asked[0] == next_page, (
            f"product {product_id}: the resumed listing asked {asked[:5]}, "
            f"not page {next_page} first"
        )
        refetched = sorted(set(asked) & set(range(2, next_page)))
        assert refetched == [], f"product {product_id}: committed pages fetched again"
    assert mirror_differences(database, sandbox.world) == []
    assert _lock_record(home) is None
