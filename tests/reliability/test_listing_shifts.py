"""A product's test list moves while a window of its pages is answered (issue 17).

A full listing asks for a window of pages at once; they are answered one after another, so a
test deleted (or added) upstream between two of those answers shifts the pages answered after it:
one test slides onto a page already answered (skipped), or one comes twice. ``OrderedPages``, an
ASGI gate in front of the sandbox, holds one page's answer until another page was answered and
the change was made, so the shift happens exactly between them; then the mirror must equal the
sandbox after the run (healed), or the run is ``partial`` with the reason and the next plain sync
lists the product in full and heals it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from testio_mirror.app import open_app
from testio_mirror.sandbox import SandboxConfig, SandboxServer
from testio_mirror.sandbox.dataset import DatasetSpec
from testio_mirror.sync.models import SyncStatus
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.reliability_ledger import Ledger, Scale
from tests.helpers.settings import PAGE_SIZE, make_settings
from tests.helpers.sync_runs import listing_pages, pages_asked, run_sync

AREA = "listing shifts"
# One product of ten full pages: page 1 alone, then the window of pages 2 to 9, then 10 to 17.
SPEC = DatasetSpec(seed=17, products=1, section_products=0, tests_per_product=250, bugs_per_test=0)
HELD_SECONDS = 5.0  # how long a held answer waits for its page before going anyway

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Between:
    """Run ``change`` after page ``first`` was answered and before page ``then`` is."""

    first: int
    then: int
    change: Callable[[], None]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    kept: bool = False  # page ``then`` was answered after the change


class OrderedPages:
    """An ASGI gate that orders the answers of one product's listing pages (``per_page`` the
    listing's): ``between`` holds a page until another was answered and a change was made;
    ``after_each``, while set, runs after every answer of that listing (probes included)."""

    def __init__(self, app: Asgi, product_id: int) -> None:
        self._app = app
        self._path = f"/products/{product_id}/exploratory_tests"
        self.between: Between | None = None
        self.after_each: Callable[[], None] | None = None
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(self._path):
            await self._app(scope, receive, send)
            return
        query = parse_qs(scope["query_string"].decode())
        page, per_page = int(query["page"][0]), int(query["per_page"][0])
        plan = self.between if per_page == PAGE_SIZE else None
        if plan is not None and page == plan.then and not plan.kept:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(plan.done.wait(), HELD_SECONDS)
            plan.kept = plan.done.is_set()
        await self._app(scope, receive, send)
        self.answered += 1
        if plan is not None and page == plan.first and not plan.done.is_set():
            plan.change()
            plan.done.set()
        if self.after_each is not None:
            self.after_each()


def gated_sandbox() -> tuple[SandboxServer, OrderedPages, int]:
    server = SandboxServer(SandboxConfig(dataset=SPEC))
    (product_id,) = (p["id"] for p in server.world.products())
    gate = OrderedPages(server.app, product_id)
    server.app = gate  # type: ignore[assignment]
    return server, gate, product_id


def upstream_change(
    server: SandboxServer, product_id: int, doomed: int | None
) -> Callable[[], None]:
    """Delete ``doomed`` upstream, or add a test at the product's head when it is None."""

    def change() -> None:
        if doomed is not None:
            server.world.remove_test(doomed)
        else:
            server.world.add_test(product_id)

    return change


def ordered_tests(server: SandboxServer, product_id: int) -> list[int]:
    return [t["id"] for t in server.world.tests_page(product_id, 1, 10_000)]


