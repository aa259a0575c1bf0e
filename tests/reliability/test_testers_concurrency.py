"""Testers stay exactly one row per tester after concurrent syncs of overlapping scopes.

The peer's users table held 26 to 32 rows for 17 testers: an upsert raced. Here, in every
seeded trial, several Apps (each its own database connections, as separate processes have) open
one new mirror home at once and write the same bugs concurrently: syncs of overlapping product
sets (they queue on the sync lock), bug-list read-throughs of overlapping random tests and
single-bug read-throughs, all released together. A new home per trial puts every tester's first
insert inside the race. After a last full sync, ``testers`` must hold exactly one row per
distinct author (normalised) of the sandbox's bugs and nothing else, and every bug must point at
its author's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from testio_mirror.app import App, open_app
from testio_mirror.sandbox import DatasetSpec, SandboxServer
from testio_mirror.settings import Settings
from testio_mirror.store.records import BugFilter
from testio_mirror.store.sqlite.testers_migration import author_key
from testio_mirror.sync.models import PHASE_ORDER, SyncScope, SyncStatus, SyncTrigger
from tests.conftest import SandboxFactory
from tests.helpers.reliability_ledger import Ledger, Scale
from tests.helpers.settings import make_settings

AREA = "testers"
WRITERS = 4
ACTIONS_PER_WRITER = 3
TRIALS_PER_KILL_TRIAL = 4  # quick: 20 trials, long: 200 (Scale.kill_trials is 5 / 50)

Action = Callable[[App], Awaitable[Any]]


def dataset(scale: Scale) -> DatasetSpec:
    return DatasetSpec(
        seed=17,
        products=scale.dataset.products,
        section_products=1,
        tests_per_product=8,
        bugs_per_test=3,
    )


def actions(rng: random.Random, truth: dict[str, Any]) -> list[Action]:
    """A writer's seeded moves: a sync of some products with bugs, the bug lists of some tests,
    some single bugs (each read through from TestIO and written)."""
    product_ids = sorted(truth["products"])
    test_ids = sorted(truth["tests"])
    bug_ids = sorted(truth["bugs"])
    chosen: list[Action] = []
    for _ in range(ACTIONS_PER_WRITER):
        kind = rng.choice(("sync", "bug_lists", "bugs"))
        if kind == "sync":
            scope = SyncScope(product_ids=tuple(rng.sample(product_ids, rng.randint(1, 2))))
            chosen.append(lambda app, scope=scope: _sync(app, scope))
        elif kind == "bug_lists":
            tests = rng.sample(test_ids, rng.randint(2, 12))
            chosen.append(
                lambda app, tests=tests: app.mirror.bugs.list_bugs(BugFilter(test_ids=tests))
            )
        else:
            bugs = rng.sample(bug_ids, 3)
            chosen.append(
                lambda app, bugs=bugs: asyncio.gather(*(app.mirror.bugs.get_bug(b) for b in bugs))
            )
    return chosen


async def _sync(app: App, scope: SyncScope | None) -> None:
    result = await app.sync.execute_sync(phases=PHASE_ORDER, scope=scope, trigger=SyncTrigger.CLI)
    assert result.status is SyncStatus.SUCCESS, result


async def run_trial(settings: Settings, rng: random.Random, truth: dict[str, Any]) -> None:
    """Every writer's moves at once on one new home, then a full sync."""
    async with contextlib.AsyncExitStack() as stack:
        apps = [await stack.enter_async_context(open_app(settings)) for _ in range(WRITERS)]
        start = asyncio.Event()

        async def writer(app: App, moves: list[Action]) -> None:
            await start.wait()
            for move in moves:
                await move(app)

        running = [asyncio.create_task(writer(app, actions(rng, truth))) for app in apps]
        await asyncio.sleep(0)
        start.set()
        await asyncio.gather(*running)
        await _sync(apps[0], None)


def mismatches(path: Path, truth: dict[str, Any]) -> list[str]:
    """What ``testers`` and the bugs' ``tester_id`` get wrong against the sandbox's authors."""
    authors = {author_key(b["author"]["name"]) for b in truth["bugs"].values()}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        testers = conn.execute("SELECT id, key FROM testers").fetchall()
        bugs = conn.execute(
            "SELECT b.id, b.author, t.key FROM bugs b LEFT JOIN testers t ON t.id = b.tester_id "
            "WHERE b.deleted_at IS NULL"
        ).fetchall()
    keys = [key for _, key in testers]
    found = [f"{key}: {keys.count(key)} rows" for key in sorted(set(keys)) if keys.count(key) > 1]
    found += [f"{key}: no row" for key in sorted(authors - set(keys))]
    found += [f"{key}: not an author" for key in sorted(set(keys) - authors)]
    found += [f"bug {i} by {a!r} points at {k!r}" for i, a, k in bugs if author_key(a) != k]
    if len(bugs) != len(truth["bugs"]):
        found.append(f"{len(bugs)} bugs mirrored of {len(truth['bugs'])}")
    return found


async def test_testers_stay_one_row_per_tester_after_concurrent_syncs(
    make_sandbox: SandboxFactory, tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    sandbox: SandboxServer = make_sandbox(dataset(scale))
    truth = sandbox.world.snapshot()
    trials = scale.kill_trials * TRIALS_PER_KILL_TRIAL
    wrong: dict[int, list[str]] = {}
    for trial in range(trials):
        settings = make_settings(
            sandbox,
            tmp_path / f"trial-{trial}",
            sync_lock_timeout_seconds=120.0,
            read_through_timeout_seconds=60.0,
        )
        await run_trial(settings, random.Random(f"testers:{trial}"), truth)
        found = mismatches(settings.database_path, truth)
        if found:
            wrong[trial] = found
    ledger.record(AREA, trials=trials, mismatches=sum(len(f) for f in wrong.values()))
    assert len({author_key(b["author"]["name"]) for b in truth["bugs"].values()}) >= 4
    assert wrong == {}
