"""``sync_data`` and ``sync_status`` over MCP: the background start-up sync, progress, joining,
``wait=false``, cancellation, a wrong token, the status resource and ``status --json`` (the same
answer), annotations."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from testio_mirror.cli.sync import run_status
from testio_mirror.sandbox import DatasetSpec, SandboxKnobs, SandboxServer
from tests.conftest import SandboxFactory
from tests.helpers.mcp_session import call, connect, poll, run_rows, text_of, wait_idle
from tests.helpers.serving import TOOLS, TRIAGE_TOOLS
from tests.helpers.settings import make_settings

TINY = DatasetSpec(seed=5, products=2, section_products=1, tests_per_product=30, bugs_per_test=2)
SLOW = SandboxKnobs(latency_ms=300)
LISTING = "products/*/exploratory_tests"
QUERY_TOOLS = TOOLS - {"sync_data", "sync_status"} - TRIAGE_TOOLS


def expected_counts(sandbox: SandboxServer, *, bugs: bool) -> dict[str, int]:
    truth = sandbox.world.snapshot()
    return {
        "products": len(truth["products"]),
        "features": sum(len(f) for f in truth["features"].values()),
        "tests": len(truth["tests"]),
        "bugs": len(truth["bugs"]) if bugs else 0,
    }


async def test_tools_and_status_answer_while_the_startup_sync_runs(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY, SLOW)
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings, initial_sync=True) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"sync_data", "sync_status"} | QUERY_TOOLS <= names
        status: dict[str, Any] = {}

        async def running() -> bool:
            nonlocal status
            status = await call(client, "sync_status")
            return status["running"] is not None and status["lock_holder"] is not None

        answered = await poll(running, 5.0)
        listed_when_answered = len(sandbox.requests.records(LISTING))
        rows_when_answered = run_rows(settings)
        final = await wait_idle(client)
    assert answered, status
    run = status["running"]
    assert status["state"] == "running"
    assert run["trigger"] == "startup"
    assert status["lock_holder"]["run_id"] == run["run_id"]
    assert status["last_result"] is None
    # sync_status answered before the run was over: its row was still running, and the sandbox
    # served listing pages only afterwards.
    assert rows_when_answered.get(run["run_id"], "running") == "running"
    assert run_rows(settings)[run["run_id"]] == "success"
    assert len(sandbox.requests.records(LISTING)) > listed_when_answered
    assert final["last_result"]["run_id"] == run["run_id"]
    assert final["counts"] == expected_counts(sandbox, bugs=False)


async def test_sync_data_reports_increasing_progress_and_a_result(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    settings = make_settings(sandbox, tmp_path / "home")
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(settings) as client:
        result = await client.call_tool("sync_data", {}, progress_callback=on_progress)
        status = await call(client, "sync_status")
    assert not result.is_error, text_of(result)
    answer = result.structured_content or {}
    assert (answer["started"], answer["joined"]) == (True, False)
    outcome = answer["result"]
    assert outcome["run_id"] == answer["run_id"]
    assert outcome["status"] == "success"
    assert outcome["phases_completed"] == ["products", "features", "new_tests"]
    assert outcome["errors"] == []
    assert outcome["stats"]["new_tests"]["inserted"] == len(sandbox.world.snapshot()["tests"])
    assert status["counts"] == expected_counts(sandbox, bugs=False)
    values = [progress for progress, _, _ in seen]
    assert len(values) >= 3, seen
    assert all(a < b for a, b in itertools.pairwise(values)), values
    assert all(total is not None and progress <= total for progress, total, _ in seen), seen
    assert all(message for _, _, message in seen)


async def test_sync_status_after_syncs_matches_the_sandbox(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        never = await call(client, "sync_status")
        assert never["state"] == "never_synced"
        assert never["total_runs"] == 0
        assert never["last_result"] is None
        first = await call(client, "sync_data", {})
        assert (await call(client, "sync_status"))["counts"]["bugs"] == 0
        second = await call(client, "sync_data", {"include_bugs": True})
        assert second["result"]["status"] == "success"
        assert "bugs" in second["result"]["phases_completed"]
        assert second["run_id"] != first["run_id"]
        status = await call(client, "sync_status", {"period": "1h"})
    truth = sandbox.world.snapshot()
    assert status["counts"] == expected_counts(sandbox, bugs=True)
    assert status["state"] == "idle"
    assert status["running"] is None
    assert status["lock_holder"] is None
    assert status["last_result"]["run_id"] == second["run_id"]
    assert status["last_result"]["status"] == "success"
    assert status["total_runs"] == status["successful_runs"] == 2
    assert status["failed_runs"] == 0
    assert status["period_runs"] == 2
    assert status["period_success_rate"] == 1.0
    assert status["last_success_at"] is not None
    listings = {p["product_id"]: p for p in status["products"]}
    assert set(listings) == set(truth["products"])
    assert all(p["complete"] and p["last_complete_listing"] for p in listings.values())
    assert status["upstream"]["state"] == "healthy"
    assert run_rows(settings) == {first["run_id"]: "success", second["run_id"]: "success"}


async def test_sync_status_the_resource_and_status_json_give_the_same_fields(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        await call(client, "sync_data", {"include_bugs": True})
        status = await call(client, "sync_status")
        resource = await client.read_resource("testio://sync/status")
        printed = io.StringIO()
        console = Console(file=printed, highlight=False)
        code = await asyncio.to_thread(
            run_status, settings, as_json=True, period_hours=24.0, out=console
        )
    body = json.loads(getattr(resource.contents[0], "text", ""))
    cli = json.loads(printed.getvalue())
    assert code == 0
    assert body["state"] == "idle"
    assert body["counts"] == status["counts"] == expected_counts(sandbox, bugs=True)
    assert body["last_result"]["run_id"] == status["last_result"]["run_id"]
    # The resource says it is "as sync_status answers": a run count is a number there too.
    assert body["total_runs"] == status["total_runs"]
    assert set(status) == set(body) == set(cli)
    assert body == status  # the same answer, read a moment apart
    # The CLI is not the server: it knows nothing of TestIO's health; the rest is the same.
    assert cli["upstream"] is None
    assert status["upstream"]["state"] == "healthy"
    assert {k: v for k, v in cli.items() if k != "upstream"} == {
        k: v for k, v in status.items() if k != "upstream"
    }
    for answer in (status, body, cli):
        times = [answer["last_sync_at"], answer["last_result"]["finished_at"]]
        times += [p["last_complete_listing"] for p in answer["products"]]
        times += [r["started_at"] for r in answer["last_runs"]]
        assert all(t.endswith("Z") for t in times), times


async def test_concurrent_sync_data_calls_share_one_run(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY, SandboxKnobs(latency_ms=100))
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        first, second = await asyncio.gather(
            call(client, "sync_data", {}), call(client, "sync_data", {})
        )
    assert first["run_id"] == second["run_id"]
    assert {first["started"], second["started"]} == {True, False}
    assert {first["joined"], second["joined"]} == {True, False}
    assert first["result"] == second["result"]
    assert len(sandbox.requests.records("products")) == 1
    assert list(run_rows(settings).values()) == ["success"]


async def test_wait_false_answers_at_once_and_joins(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY, SandboxKnobs(latency_ms=200))
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        started = await call(client, "sync_data", {"wait": False})
        joined = await call(client, "sync_data", {"wait": False})
        listed_when_answered = len(sandbox.requests.records(LISTING))
        status = await call(client, "sync_status")
        final = await wait_idle(client)
    assert (started["started"], started["joined"], started["result"]) == (True, False, None)
    assert started["hint"]
    assert (joined["started"], joined["joined"]) == (False, True)
    assert joined["run_id"] == started["run_id"]
    assert status["state"] == "running"
    assert status["running"]["run_id"] == started["run_id"]
    # Both answers came before the sandbox served the run's last listing page.
    assert len(sandbox.requests.records(LISTING)) > listed_when_answered
    assert run_rows(settings) == {started["run_id"]: "success"}
    assert final["last_result"]["run_id"] == started["run_id"]
    assert final["last_result"]["status"] == "success"
    assert final["counts"] == expected_counts(sandbox, bugs=False)


async def test_wait_false_with_bugs_during_the_startup_sync_gets_bugs(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # The start-up sync has no bugs phase: an answer that says it joined that run for a request
    # with include_bugs must still lead to the bugs being synced.
    sandbox = make_sandbox(TINY, SLOW)
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings, initial_sync=True) as client:

        async def startup_running() -> bool:
            return (await call(client, "sync_status"))["running"] is not None

        assert await poll(startup_running, 5.0)
        answer = await call(client, "sync_data", {"include_bugs": True, "wait": False})
        status: dict[str, Any] = {}

        async def named_run_ended() -> bool:
            nonlocal status
            status = await call(client, "sync_status")
            last = status["last_result"]
            return last is not None and last["run_id"] == answer["run_id"]

        ended = await poll(named_run_ended, 30.0, every=0.1)
        final = await wait_idle(client)
    assert ended, status
    # Fails today: the answer says it joined the start-up run, whose phases have no bugs.
    assert "bugs" in status["last_result"]["phases"], (answer, status["last_result"])
    assert final["counts"]["bugs"] == len(sandbox.world.snapshot()["bugs"])


async def test_a_cancelled_sync_data_call_leaves_its_sync_running_to_the_end(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY, SandboxKnobs(latency_ms=SLOW.latency_ms))  # changed below
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        task = asyncio.create_task(client.call_tool("sync_data", {"include_bugs": True}))

        async def listing() -> bool:
            return bool(sandbox.requests.records(LISTING))

        assert await poll(listing, 10.0)
        assert list(run_rows(settings).values()) == ["running"]
        # A client's request timeout cancels its call: the sync it started must go on.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        sandbox.knobs.latency_ms = 0
        status = await wait_idle(client, 60.0)
        again = await call(client, "sync_data", {})
    assert sorted(run_rows(settings).values()) == ["success", "success"]
    assert status["lock_holder"] is None
    assert status["running"] is None
    assert status["last_result"]["status"] == "success"
    assert status["counts"] == expected_counts(sandbox, bugs=True)
    assert again["result"]["status"] == "success"  # the lock is free: a new sync runs to the end
    assert "sync_status" in again["hint"]


async def test_unknown_products_are_refused_before_any_run_naming_list_products(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        for wait in (True, False):
            result = await client.call_tool("sync_data", {"product_ids": [101, 999], "wait": wait})
            assert result.is_error, result.structured_content
            assert "999" in text_of(result)
            assert "list_products" in text_of(result)
        known = await call(client, "sync_data", {"product_ids": [101]})
    assert run_rows(settings) == {known["run_id"]: "success"}  # no run for the refused calls
    assert {r.path for r in sandbox.requests.records(LISTING)} == {"products/101/exploratory_tests"}


async def test_cancelling_one_caller_does_not_kill_a_joined_caller(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY, SLOW)
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        owner = asyncio.create_task(client.call_tool("sync_data", {}))
        await asyncio.sleep(0.2)
        joiner = asyncio.create_task(client.call_tool("sync_data", {}))
        await asyncio.sleep(0.3)
        assert not joiner.done()
        owner.cancel()
        await asyncio.wait({owner, joiner}, timeout=30.0)
        status = await call(client, "sync_status")
    assert owner.cancelled()
    assert status["lock_holder"] is None
    assert joiner.done()
    # The joiner asked for nothing to be cancelled: it must get an answer (the run's result, or
    # an error result saying the run was cancelled), not a cancellation of its own call.
    assert not joiner.cancelled(), "the joined sync_data call was cancelled with the owner's"
    assert joiner.exception() is None


async def test_a_wrong_token_fails_the_sync_and_shows_unauthorized(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    wrong = "wrong-token-0123456789abcdef"
    settings = make_settings(sandbox, tmp_path / "home", customer_api_token=wrong)
    async with connect(settings) as client:
        result = await client.call_tool("sync_data", {})
        status_result = await client.call_tool("sync_status", {})
    assert not result.is_error, text_of(result)
    answer = result.structured_content or {}
    assert answer["result"]["status"] == "failed"
    assert answer["result"]["errors"]
    status = status_result.structured_content or {}
    assert status["upstream"]["state"] == "unauthorized"
    assert status["failed_runs"] == 1
    assert status["counts"] == {"products": 0, "features": 0, "tests": 0, "bugs": 0}
    for shown in (text_of(result), text_of(status_result), json.dumps(answer), json.dumps(status)):
        assert wrong not in shown
        assert sandbox.token not in shown


async def test_tool_annotations_and_output_schemas(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    async with connect(make_settings(sandbox, tmp_path / "home")) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert QUERY_TOOLS | {"sync_data", "sync_status"} <= set(tools)
    for name in QUERY_TOOLS | {"sync_status"}:
        hints = tools[name].annotations
        assert hints is not None
        assert hints.read_only_hint is True, name
        assert hints.idempotent_hint is True, name
    sync = tools["sync_data"].annotations
    assert sync is not None
    flags = (sync.read_only_hint, sync.destructive_hint, sync.idempotent_hint, sync.open_world_hint)
    assert flags == (False, False, True, True)
    for name, tool in tools.items():
        assert tool.output_schema, f"{name} has no output schema"
        assert tool.description, f"{name} has no description"
    assert "run_id" in json.dumps(tools["sync_data"].output_schema)
    assert "bug_counts" in json.dumps(tools["get_test"].output_schema)


def decimals(value: float) -> int:
    """How many decimals ``value`` is written with in JSON."""
    text = json.dumps(value)
    return len(text.split(".", 1)[1]) if "." in text else 0


async def test_sync_answers_are_compact_json_with_rounded_numbers(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY, SandboxKnobs(latency_ms=3))
    async with connect(make_settings(sandbox, tmp_path / "home")) as client:
        synced = await client.call_tool("sync_data", {})
        await client.call_tool("sync_data", {})  # a second run: a mean over two durations
        status = await client.call_tool("sync_status", {})
        products = await client.call_tool("list_products", {})
    for result in (synced, status, products):
        assert not result.is_error, text_of(result)
        text = text_of(result)
        assert json.loads(text) == result.structured_content
        assert "\n" not in text, text[:200]  # compact, like the others
        assert '": ' not in text, text[:200]
    report = status.structured_content or {}
    assert report["upstream"]["latency_ms"] is not None
    assert decimals(report["upstream"]["latency_ms"]) <= 1
    assert report["period_success_rate"] is not None
    assert decimals(report["period_success_rate"]) <= 4
    assert decimals(report["period_mean_duration_seconds"]) <= 3
    assert all(decimals(run["duration_seconds"]) <= 3 for run in report["last_runs"])
    freshness = (products.structured_content or {})["freshness"]
    assert decimals(freshness["age_seconds"]) <= 3


async def test_sync_status_of_many_products_stays_under_the_ceiling(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    many = DatasetSpec(
        seed=6, products=40, section_products=0, tests_per_product=1, bugs_per_test=0
    )
    sandbox = make_sandbox(many)
    settings = make_settings(sandbox, tmp_path / "home", max_answer_bytes=4_000)
    async with connect(settings) as client:
        await call(client, "sync_data", {})
        result = await client.call_tool("sync_status", {})
    assert not result.is_error, text_of(result)
    report = result.structured_content or {}
    assert len(text_of(result).encode()) <= 4_000
    assert report["truncated"] is True
    assert 0 < len(report["products"]) < 40
    assert report["counts"]["products"] == 40  # the counts still cover everything
    assert "products" in report["hint"]