def stored_tests(database: Path) -> list[int]:
    """Every live test row of the mirror (an id stored twice would show twice)."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT id FROM tests WHERE deleted_at IS NULL").fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize(
    "position",
    [
        10,  # on page 1, read alone before the window
        60,  # on page 3, inside the window, the page before the boundary that shifts
        74,  # page 3's last test: the edge of the boundary itself
    ],
)
async def test_a_test_deleted_between_two_answers_of_a_window_is_healed_in_the_run(
    position: int, tmp_path: Path, ledger: Ledger
) -> None:
    server, gate, product_id = gated_sandbox()
    with server:
        order = ordered_tests(server, product_id)
        doomed = order[position]
        skipped = order[3 * PAGE_SIZE]  # page 4's first test slides onto page 3, answered
        gate.between = Between(3, 4, lambda: server.world.remove_test(doomed))
        settings = make_settings(server, tmp_path / "home")
        async with open_app(settings) as app:
            first = await run_sync(app)
            after_first = mirror_differences(settings.database_path, server.world)
            second = await run_sync(app)
            after_second = mirror_differences(settings.database_path, server.world)
        held = gate.between.kept
        stored = stored_tests(settings.database_path)
    ledger.record(AREA, trials=1, faults=1, mismatches=len(after_first))
    assert held, "page 4 was not answered after page 3 and the deletion"
    assert (first.status, first.errors) == (SyncStatus.SUCCESS, []), first
    assert after_first == [], f"deleted {doomed}, {skipped} skipped: {after_first}"
    assert skipped in stored
    assert doomed not in stored
    assert second.status == SyncStatus.SUCCESS
    assert after_second == []


async def test_a_test_added_between_two_answers_is_stored_once_and_nothing_is_skipped(
    tmp_path: Path, ledger: Ledger
) -> None:
    server, gate, product_id = gated_sandbox()
    with server:
        before = ordered_tests(server, product_id)
        added: list[int] = []
        gate.between = Between(3, 4, lambda: added.append(server.world.add_test(product_id)))
        settings = make_settings(server, tmp_path / "home")
        async with open_app(settings) as app:
            first = await run_sync(app)
            stored = stored_tests(settings.database_path)
            second = await run_sync(app)
            after_second = mirror_differences(settings.database_path, server.world)
        held = gate.between.kept
    ledger.record(AREA, trials=1, faults=1, mismatches=len(after_second))
    assert held
    assert len(added) == 1
    assert first.status == SyncStatus.SUCCESS, first
    # Page 3's last test came again on page 4: stored once. Every test there when the listing
    # began is stored; the newcomer sits on page 1, answered before it came: the next sync's.
    assert sorted(stored) == sorted(before)
    assert second.status == SyncStatus.SUCCESS
    assert after_second == []


async def test_seeded_deletions_and_additions_between_any_two_answers_cost_nothing(
    tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    """Seeded trials: two neighbouring pages of the first window, answered in either order, with
    a test deleted (anywhere before the later page) or added between their answers."""
    rng = random.Random(1717)
    problems: list[str] = []
    trials = 4 * scale.fault_rounds
    for trial in range(trials):
        server, gate, product_id = gated_sandbox()
        with server:
            order = ordered_tests(server, product_id)
            page = rng.randint(2, 8)
            first, then = (page, page + 1) if rng.random() < 0.5 else (page + 1, page)
            deleting = rng.random() < 0.5
            doomed = order[rng.randrange(max(first, then) * PAGE_SIZE)]
            change = upstream_change(server, product_id, doomed if deleting else None)
            gate.between = Between(first, then, change)
            settings = make_settings(server, tmp_path / f"home-{trial}")
            async with open_app(settings) as app:
                result = await run_sync(app)
            stored = stored_tests(settings.database_path)
            wanted = set(order) - {doomed} if deleting else set(order)
            done = f"deleted {doomed}" if deleting else "added a test"
            what = f"trial {trial}: {done} between page {first} and page {then}"
            if not gate.between.kept:
                problems.append(f"{what}: page {then} was not answered after the change")
            if result.status is not SyncStatus.SUCCESS:
                problems.append(f"{what}: {result.status.value} {result.errors}")
            if sorted(stored) != sorted(wanted):
                missing = sorted(wanted - set(stored))
                extra = sorted(set(stored) - wanted)
                problems.append(f"{what}: missing {missing}, extra {extra}")
    ledger.record(AREA, trials=trials, faults=trials, mismatches=len(problems))
    assert problems == []


async def test_a_list_that_keeps_moving_ends_partial_and_the_next_sync_lists_it_in_full(
    tmp_path: Path, ledger: Ledger
) -> None:
    server, gate, product_id = gated_sandbox()
    with server:
        removed: list[int] = []

        def remove_the_newest() -> None:
            # After page 1, every answer of the listing sees the list one test shorter.
            if gate.answered > 1:
                newest = ordered_tests(server, product_id)[0]
                server.world.remove_test(newest)
                removed.append(newest)

        gate.after_each = remove_the_newest
        settings = make_settings(server, tmp_path / "home")
        async with open_app(settings) as app:
            first = await run_sync(app)
            gate.after_each = None
            since = time.time()
            second = await run_sync(app)
            after_second = mirror_differences(settings.database_path, server.world)
        relisted = listing_pages(server, product_id, since)
        remaining = len(ordered_tests(server, product_id))
    ledger.record(AREA, trials=1, faults=len(removed), mismatches=len(after_second))
    reason = (
        f"the test list of product {product_id} kept moving while it was read; the next sync "
        "lists it in full"
    )
    assert removed
    assert first.status == SyncStatus.PARTIAL, first
    assert reason in first.errors, first.errors
    # The plain sync after it lists every page, as a first sync would, and heals the mirror.
    last_page = remaining // PAGE_SIZE + 1
    assert relisted == pages_asked(last_page), relisted
    assert second.status == SyncStatus.SUCCESS, second
    assert after_second == []
