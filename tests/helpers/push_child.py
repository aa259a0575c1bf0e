"""A child process for the push's SIGKILL tests (tests/reliability/test_push_exactly_once.py):
it stores triage changes in the mirror named by the ``TESTIO_`` environment, then pushes them,
and can stop dead at an exact point of one change so that its parent kills it there.

Run as a script (``python tests/helpers/push_child.py ...``; it imports only the package)::

    push_child.py --change 101:accept --change 102:reject:not_reproducible --stop claim --target 1

It writes one line to stdout at each step, flushed, for the parent to wait for:

- ``ENQUEUED <id>,<id>,...``: the changes are stored (committed), the push starts next;
- ``AT claim <id>``: the target change's ``sending`` is committed, its PUT not sent yet;
- ``AT record_applied <id>``: TestIO applied and answered the target's PUT, its answer not
  recorded yet;
- ``DONE <json>``: the push ended (its ``PushSummary``); not written when stopped at a point.

At a point the whole process blocks (a blocking sleep, so no other task of its event loop runs
either) until the parent kills it: nothing after the point can happen.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from testio_mirror.app import open_app
from testio_mirror.settings import load_settings
from testio_mirror.store.outbox import Outbox
from testio_mirror.store.outbox_records import Change, ChangeRequest
from testio_mirror.triage import TRIAGE_ACTIONS, TriageAction

STOP_POINTS = ("none", "claim", "record_applied")
BLOCK_SECONDS = 600.0  # far longer than any test waits: the parent kills it before


def say(line: str) -> None:
    print(line, flush=True)


def block_here(point: str, change_id: int) -> None:
    say(f"AT {point} {change_id}")
    time.sleep(BLOCK_SECONDS)
    raise SystemExit(f"not killed at {point} of change {change_id}")


def parse_change(text: str) -> ChangeRequest:
    """``BUG:ACTION`` or ``BUG:reject:REASON``."""
    bug, action, *rest = text.split(":")
    if action not in TRIAGE_ACTIONS:
        raise SystemExit(f"unknown action {action!r}")
    chosen: TriageAction = action  # type: ignore[assignment]
    return ChangeRequest(int(bug), chosen, reason=rest[0] if rest else None)


def stop_after_claim(outbox: Outbox, target: Callable[[], int | None]) -> None:
    """The target change blocks right after its claim committed."""
    claim = outbox.claim

    async def claiming(change_id: int, **kwargs: Any) -> Change | None:
        claimed = await claim(change_id, **kwargs)
        if claimed is not None and change_id == target():
            block_here("claim", change_id)
        return claimed

    outbox.claim = claiming  # type: ignore[method-assign]


def stop_before_recording(outbox: Outbox, target: Callable[[], int | None]) -> None:
    """The target change blocks when TestIO's answer arrived, before it is recorded."""
    record: Callable[..., Awaitable[Change]] = outbox.record_applied

    async def recording(change_id: int, *args: Any, **kwargs: Any) -> Change:
        if change_id == target() and kwargs.get("via", "answer") == "answer":
            block_here("record_applied", change_id)
        return await record(change_id, *args, **kwargs)

    outbox.record_applied = recording  # type: ignore[method-assign]


async def main(changes: list[ChangeRequest], stop: str, target_index: int) -> None:
    settings = load_settings()
    async with open_app(settings) as app:
        outbox = app.mirror.outbox
        ids: list[int] = []

        def target() -> int | None:
            return ids[target_index] if ids else None

        if stop == "claim":
            stop_after_claim(outbox, target)
        elif stop == "record_applied":
            stop_before_recording(outbox, target)
        stored = await outbox.enqueue(
            changes, requested_by="kill-test", client="push_child", strategy="manual"
        )
        ids.extend(change.id for change in stored)
        say("ENQUEUED " + ",".join(str(i) for i in ids))
        summary = await app.sync.pusher.push()
        say("DONE " + summary.model_dump_json())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--change", action="append", required=True, type=parse_change)
    parser.add_argument("--stop", choices=STOP_POINTS, default="none")
    parser.add_argument("--target", type=int, default=0, help="index of the change to stop at")
    args = parser.parse_args()
    asyncio.run(main(args.change, args.stop, args.target))
