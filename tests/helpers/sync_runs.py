"""What the sync tests share: syncs whose progress is checked, and looks at what the sandbox was
asked and what the mirror holds.

Example::

    async with open_app(make_settings(sandbox, tmp_path / "home")) as app:
        result = await run_sync(app, phases=ALL_PHASES)
    assert listing_pages(sandbox, 101) == pages_asked(5)
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qs

from testio_mirror.app import App
from testio_mirror.sandbox import DatasetSpec, SandboxServer
from testio_mirror.sync.listing import FULL_LISTING_WINDOW
from testio_mirror.sync.models import (
    PHASE_ORDER,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncTrigger,
)
from tests.helpers.settings import PAGE_SIZE

ALL_PHASES: tuple[SyncPhase, ...] = PHASE_ORDER
MEDIUM = DatasetSpec(seed=3, products=3, section_products=1, tests_per_product=120, bugs_per_test=2)
WRONG_TOKEN = "not-the-sandbox-token-0123456789"
Hook = Callable[[int, int, str], None]


def assert_progress(seen: Sequence[tuple[int, int]]) -> None:
    """``done`` strictly increases and never passes ``total``."""
    dones = [done for done, _ in seen]
    assert all(a < b for a, b in itertools.pairwise(dones)), dones
    assert all(0 < done <= total for done, total in seen), seen


class Progress:
    """An ``on_progress`` listener that records ``(done, total)`` and may run a hook."""

    def __init__(self, hook: Hook | None = None) -> None:
        self.seen: list[tuple[int, int]] = []
        self.messages: list[str] = []
        self._hook = hook

    def __call__(self, done: int, total: int, message: str) -> None:
        self.seen.append((done, total))
        self.messages.append(message)
        if self._hook is not None:
            self._hook(done, total, message)


async def run_sync(
    app: App,
    phases: Sequence[SyncPhase | str] | None = ALL_PHASES,
    scope: SyncScope | None = None,
    options: SyncOptions | None = None,
    hook: Hook | None = None,
    *,
    reports: bool = True,
    wait_for_lock: bool = True,
) -> SyncResult:
    """One sync whose progress is checked (``reports``: at least one report is expected)."""
    progress = Progress(hook)
    result = await app.sync.execute_sync(
        phases=phases,
        scope=scope,
        options=options,
        trigger=SyncTrigger.CLI,
        on_progress=progress,
        wait_for_lock=wait_for_lock,
    )
    assert_progress(progress.seen)
    assert bool(progress.seen) is reports, progress.messages
    return result


def listing_pages(sandbox: SandboxServer, product_id: int, since: float = 0.0) -> list[int]:
    """The pages of ``PAGE_SIZE`` tests of a product's listing asked for (from ``since``, Unix
    time), in page order (a full listing asks for a window of pages at once)."""
    pages: list[int] = []
    for record in sandbox.requests.records(f"products/{product_id}/exploratory_tests"):
        query = parse_qs(record.query)
        if record.at >= since and query["per_page"] == [str(PAGE_SIZE)]:
            pages.append(int(query["page"][0]))
    return sorted(pages)


def pages_asked(last: int, start: int = 1) -> list[int]:
    """The pages a full listing from ``start`` asks for when page ``last`` ends it: ``start``
    alone, then windows of ``FULL_LISTING_WINDOW`` pages, the one holding ``last`` read whole."""
    end = start
    while end < last:
        end += FULL_LISTING_WINDOW
    return list(range(start, end + 1))


def mirrored(database: Path, test_id: int) -> tuple[str | None, str | None]:
    """A mirrored test's ``(status, deleted_at)``."""
    with sqlite3.connect(database) as conn:
        row = conn.execute(
            "SELECT status, deleted_at FROM tests WHERE id = ?", (test_id,)
        ).fetchone()
    assert row is not None, f"test {test_id} is not in the mirror at all"
    return row[0], row[1]


def only_extra(test_id: int) -> list[str]:
    """What ``mirror_differences`` says when the mirror holds one test too many, nothing else."""
    return [f"test ids differ: missing [], extra [{test_id}]"]
