"""``testio-mirror triage``, ``changes`` and ``resolve``: the outbox from a terminal.

``triage`` checks one change (the reject reason against the account's, the bug read through),
shows it, asks on a terminal (``--yes`` skips the question; without a terminal ``--yes`` is
required), stores it and pushes it. Exit codes: 0 every change applied, 3 some wait (pending, or
a conflict for ``resolve``), 1 some failed; errors as every command's.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from testio_mirror.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from testio_mirror.settings import Settings, check_mirror_home
from testio_mirror.triage import (
    ChangeState,
    ConflictResolution,
    ConflictStrategy,
    TriageAction,
    TriageState,
)

if TYPE_CHECKING:
    from rich.console import Console

    from testio_mirror.store.outbox_records import Change
    from testio_mirror.sync.models import PushSummary

CLI_CLIENT = "cli"
Ask = Callable[[str], bool]


def terminal_ask(question: str) -> bool:
    """Ask ``question`` on the terminal; yes only for an explicit y or yes."""
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def run_triage(
    settings: Settings,
    *,
    bug_id: int,
    action: TriageAction,
    reason: str | None,
    comment: str | None,
    strategy: ConflictStrategy | None,
    yes: bool,
    out: Console,
    ask: Ask | None = None,
) -> int:
    """Check, confirm, store and push one triage change; returns the exit code."""
    check_mirror_home(settings)
    if not yes and ask is None and not sys.stdin.isatty():
        out.print("testio-mirror triage: no terminal to ask on: add --yes to send the change")
        return EXIT_USAGE
    return asyncio.run(
        _triage(
            settings,
            bug_id,
            action,
            reason,
            comment,
            strategy or settings.conflict_strategy,
            None if yes else (ask or terminal_ask),
            out,
        )
    )


async def _triage(
    settings: Settings,
    bug_id: int,
    action: TriageAction,
    reason: str | None,
    comment: str | None,
    strategy: ConflictStrategy,
    ask: Ask | None,
    out: Console,
) -> int:
    from testio_mirror.app import open_app
    from testio_mirror.store.outbox_records import ChangeRequest
    from testio_mirror.sync.triage_desk import TriageDesk

    async with open_app(settings) as app:
        online = settings.customer_api_token is not None
        desk = TriageDesk(app.mirror, app.client, app.sync.pusher, online=online)
        plan = await desk.plan([ChangeRequest(bug_id, action, reason, comment)])
        for planned in plan:
            out.print(f"To send: {planned.describe()}", highlight=False)
        if ask is not None and not ask("Send this change to TestIO?"):
            out.print("Nothing was stored or sent.")
            return EXIT_OK
        outcome = await desk.submit(
            plan, strategy=strategy, requested_by=_actor(), client=CLI_CLIENT
        )
        _print_changes(out, outcome.changes, outcome.push, outcome.note)
        return _exit_code(outcome.changes)


def run_changes(
    settings: Settings, *, state: ChangeState | None, as_json: bool, out: Console
) -> int:
    """Print the outbox's changes, newest first (``--json``: what ``list_changes`` gives)."""
    check_mirror_home(settings)
    changes = asyncio.run(_all_changes(settings, state))
    if as_json:
        import json

        from testio_mirror.server.triage_answers import ChangeView

        views = [ChangeView.of(c, events=True).model_dump(mode="json") for c in changes]
        out.print_json(json.dumps({"changes": views}))
        return EXIT_OK
    if not changes:
        out.print("No triage changes" + (f" in state {state}." if state else " yet."))
        return EXIT_OK
    _print_table(out, changes)
    return EXIT_OK


async def _all_changes(settings: Settings, state: ChangeState | None) -> list[Change]:
    from testio_mirror.store.mirror import Mirror
    from testio_mirror.store.outbox import MAX_LIMIT

    # Read only: listing never writes (another process may hold the write lock).
    mirror = await Mirror.open(settings, None, read_only=True)
    try:
        found: list[Change] = []
        cursor: str | None = None
        while True:
            page = await mirror.outbox.list_changes(state, limit=MAX_LIMIT, cursor=cursor)
            found += page.items
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor
    finally:
        await mirror.close()


def run_resolve(
    settings: Settings, *, change_id: int, resolution: ConflictResolution, out: Console
) -> int:
    """Settle a conflict; ``keep_local`` then pushes the change. Returns the exit code."""
    check_mirror_home(settings)
    return asyncio.run(_resolve(settings, change_id, resolution, out))


async def _resolve(
    settings: Settings, change_id: int, resolution: ConflictResolution, out: Console
) -> int:
    from testio_mirror.app import open_app
    from testio_mirror.sync.triage_desk import TriageDesk

    async with open_app(settings) as app:
        online = settings.customer_api_token is not None
        desk = TriageDesk(app.mirror, app.client, app.sync.pusher, online=online)
        await app.mirror.outbox.resolve(change_id, resolution, by=_actor(), strategy="manual")
        push, note = (None, None)
        if resolution == "keep_local":
            push, note = await desk.push([change_id])
        changes = await desk.current([change_id])
        _print_changes(out, changes, push, note)
        return _exit_code(changes)


def _exit_code(changes: Sequence[Change]) -> int:
    states = {change.state for change in changes}
    if "failed" in states:
        return EXIT_FAILED
    if states & {"pending", "sending", "conflict"}:
        return EXIT_PARTIAL
    return EXIT_OK


_SAID: dict[ChangeState, str] = {
    "applied": "applied in TestIO",
    "pending": "stored, not sent yet: the next push (sync) sends it",
    "sending": "sent, answer lost: the next push reads the bug and settles it",
    "conflict": "parked: TestIO changed the bug meanwhile; "
    "`testio-mirror resolve {id} keep_local|keep_server` settles it",
    "failed": "failed: {error}",
    "cancelled": "cancelled: TestIO's decision kept",
}


def _print_changes(
    out: Console, changes: Sequence[Change], push: PushSummary | None, note: str | None
) -> None:
    for change in changes:
        said = _SAID[change.state].format(id=change.id, error=change.last_error or "")
        now = change.bug_now.status if change.bug_now else "not mirrored"
        out.print(
            f"Change {change.id}: {change.action} bug {change.bug_id}: {said} (bug now: {now})",
            highlight=False,
        )
        if change.state == "conflict" and change.server_side is not None:
            out.print(f"  yours: {_side(change.base)}; TestIO: {_side(change.server_side)}")
    if push is not None and push.stopped:
        out.print(f"The push stopped: {push.stopped}", highlight=False)
    if note:
        out.print(note, highlight=False)


def _side(state: TriageState) -> str:
    flags = [n for n, on in (("known", state.known), ("fixed", state.fixed)) if on]
    if state.exported:
        flags.append("exported")
    return ", ".join([state.status or "no status", *flags])


def _print_table(out: Console, changes: Sequence[Change]) -> None:
    from rich.table import Table

    table = Table(title="Triage changes (newest first)", title_justify="left")
    for column in ("change", "bug", "action", "state", "bug now", "asked", "by", "note"):
        table.add_column(column)
    for change in changes:
        note = change.last_error or (change.resolution or "")
        if change.state == "conflict" and change.server_side is not None:
            note = f"TestIO: {_side(change.server_side)}"
        table.add_row(
            str(change.id),
            str(change.bug_id),
            change.action + (f" ({change.reason})" if change.reason else ""),
            change.state,
            _side(change.bug_now) if change.bug_now else "not mirrored",
            change.created_at.strftime("%Y-%m-%d %H:%M"),
            change.requested_by,
            note,
        )
    out.print(table)
