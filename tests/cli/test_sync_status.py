"""``testio-mirror status`` run as a user runs it: what the mirror holds, its runs, its triage
outbox, a new home."""

from __future__ import annotations

import json
from pathlib import Path

from testio_mirror.app import open_app
from testio_mirror.sandbox import DatasetSpec
from testio_mirror.store.outbox_records import ChangeRequest
from testio_mirror.triage import TriageState
from tests.conftest import SandboxFactory
from tests.helpers.command_line import Children, one_line, sync_env
from tests.helpers.settings import make_settings

SMALL = DatasetSpec(products=3, tests_per_product=60, bugs_per_test=2)


def test_status_shows_counts_and_the_last_runs(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    env = sync_env(sandbox, home)
    first = children.run(env, "sync", "--json")
    assert first.returncode == 0, first.stderr
    second = children.run(env, "sync", "--bugs", "--json")
    assert second.returncode == 0, second.stderr
    run_ids = [json.loads(first.stdout)["run_id"], json.loads(second.stdout)["run_id"]]
    truth = sandbox.world.counts()

    as_json = children.run(env, "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["counts"] == {
        "products": truth["products"],
        "features": truth["features"],
        "tests": truth["tests"],
        "bugs": truth["bugs"],
    }
    assert [r["run_id"] for r in report["last_runs"]] == run_ids[::-1]  # newest first
    assert [r["status"] for r in report["last_runs"]] == ["success", "success"]
    assert [r["trigger"] for r in report["last_runs"]] == ["cli", "cli"]
    assert report["total_runs"] == 2
    assert report["successful_runs"] == 2
    assert report["lock_holder"] is None
    assert sorted(p["product_id"] for p in report["products"]) == [101, 102, 103]
    assert all(p["complete"] for p in report["products"])

    as_text = children.run(env, "status")
    assert as_text.returncode == 0, as_text.stderr
    text = one_line(as_text.stdout)
    assert (
        f"{truth['products']} products, {truth['features']} features, "
        f"{truth['tests']} tests, {truth['bugs']} bugs"
    ) in text
    assert "Runs: 2 (2 successful, 0 partial, 0 failed, 0 cancelled, 0 interrupted)" in text
    assert "Sync lock: free" in text
    assert "Triage outbox: no changes yet" in text
    assert report["outbox"]["changes"] == {
        "pending": 0,
        "sending": 0,
        "applied": 0,
        "conflict": 0,
        "failed": 0,
        "cancelled": 0,
    }
    for run_id in run_ids:
        assert run_id in text


def test_status_of_a_new_home_says_the_mirror_is_empty_and_what_to_run(
    children: Children, home: Path
) -> None:
    result = children.run(sync_env(None, home), "status")
    assert result.returncode == 0, result.stderr
    text = one_line(result.stdout)
    assert "The mirror is empty: run `testio-mirror sync`" in text
    assert "Last runs" not in text  # no empty tables
    assert "┏" not in result.stdout


def test_status_shows_run_ids_whole_in_a_narrow_terminal(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    env = sync_env(sandbox, home)
    synced = children.run(env, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    run_id = json.loads(synced.stdout)["run_id"]
    result = children.run({**env, "COLUMNS": "80"}, "status")
    assert result.returncode == 0, result.stderr
    assert run_id in result.stdout  # on one line, not cut short


async def test_status_shows_the_triage_outbox(
    make_sandbox: SandboxFactory, children: Children, home: Path
) -> None:
    sandbox = make_sandbox(dataset=SMALL)
    env = sync_env(sandbox, home)
    synced = children.run(env, "sync", "--bugs", "--json")
    assert synced.returncode == 0, synced.stderr
    bugs = sorted(
        b["id"]
        for b in sandbox.world.snapshot()["bugs"].values()
        if TriageState.of_bug(b) == TriageState("forwarded", False, False, False)
    )[:3]
    async with open_app(make_settings(sandbox, home)) as app:
        stored = await app.mirror.outbox.enqueue(
            [ChangeRequest(b, "mark_known") for b in bugs],
            requested_by="ana",
            client="test",
            strategy="manual",
        )
        applied, waiting, parked = (c.id for c in stored)
        sandbox.triage_as_person(bugs[2], "accept")  # a conflict for the third
        await app.sync.pusher.push([applied, parked])

    as_json = children.run(env, "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    outbox = json.loads(as_json.stdout)["outbox"]
    assert {state: n for state, n in outbox["changes"].items() if n} == {
        "pending": 1,
        "applied": 1,
        "conflict": 1,
    }
    assert outbox["oldest_pending"]["change_id"] == waiting
    assert outbox["conflicts"]["detected"] == {"manual": 1}
    assert outbox["conflicts"]["last_run"]["detected"] == {"manual": 1}
    assert outbox["last_push_at"] is not None

    as_text = children.run(env, "status")
    assert as_text.returncode == 0, as_text.stderr
    text = one_line(as_text.stdout)
    assert "Triage outbox: 1 pending, 1 in conflict (waiting for a person), 1 applied" in text
    assert f"oldest pending: change {waiting}, waiting " in text
    assert "conflicts: 1 detected (manual 1), 0 resolved" in text
    assert "last push: 20" in text
