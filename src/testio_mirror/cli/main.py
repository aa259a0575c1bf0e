"""The ``testio-mirror`` command line (also ``python -m testio_mirror``).

Commands stay thin: parse, call the piece that does the work, show the outcome. Heavy imports
happen inside the command that needs them, so ``--help`` and start-up stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from testio_mirror import __version__
from testio_mirror.cli.arguments import (
    MAX_COUNT,
    MAX_HOURS,
    MAX_LATENCY_MS,
    MAX_PORT,
    number,
    whole_number,
)
from testio_mirror.cli.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from testio_mirror.cli.triage_commands import add_triage_commands
from testio_mirror.errors import MirrorError
from testio_mirror.limits import MAX_ID


def build_parser() -> argparse.ArgumentParser:
    """The ``testio-mirror`` parser, with every command."""
    return build_parsers()[0]


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's own parser by name (a command's bad flag is
    reported with that command's usage)."""
    parser = argparse.ArgumentParser(
        prog="testio-mirror",
        description="A local mirror of a TestIO account for LLM agents (MCP server).",
    )
    parser.add_argument("--version", action="version", version=f"testio-mirror {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the main job against the built-in sandbox (no TestIO account needed)",
        description="Start the built-in sandbox and `testio-mirror serve`, and drive them "
        "through an MCP client as an agent would: sync, status, products, a test, bugs, stats.",
    )
    demo.set_defaults(handler=_run_demo)

    serve = commands.add_parser(
        "serve",
        help="run the MCP server (stdio by default; --sandbox to try it without an account)",
        description="Run the MCP server. stdio: for Claude Desktop, Claude Code, Cursor; "
        "http: streamable HTTP at /mcp for a team.",
    )
    serve.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio: the client starts the server; http: streamable HTTP at /mcp (stdio)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (127.0.0.1)")
    serve.add_argument(
        "--port", type=whole_number(0, MAX_PORT), default=8000, help="HTTP port (8000)"
    )
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="serve a built-in simulated TestIO account (no token needed); its mirror lives "
        "in <TESTIO_MIRROR_HOME>/sandbox",
    )
    serve.add_argument(
        "--sandbox-latency-ms",
        type=number(0, MAX_LATENCY_MS),
        default=0.0,
        help="with --sandbox: delay per simulated API request (0)",
    )
    serve.add_argument(
        "--no-initial-sync", action="store_true", help="do not sync when the server starts"
    )
    serve.set_defaults(handler=_run_serve)

    sync = commands.add_parser(
        "sync",
        help="bring the mirror up to date with TestIO (needs TESTIO_CUSTOMER_API_TOKEN)",
        description="Sync products, features and tests (and bugs with --bugs). Exit codes: "
        "0 success, 1 failed, 2 bad usage, 3 partial, 4 another sync holds the lock or another "
        "process keeps writing the mirror, 6 the mirror file is damaged, 7 the disk is full.",
    )
    sync.add_argument(
        "--product",
        dest="products",
        type=whole_number(1, MAX_ID),
        action="append",
        metavar="ID",
        help="only this product (repeatable)",
    )
    sync.add_argument("--since", help="only tests ending on or after this date (YYYY-MM-DD)")
    sync.add_argument("--bugs", action="store_true", help="also sync bugs (of stale tests)")
    sync.add_argument(
        "--force", action="store_true", help="list every test and re-fetch every bug list"
    )
    sync.add_argument(
        "--direction",
        choices=("down", "up", "both"),
        default="both",
        help="down: pull only; up: send pending triage changes only; both (default): send, "
        "then pull",
    )
    sync.add_argument("--nuke", action="store_true", help="empty the mirror first (needs --yes)")
    sync.add_argument("--yes", action="store_true", help="confirm --nuke")
    sync.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once (exit 4) when another process is syncing",
    )
    sync.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    sync.add_argument(
        "--steps",
        action="store_true",
        help="without a terminal, a line per step (each page, each batch of bugs) instead of "
        "per phase",
    )
    sync.set_defaults(handler=_run_sync)

    status = commands.add_parser(
        "status",
        help="show what the mirror holds and how its syncs went",
        description="Show the mirror's counts, its last runs, the sync lock and each product's "
        "listing (--json: what the sync_status tool answers).",
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.add_argument(
        "--period-hours",
        type=number(0, MAX_HOURS),
        default=24.0,
        help="statistics period in hours (24)",
    )
    status.set_defaults(handler=_run_status)

    triage_parsers = add_triage_commands(commands)

    config = commands.add_parser(
        "config",
        help="show the effective settings (the token is never shown)",
        description="Show every setting as the environment and .env make it (TESTIO_* "
        "variables; see Configuration in README.md). Tokens show only as set or not set.",
    )
    config.set_defaults(handler=_run_config)

    sandbox = commands.add_parser(
        "sandbox",
        help="serve a simulated TestIO Customer API v2 on loopback",
        description="Serve a simulated TestIO Customer API v2 on loopback until Ctrl-C.",
    )
    _add_sandbox_arguments(sandbox)
    sandbox.set_defaults(handler=_run_sandbox)
    named = {
        "demo": demo,
        "serve": serve,
        "sync": sync,
        "status": status,
        **triage_parsers,
        "config": config,
    }
    return parser, {**named, "sandbox": sandbox}


def _add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    serve = parser.add_argument_group("serving")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    serve.add_argument(
        "--port",
        type=whole_number(0, MAX_PORT),
        default=8765,
        help="port; 0 picks a free one (8765)",
    )
    serve.add_argument("--token", help="API token clients must send (default: a random one)")
    serve.add_argument(
        "--log-requests", action="store_true", help="print one line per API request to stderr"
    )
    data = parser.add_argument_group("data (deterministic from the seed)")
    data.add_argument(
        "--dataset",
        choices=("demo", "S", "M"),
        default="demo",
        help="named size: demo (3x60x4), S (5x400x5), M (20x1500x10); flags below override",
    )
    data.add_argument("--seed", type=whole_number(0, MAX_ID), default=1, help="random seed (1)")
    data.add_argument("--products", type=whole_number(0, MAX_COUNT), help="number of products")
    data.add_argument(
        "--section-products",
        type=whole_number(0, MAX_COUNT),
        default=1,
        help="products with sections (1)",
    )
    data.add_argument(
        "--sections",
        type=whole_number(1, MAX_COUNT),
        default=2,
        help="sections per section product (2)",
    )
    data.add_argument(
        "--features-per-product", type=whole_number(0, MAX_COUNT), default=6, help="features (6)"
    )
    data.add_argument(
        "--tests-per-product", type=whole_number(0, MAX_COUNT), help="tests per product"
    )
    data.add_argument("--bugs-per-test", type=whole_number(0, MAX_COUNT), help="bugs per test")
    knobs = parser.add_argument_group("behaviour (tests can change these while it runs)")
    knobs.add_argument(
        "--latency-ms", type=number(0, MAX_LATENCY_MS), default=0.0, help="delay per request (0)"
    )
    knobs.add_argument(
        "--max-per-page",
        type=whole_number(1, MAX_COUNT),
        default=100,
        help="largest per_page honoured; bigger asks are silently capped (100)",
    )
    knobs.add_argument(
        "--unpaged-limit",
        type=whole_number(1, MAX_COUNT),
        default=150,
        help="tests answered when a listing has no page parameter (150)",
    )
    knobs.add_argument(
        "--ignore-paging", action="store_true", help="answer every test at once, as some staging"
    )
    knobs.add_argument(
        "--evolve-interval",
        type=number(0, MAX_HOURS * 3600),
        default=0.0,
        help="seconds between evolve steps; 0 = off (0)",
    )
    knobs.add_argument(
        "--evolve-every-requests",
        type=whole_number(0, MAX_COUNT),
        default=0,
        help="evolve once every N API requests; 0 = off (0)",
    )


def _run_sandbox(args: argparse.Namespace) -> int:
    from testio_mirror.console import stderr_console, stdout_console
    from testio_mirror.logs import configure_logging
    from testio_mirror.sandbox import (
        DatasetSpec,
        SandboxConfig,
        SandboxError,
        SandboxKnobs,
        SandboxServer,
        new_token,
    )

    configure_logging("INFO" if args.log_requests else "WARNING")
    from testio_mirror.sandbox.dataset import PRESETS

    preset = PRESETS[args.dataset]
    try:
        spec = DatasetSpec(
            seed=args.seed,
            products=_pick(args.products, preset["products"]),
            section_products=min(args.section_products, _pick(args.products, preset["products"])),
            sections_per_product=args.sections,
            features_per_product=args.features_per_product,
            tests_per_product=_pick(args.tests_per_product, preset["tests_per_product"]),
            bugs_per_test=_pick(args.bugs_per_test, preset["bugs_per_test"]),
        )
        config = SandboxConfig(
            dataset=spec,
            host=args.host,
            port=args.port,
            knobs=SandboxKnobs(
                latency_ms=args.latency_ms,
                max_per_page=args.max_per_page,
                unpaged_limit=args.unpaged_limit,
                ignore_paging=args.ignore_paging,
                evolve_every_requests=args.evolve_every_requests,
            ),
            evolve_interval_seconds=args.evolve_interval,
            token=args.token or new_token(),
        )
        server = SandboxServer(config)
        server.bind()
    except (SandboxError, ValueError) as exc:
        stderr_console().print(f"[red]testio-mirror sandbox: {exc}[/red]")
        return EXIT_USAGE
    counts = server.world.counts()
    # Bugs are generated when first asked for; generate them now when they fit in memory, so the
    # first listing of bugs is as quick as the next (benchmarks repeat it).
    server.world.warm_bug_cache()
    out = stdout_console()
    out.print(
        f"[bold]TestIO sandbox[/bold] serving {counts['products']} products, "
        f"{counts['tests']} tests, {counts['bugs']} bugs (seed {spec.seed})"
    )
    out.print(f"  base URL  {server.base_url}")
    out.print(f"  token     {server.token}")
    # The admin API takes the API's token in the same header: a bare link would answer 401.
    out.print(f"  admin     {server.admin_url} (same token, header Authorization: Token <token>)")
    out.print(
        f"            curl -H 'Authorization: Token {server.token}' {server.admin_url}/health",
        highlight=False,
        soft_wrap=True,
    )
    out.print("Point testio-mirror at it with:")
    out.print(f"  export TESTIO_CUSTOMER_API_BASE_URL={server.base_url}", highlight=False)
    out.print(f"  export TESTIO_CUSTOMER_API_TOKEN={server.token}", highlight=False)
    out.print("Press Ctrl-C to stop.")
    out.file.flush()
    server.serve_forever()
    return EXIT_OK


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def _run_demo(args: argparse.Namespace) -> int:
    from testio_mirror.cli.demo import run_demo
    from testio_mirror.console import stdout_console
    from testio_mirror.logs import configure_logging

    configure_logging("WARNING")  # the client's retries show on stderr as they happen
    return run_demo(stdout_console())


def _run_serve(args: argparse.Namespace) -> int:
    from testio_mirror.cli.serve import run_serve

    return run_serve(
        transport=args.transport,
        host=args.host,
        port=args.port,
        sandbox=args.sandbox,
        sandbox_latency_ms=args.sandbox_latency_ms,
        initial_sync=not args.no_initial_sync,
    )


def _run_sync(args: argparse.Namespace) -> int:
    from testio_mirror.cli.sync import parse_since, run_sync
    from testio_mirror.console import stderr_console
    from testio_mirror.logs import configure_logging
    from testio_mirror.settings import load_settings
    from testio_mirror.sync.models import SyncDirection

    if args.nuke and not args.yes:
        stderr_console().print(
            "testio-mirror sync: --nuke empties the mirror; add --yes to confirm"
        )
        return EXIT_USAGE
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        stderr_console().print(f"testio-mirror sync: {exc}")
        return EXIT_USAGE
    settings = load_settings()
    configure_logging(settings.log_level if not args.json else "WARNING")
    return run_sync(
        settings,
        product_ids=args.products,
        since=since,
        bugs=args.bugs,
        force=args.force,
        nuke=args.nuke,
        direction=SyncDirection(args.direction),
        wait=not args.no_wait,
        as_json=args.json,
        steps=args.steps,
    )


def _run_status(args: argparse.Namespace) -> int:
    from testio_mirror.cli.sync import run_status
    from testio_mirror.console import stdout_console
    from testio_mirror.settings import load_settings

    return run_status(
        load_settings(), as_json=args.json, period_hours=args.period_hours, out=stdout_console()
    )


def _run_config(args: argparse.Namespace) -> int:
    from rich.table import Table

    from testio_mirror.console import stdout_console
    from testio_mirror.settings import Settings, env_name, load_settings

    settings = load_settings()
    table = Table(title="testio-mirror settings", title_justify="left")
    table.add_column("variable")
    table.add_column("value")
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in ("customer_api_token", "mirror_http_token"):
            shown = "set (hidden)" if value is not None else "not set"
        else:
            shown = str(value)
        table.add_row(env_name(name), shown)
    stdout_console().print(table)
    return EXIT_OK


def _warn_about_unknown_variables() -> None:
    """A mistyped TESTIO_ variable would be ignored silently: say so, once, on stderr (stdout
    carries MCP in stdio mode), by name only (the value may be a token)."""
    from testio_mirror.settings import unknown_variable_warnings

    for warning in unknown_variable_warnings(os.environ):
        print(f"testio-mirror: {warning}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser, commands = build_parsers()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse hands a command's unknown flags up to the top level, whose usage does not
        # show the command's flags: report them with the command's own usage.
        command = commands.get(getattr(args, "command", None) or "", parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    _warn_about_unknown_variables()
    try:
        return handler(args)
    except MirrorError as exc:
        print(f"testio-mirror: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
