"""The phases against the sandbox over real HTTP: their one order, scope and options, one
product's failure making a run partial without stopping the others."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from testio_mirror.app import open_app
from testio_mirror.sandbox import FaultRule
from testio_mirror.sync.models import SyncOptions, SyncPhase, SyncScope, SyncStatus
from tests.conftest import SandboxFactory
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import ALL_PHASES, MEDIUM, listing_pages, run_sync


async def test_phases_scope_and_options(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(sandbox, tmp_path / "home")
    database = settings.database_path
    world = sandbox.world
    async with open_app(settings) as app:
        shuffled = [SyncPhase.BUGS, "new_tests", SyncPhase.PRODUCTS, SyncPhase.FEATURES]
        only_102 = await run_sync(app, phases=shuffled, scope=SyncScope(product_ids=(102,)))
        assert only_102.phases == only_102.phases_completed == list(ALL_PHASES)
        assert only_102.status is SyncStatus.SUCCESS, only_102.errors
        with sqlite3.connect(database) as conn:
            owners = conn.execute("SELECT DISTINCT product_id FROM tests").fetchall()
            bug_owners = conn.execute("SELECT DISTINCT product_id FROM bugs").fetchall()
        assert owners == bug_owners == [(102,)]
        assert only_102.stats["new_tests"].inserted == world.test_count(102)
        assert listing_pages(sandbox, 101) == listing_pages(sandbox, 103) == []
        assert sandbox.requests.records("products/10[13]/*") == []

        sandbox.requests.clear()
        tests_only = await run_sync(app, phases=[SyncPhase.NEW_TESTS])
        assert tests_only.phases == tests_only.phases_completed == [SyncPhase.NEW_TESTS]
        assert tests_only.status is SyncStatus.SUCCESS, tests_only.errors
        asked = {r.path for r in sandbox.requests.records()}
        assert asked == {f"products/{pid}/exploratory_tests" for pid in (101, 102, 103)}
        # The tests are complete; the other products' features were never in scope.
        assert mirror_differences(database, world) == ["feature ids differ"]

        world.evolve(2)
        nuked = await run_sync(app, phases=None, options=SyncOptions(nuke=True))
        counts = await app.mirror.sync_state.counts()
        runs = await app.mirror.sync_state.events(kind="run")
    assert nuked.status is SyncStatus.SUCCESS, nuked.errors
    assert any("nuke" in w for w in nuked.warnings)
    assert counts["bugs"] == 0  # emptied, and this run had no bugs phase
    assert nuked.stats["new_tests"].inserted == len(world.snapshot()["tests"])
    assert mirror_differences(database, world) == []
    assert len(runs) == 3  # the history survives a nuke


async def test_a_503_burst_on_one_product_is_partial_and_the_next_sync_heals_it(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    sandbox.faults.add(
        FaultRule(kind="error", status=503, path="products/102/exploratory_tests", times=None)
    )
    settings = make_settings(sandbox, tmp_path / "home")
    async with open_app(settings) as app:
        broken = await run_sync(app)
        states = await app.mirror.sync_state.listing_states()
        assert broken.status is SyncStatus.PARTIAL
        assert broken.errors
        assert all("102" in e for e in broken.errors), broken.errors
        assert any("tests of product 102" in e for e in broken.errors), broken.errors
        assert states[101].complete
        assert states[103].complete
        assert 102 not in states or not states[102].complete
        assert broken.phases_completed == list(ALL_PHASES)

        sandbox.faults.clear()
        healed = await run_sync(app)
        runs = await app.mirror.sync_state.events(kind="run")
    assert healed.status is SyncStatus.SUCCESS, healed.errors
    assert mirror_differences(settings.database_path, sandbox.world, bugs=True) == []
    assert [r.status for r in runs] == ["success", "partial"]
