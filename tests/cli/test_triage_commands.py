"""``testio-mirror triage``, ``changes`` and ``resolve`` as a user runs them: a child process
against the sandbox over HTTP, a real mirror; the sandbox's request log counts the writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testio_mirror.sandbox import SandboxServer
from testio_mirror.triage import TriageState
from tests.helpers.command_line import CHILD_TIMEOUT, sync_env
from tests.helpers.triage_bugs import forwarded


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testio_mirror", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        env=env,
        check=False,
    )


@pytest.fixture
def env(sandbox: SandboxServer, tmp_path: Path) -> dict[str, str]:
    chosen = sync_env(sandbox, tmp_path / "home")
    synced = run(chosen, "sync", "--bugs", "--direction", "down")
    assert synced.returncode == 0, synced.stderr
    return chosen


def test_triage_with_yes_sends_once_and_changes_lists_it(
    env: dict[str, str], sandbox: SandboxServer
) -> None:
    [bug_id] = forwarded(sandbox, 1)
    reason = sandbox.world.reject_reasons()[0]["key"]
    sent = run(env, "triage", str(bug_id), "reject", "--reason", reason, "--comment", "no", "--yes")
    listed = run(env, "changes", "--json")
    table = run(env, "changes")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"reject bug {bug_id}: applied in TestIO (bug now: rejected)" in sent.stdout
    assert TriageState.of_bug(sandbox.world.bug(bug_id)).status == "rejected"
    assert len(sandbox.requests.writes(bug_id)) == 1
    [change] = json.loads(listed.stdout)["changes"]
    assert (change["bug_id"], change["state"], change["reason"]) == (bug_id, "applied", reason)
    assert change["events"][0]["kind"] == "created"
    assert "applied" in table.stdout
    assert str(bug_id) in table.stdout


def test_triage_asks_without_yes_and_a_no_stores_nothing(
    env: dict[str, str], sandbox: SandboxServer
) -> None:
    [bug_id] = forwarded(sandbox, 1)
    # stdin is not a terminal: without --yes the command refuses rather than guess.
    refused = run(env, "triage", str(bug_id), "accept", stdin="y\n")
    listed = run(env, "changes", "--json")
    assert refused.returncode == 2
    assert "add --yes" in refused.stdout
    assert json.loads(listed.stdout)["changes"] == []
    assert sandbox.requests.writes(bug_id) == []


def test_an_unknown_reason_is_refused_naming_the_valid_ones(
    env: dict[str, str], sandbox: SandboxServer
) -> None:
    [bug_id] = forwarded(sandbox, 1)
    refused = run(env, "triage", str(bug_id), "reject", "--reason", "nope", "--yes")
    assert refused.returncode == 1
    assert "'nope' is not a reject reason" in refused.stderr
    for reason in sandbox.world.reject_reasons():
        assert reason["key"] in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sandbox.requests.writes(bug_id) == []


def test_a_conflict_is_parked_and_resolve_settles_it(
    env: dict[str, str], sandbox: SandboxServer
) -> None:
    kept_bug, dropped_bug = forwarded(sandbox, 2)
    sandbox.triage_as_person(kept_bug, "mark_known")
    sandbox.triage_as_person(dropped_bug, "mark_known")
    parked = [run(env, "triage", str(b), "accept", "--yes") for b in (kept_bug, dropped_bug)]
    conflicts = json.loads(run(env, "changes", "--state", "conflict", "--json").stdout)["changes"]
    ids = {c["bug_id"]: c["change_id"] for c in conflicts}
    kept = run(env, "resolve", str(ids[kept_bug]), "keep_local")
    dropped = run(env, "resolve", str(ids[dropped_bug]), "keep_server")
    again = run(env, "resolve", str(ids[dropped_bug]), "keep_local")
    assert [p.returncode for p in parked] == [3, 3]
    assert "parked" in parked[0].stdout
    assert "TestIO: forwarded, known" in parked[0].stdout
    assert set(ids) == {kept_bug, dropped_bug}
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "applied in TestIO" in kept.stdout
    assert dropped.returncode == 0
    assert "cancelled" in dropped.stdout
    assert again.returncode == 1
    assert "cancelled" in again.stderr
    assert (len(sandbox.requests.writes(kept_bug)), len(sandbox.requests.writes(dropped_bug))) == (
        1,
        0,
    )
