"""The server's background work: start-up sync, refresh loop, backoff, shutdown."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxKnobs
from testio_mirror.server.state import ServerState
from testio_mirror.server.sync_tools import status_report
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.sync.models import SyncResult, SyncStatus, SyncTrigger
from testio_mirror.upstream.models import FINAL_TEST_STATUSES
from tests.conftest import SandboxFactory
from tests.helpers.mcp_session import call_error, connect, run_rows
from tests.helpers.polling import wait_for
from tests.helpers.settings import make_settings

TINY = DatasetSpec(products=2, section_products=0, tests_per_product=6, bugs_per_test=1)


async def _runs(state: ServerState) -> list[tuple[str | None, str | None]]:
    events = await (await state.app()).mirror.sync_state.events(kind="run", limit=50)
    return [(e.trigger, e.status) for e in reversed(events)]


async def test_startup_sync_then_scheduled_refreshes(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(dataset=TINY)
    settings = make_settings(sandbox, tmp_path / "home", refresh_interval_seconds=1)
    state = ServerState(settings)
    state.start()
    try:
        app = await state.app()
        results: list[str] = []

        async def record(result: object) -> None:
            results.append(getattr(result, "trigger", "?"))

        state.run_end_listeners.append(record)
        runs: list[tuple[str | None, str | None]] = []

        async def refreshed() -> bool:
            runs[:] = await _runs(state)
            return (SyncTrigger.SCHEDULE.value, SyncStatus.SUCCESS.value) in runs

        for _ in range(100):
            if await refreshed():
                break
            await asyncio.sleep(0.05)
        assert runs[0] == (SyncTrigger.STARTUP.value, SyncStatus.SUCCESS.value)
        assert (SyncTrigger.SCHEDULE.value, SyncStatus.SUCCESS.value) in runs
        assert state.next_refresh_at is not None
        assert SyncTrigger.SCHEDULE in results
    finally:
        await state.stop()
    assert app.sync.current is None
    assert "running" not in run_rows(settings).values()


async def test_the_startup_sync_brings_the_bugs_of_running_and_recent_tests(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # Tests every one to three days back from now: a 20-day window holds some of them.
    spec = DatasetSpec(
        seed=6, products=2, section_products=0, tests_per_product=30, anchor=utc_now()
    )
    sandbox = make_sandbox(dataset=spec)
    settings = make_settings(sandbox, tmp_path / "home", recent_bug_days=20)
    before = utc_now()
    state = ServerState(settings)
    state.start()
    try:
        app = await state.app()

        async def startup_ended() -> bool:
            return any(t == "startup" and s != "running" for t, s in await _runs(state))

        for _ in range(400):
            if await startup_ended():
                break
            await asyncio.sleep(0.05)
        runs = await _runs(state)
        counts = await app.mirror.sync_state.counts()
    finally:
        await state.stop()
    after = utc_now()
    assert runs == [(SyncTrigger.STARTUP.value, SyncStatus.SUCCESS.value)]
    truth = sandbox.world.snapshot()

    def bugs_of_tests_ending_after(moment: datetime) -> int:
        tests = truth["tests"].items()
        recent = {tid for tid, t in tests if datetime.fromisoformat(t["end_at"]) >= moment}
        return sum(1 for bug in truth["bugs"].values() if bug["test"]["id"] in recent)

    window = timedelta(days=20)
    assert 0 < bugs_of_tests_ending_after(after - window) <= counts["bugs"]
    assert counts["bugs"] <= bugs_of_tests_ending_after(before - window) < len(truth["bugs"])
    assert counts["tests"] == len(truth["tests"])  # the listing is not bounded by the window


async def test_run_end_listeners_hear_every_run_also_those_started_in_the_background(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(dataset=TINY)
    state = ServerState(make_settings(sandbox, tmp_path / "home"), initial_sync=False)
    state.start()
    heard: list[str] = []

    async def record(result: SyncResult) -> None:
        heard.append(result.run_id)

    state.run_end_listeners.append(record)
    try:
        app = await state.app()
        # As sync_data with wait=false starts one: nobody awaits its result.
        run_id, _ = app.sync.start_sync(trigger=SyncTrigger.TOOL)
        assert await asyncio.to_thread(wait_for, lambda: bool(heard))
        await app.sync.execute_sync(phases=["products"], trigger=SyncTrigger.TOOL)
    finally:
        await state.stop()
    assert heard[0] == run_id
    assert len(heard) == 2  # each run once, the awaited one too


async def test_failures_back_off_the_refresh(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    sandbox = make_sandbox(dataset=TINY)
    settings = make_settings(
        sandbox, tmp_path / "home", refresh_interval_seconds=1, customer_api_token="wrong"
    )
    state = ServerState(settings, initial_sync=False)
    state.start()
    try:
        # First wait is one interval; after a failed refresh the next is two.
        assert await asyncio.to_thread(wait_for, lambda: state.next_refresh_at is not None)
        first = state.next_refresh_at
        assert first is not None
        for _ in range(100):
            if state.next_refresh_at != first:
                break
            await asyncio.sleep(0.05)
        second = state.next_refresh_at
        assert second is not None
        assert second != first
        runs = await _runs(state)
        assert (SyncTrigger.SCHEDULE.value, SyncStatus.FAILED.value) in runs
        # The gap before the next try doubled: the loop backs off after a failure.
        gap = (second - first).total_seconds()
        assert gap > 1.5
    finally:
        await state.stop()


async def test_stop_interrupts_a_running_startup_sync_which_is_not_the_last_result(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(dataset=TINY, knobs=SandboxKnobs(latency_ms=200))
    settings = make_settings(sandbox, tmp_path / "home")
    state = ServerState(settings)
    state.start()
    app = await state.app()
    for _ in range(100):
        if app.sync.current is not None:
            break
        await asyncio.sleep(0.01)
    assert app.sync.current is not None
    await state.stop()
    assert app.sync.current is None
    # The server stopping is not a user cancelling: the run is interrupted (and resumable).
    assert list(run_rows(settings).values()) == [SyncStatus.INTERRUPTED.value]
    assert await asyncio.to_thread(app.sync.lock.holder) is None

    again = ServerState(settings, initial_sync=False)
    again.start()
    try:
        report = await status_report(again, 24.0)
    finally:
        await again.stop()
    assert report.last_result is None  # no run ended on its own
    assert (report.total_runs, report.interrupted_runs, report.cancelled_runs) == (1, 1, 0)
    assert report.last_runs[0].status == "interrupted"


async def test_a_mirror_that_cannot_open_leaves_the_server_answering_with_the_reason(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(dataset=TINY)
    home = tmp_path / "not-a-directory"
    home.write_text("a file where the mirror's directory should be\n")
    settings = make_settings(sandbox, home)
    async with connect(settings, initial_sync=True) as client:
        tools = await client.list_tools()
        assert "list_products" in {tool.name for tool in tools.tools}
        for tool in ("list_products", "sync_status", "sync_data"):
            message = await call_error(client, tool)
            # The reason and what to do, without the path (that is for the server's log).
            assert "the mirror's directory cannot be used" in message, (tool, message)
            assert "TESTIO_MIRROR_HOME" in message, (tool, message)
            assert str(home) not in message, (tool, message)
            assert "TESTIO_MIRROR_HOME" in message
    assert home.read_text() == "a file where the mirror's directory should be\n"


async def test_a_tool_called_before_the_mirror_is_open_waits_for_it(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(dataset=TINY)
    settings = make_settings(sandbox, tmp_path / "home")
    state = ServerState(settings, initial_sync=False)
    assert state.opened_app is None
    state.start()
    try:
        assert state.opened_app is None  # opening runs in the background
        app = await state.app()
        assert state.opened_app is app
        assert await app.mirror.sync_state.counts() == {
            "products": 0,
            "features": 0,
            "tests": 0,
            "bugs": 0,
        }
    finally:
        await state.stop()


async def test_an_unreachable_health_check_makes_queries_answer_from_the_mirror(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(dataset=TINY)
    settings = make_settings(sandbox, tmp_path / "home", open_test_ttl_seconds=0)
    state = ServerState(settings, initial_sync=False)
    state.start()
    try:
        app = await state.app()
        result = await app.sync.execute_sync(trigger=SyncTrigger.CLI)
        assert result.status is SyncStatus.SUCCESS
        test_id = min(
            t["id"]
            for t in sandbox.world.snapshot()["tests"].values()
            if t["status"] not in FINAL_TEST_STATUSES
        )
        sandbox.faults.add(FaultRule(kind="error", path="*", status=503, times=None))

        report = await state.health()
        asked = len(sandbox.requests.records())
        answer = await app.mirror.tests.get_test(test_id)

        assert report.state == "unreachable"
        assert len(sandbox.requests.records()) == asked  # the health check said enough
        assert (answer.freshness.source, answer.freshness.stale) == ("mirror", True)
        assert "TestIO unreachable since" in (answer.freshness.stale_reason or "")
    finally:
        await state.stop()
