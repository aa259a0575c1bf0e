"""SyncService against the sandbox over real HTTP: one run at a time in a process (joining it,
or queueing after it when it does less), a refused token, cancelling a run and resuming after it;
and the order phases are put in."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from testio_mirror.app import open_app
from testio_mirror.sandbox import DatasetSpec, SandboxKnobs
from testio_mirror.sync.models import (
    PHASE_ORDER,
    SyncPhase,
    SyncResult,
    SyncStatus,
    SyncTrigger,
)
from testio_mirror.sync.service import normalize_phases
from tests.conftest import SandboxFactory
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.settings import PAGE_SIZE, make_settings
from tests.helpers.sync_runs import (
    ALL_PHASES,
    MEDIUM,
    WRONG_TOKEN,
    Progress,
    assert_progress,
    listing_pages,
    pages_asked,
    run_sync,
)

# -- joining and starting --------------------------------------------------------------------------


async def test_two_concurrent_syncs_in_one_process_share_one_run(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home")
    async with open_app(settings) as app:
        first, second = await asyncio.gather(run_sync(app), run_sync(app))
        runs = await app.mirror.sync_state.events(kind="run")
    assert first.run_id == second.run_id
    assert first == second
    assert len(sandbox.requests.records("products")) == 1
    assert [r.run_id for r in runs] == [first.run_id]


async def test_a_listener_of_a_runs_end_that_asks_for_a_sync_gets_a_new_run(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    """Told that a run ended, a listener may start the next one (the server's refresh does):
    it must get a new run, not join the one that is only telling its listeners."""
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home")
    following: list[str] = []
    async with open_app(settings) as app:

        async def sync_again(result: SyncResult) -> None:
            if not following:
                following.append(result.run_id)
                again = await asyncio.wait_for(
                    app.sync.execute_sync(phases=["products"], wait_for_lock=False), 30
                )
                following.append(again.run_id)

        app.sync.finish_listeners.append(sync_again)
        first = await run_sync(app)
    assert following[0] == first.run_id
    assert len(following) == 2, following
    assert following[1] != first.run_id


async def test_start_sync_starts_once_and_then_joins(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home")
    async with open_app(settings) as app:
        run_id, joined = app.sync.start_sync(trigger=SyncTrigger.TOOL)
        assert joined is False
        assert app.sync.start_sync() == (run_id, True)
        view = app.sync.current
        assert view is not None
        assert view.run_id == run_id
        # Joining needs the run in flight to cover what is asked: the same default phases do.
        result = await run_sync(app, phases=None)
        assert app.sync.current is None
        fresh_id, joined = app.sync.start_sync(phases=[SyncPhase.PRODUCTS])
        assert (fresh_id != run_id, joined) == (True, False)
        assert (await run_sync(app, phases=[SyncPhase.PRODUCTS])).run_id == fresh_id
    assert result.run_id == run_id
    assert result.trigger is SyncTrigger.TOOL
    assert result.status is SyncStatus.SUCCESS
    assert len(sandbox.requests.records("products")) == 2


# -- how a run ends --------------------------------------------------------------------------------


async def test_a_wrong_token_fails_the_run_and_names_the_setting(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home", customer_api_token=WRONG_TOKEN)
    async with open_app(settings) as app:
        result = await run_sync(app, reports=False)
        errors = await app.mirror.sync_state.events(run_id=result.run_id, kind="error")
    assert result.status is SyncStatus.FAILED
    assert any("TESTIO_CUSTOMER_API_TOKEN" in e for e in result.errors), result.errors
    assert WRONG_TOKEN not in " ".join(result.errors)
    assert result.phases_completed == []
    assert [e.message for e in errors] == result.errors
    # The one refused request is counted, though its phase never completed.
    assert len(sandbox.requests.records("products")) == 1
    assert result.api_requests == result.stats["products"].api_requests == 1


async def test_cancel_keeps_committed_pages_releases_the_lock_and_the_next_sync_resumes(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    spec = DatasetSpec(seed=4, products=1, section_products=0, tests_per_product=300)
    sandbox = make_sandbox(spec, SandboxKnobs(latency_ms=30))
    settings = make_settings(sandbox, tmp_path / "home")
    two_pages = asyncio.Event()

    def hook(done: int, total: int, message: str) -> None:
        if message == "product 101: page 2":
            two_pages.set()

    progress = Progress(hook)
    async with open_app(settings) as app:
        task = asyncio.create_task(
            app.sync.execute_sync(phases=ALL_PHASES, trigger=SyncTrigger.CLI, on_progress=progress)
        )
        await asyncio.wait_for(two_pages.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert progress.seen
        assert_progress(progress.seen)
        runs = await app.mirror.sync_state.events(kind="run")
        assert [r.status for r in runs] == ["cancelled"]
        assert runs[0].data is not None
        cancelled = runs[0].data["result"]
        # Every request made is counted, the listing's too: at least one per step reported.
        assert cancelled["api_requests"] >= progress.seen[-1][0]
        assert cancelled["stats"]["new_tests"]["api_requests"] >= 2
        assert runs[0].finished_at is not None
        assert runs[0].duration_seconds is not None
        assert app.sync.lock.holder() is None
        assert app.sync.current is None
        state = await app.mirror.sync_state.listing_state(101)
        assert state is not None
        assert not state.complete
        assert state.next_page >= 3
        kept = (await app.mirror.sync_state.counts())["tests"]
        assert kept == (state.next_page - 1) * PAGE_SIZE

        sandbox.knobs.latency_ms = 0
        # The cancelled run's last request may still be logged late: go by arrival time.
        resumed_at = time.time()
        resumed = await run_sync(app, wait_for_lock=False)
        runs = await app.mirror.sync_state.events(kind="run")
    assert resumed.status is SyncStatus.SUCCESS, resumed.errors
    # Full from where it stopped to the (empty) page 13, then one look at the head (page 1).
    resumed_pages = [1, *pages_asked(13, start=state.next_page)]
    assert listing_pages(sandbox, 101, since=resumed_at) == resumed_pages
    assert resumed.stats["new_tests"].inserted == 300 - kept
    assert [r.status for r in runs] == ["success", "cancelled"]
    assert mirror_differences(settings.database_path, sandbox.world, bugs=True) == []


# -- phases asked for ------------------------------------------------------------------------------


def test_phases_are_put_in_their_one_order_without_duplicates() -> None:
    asked = [SyncPhase.BUGS, "new_tests", SyncPhase.PRODUCTS, "bugs"]
    assert normalize_phases(asked) == [SyncPhase.PRODUCTS, SyncPhase.NEW_TESTS, SyncPhase.BUGS]
    assert normalize_phases(None) == [SyncPhase.PRODUCTS, SyncPhase.FEATURES, SyncPhase.NEW_TESTS]
    assert normalize_phases(reversed(PHASE_ORDER)) == list(PHASE_ORDER)
    assert normalize_phases([]) == []
    with pytest.raises(ValueError, match="tests"):
        normalize_phases(["tests"])
