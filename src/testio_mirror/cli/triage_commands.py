"""The parsers of ``triage``, ``changes`` and ``resolve`` (their work is in ``cli/triage.py``,
loaded only when one of them runs)."""

from __future__ import annotations

import argparse
from typing import Any

from testio_mirror.cli.arguments import whole_number
from testio_mirror.limits import MAX_ID
from testio_mirror.triage import CHANGE_STATES, CONFLICT_STRATEGIES, TRIAGE_ACTIONS


def add_triage_commands(commands: Any) -> dict[str, argparse.ArgumentParser]:
    """Add the three commands to ``commands`` (the subparsers action); returns them by name."""
    triage = commands.add_parser(
        "triage",
        help="accept, reject or mark a bug in TestIO (through the outbox)",
        description="Check one triage change, show it, ask (--yes: do not ask), store it in "
        "the outbox and send it once. Exit 0: applied; 3: waiting (pending, or a conflict "
        "for `resolve`); 1: failed.",
    )
    triage.add_argument("bug", type=whole_number(1, MAX_ID), help="the bug's id")
    triage.add_argument("action", choices=TRIAGE_ACTIONS, help="what to do with it")
    triage.add_argument("--reason", help="reject only, required there: a reject reason key")
    triage.add_argument("--comment", help="reject only: a comment for the tester")
    triage.add_argument(
        "--strategy",
        choices=CONFLICT_STRATEGIES,
        help="if TestIO changed the bug meanwhile (default TESTIO_CONFLICT_STRATEGY)",
    )
    triage.add_argument("--yes", action="store_true", help="send without asking")
    triage.set_defaults(handler=_run_triage)

    changes = commands.add_parser(
        "changes",
        help="list the triage changes of the outbox",
        description="List the outbox's triage changes, newest first (--json: with the audit).",
    )
    changes.add_argument("--state", choices=CHANGE_STATES, help="only changes in this state")
    changes.add_argument("--json", action="store_true", help="print them as JSON")
    changes.set_defaults(handler=_run_changes)

    resolve = commands.add_parser(
        "resolve",
        help="settle a triage change parked as a conflict",
        description="keep_local: send the change anyway; keep_server: drop it, keep TestIO's "
        "decision.",
    )
    resolve.add_argument("change", type=whole_number(1, MAX_ID), help="the change's id")
    resolve.add_argument(
        "resolution",
        choices=("keep_local", "keep_server"),
        help="keep_local: send it anyway; keep_server: drop it",
    )
    resolve.set_defaults(handler=_run_resolve)

    return {"triage": triage, "changes": changes, "resolve": resolve}


def _run_triage(args: argparse.Namespace) -> int:
    from testio_mirror.cli.triage import run_triage
    from testio_mirror.console import stdout_console
    from testio_mirror.settings import load_settings

    return run_triage(
        load_settings(),
        bug_id=args.bug,
        action=args.action,
        reason=args.reason,
        comment=args.comment,
        strategy=args.strategy,
        yes=args.yes,
        out=stdout_console(),
    )


def _run_changes(args: argparse.Namespace) -> int:
    from testio_mirror.cli.triage import run_changes
    from testio_mirror.console import stdout_console
    from testio_mirror.settings import load_settings

    return run_changes(load_settings(), state=args.state, as_json=args.json, out=stdout_console())


def _run_resolve(args: argparse.Namespace) -> int:
    from testio_mirror.cli.triage import run_resolve
    from testio_mirror.console import stdout_console
    from testio_mirror.settings import load_settings

    return run_resolve(
        load_settings(), change_id=args.change, resolution=args.resolution, out=stdout_console()
    )
