"""``testio-mirror sync`` and ``testio-mirror status``: running and reading syncs from a shell.

Exit codes: 0 success, 1 failed, 2 bad usage, 3 partial, 4 lock or mirror busy
(``SyncLockBusyError``, ``MirrorBusyError``), 6 mirror damaged, 7 disk full, 130 interrupted
(``cli/exit_codes.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from testio_mirror.cli.exit_codes import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
)
from testio_mirror.cli.interpreter import tune_interpreter
from testio_mirror.console import stderr_console, stdout_console
from testio_mirror.errors import StoreError
from testio_mirror.settings import Settings, check_mirror_home
from testio_mirror.sync.lock import SyncLock, SyncLockBusyError
from testio_mirror.sync.models import (
    DEFAULT_PHASES,
    SyncDirection,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)

if TYPE_CHECKING:
    from rich.console import Console

    from testio_mirror.sync.status import SyncStatusReport

ConsoleFactory = Callable[[], "Console"]


_STATUS_EXIT = {
    SyncStatus.SUCCESS: EXIT_OK,
    SyncStatus.PARTIAL: EXIT_PARTIAL,
    SyncStatus.FAILED: EXIT_FAILED,
    SyncStatus.CANCELLED: EXIT_INTERRUPTED,
    SyncStatus.INTERRUPTED: EXIT_FAILED,
}


def parse_since(text: str) -> datetime:
    """A date or date-time; without an offset it is UTC.

    Raises:
        ValueError: not an ISO 8601 date or date-time.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is not a date: use YYYY-MM-DD or an ISO 8601 date-time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run_sync(
    settings: Settings,
    *,
    product_ids: list[int] | None,
    since: datetime | None,
    bugs: bool,
    force: bool,
    nuke: bool,
    wait: bool,
    direction: SyncDirection = SyncDirection.BOTH,
    as_json: bool,
    steps: bool = False,
    out: ConsoleFactory = stdout_console,
    err: ConsoleFactory = stderr_console,
) -> int:
    """Run one sync in this process and report it; returns the exit code.

    The consoles are made when there is something to show, so loading rich overlaps the first
    request. ``steps``: without a terminal, a line per step (each page, each bug batch) instead of
    per phase.

    Raises:
        SettingsError: ``TESTIO_MIRROR_HOME`` is a file.
    """
    check_mirror_home(settings)
    if settings.customer_api_token is None:
        err().print(
            "testio-mirror sync: no TestIO token: set TESTIO_CUSTOMER_API_TOKEN (see README)"
        )
        return EXIT_USAGE
    phases = [*DEFAULT_PHASES, SyncPhase.BUGS] if bugs else list(DEFAULT_PHASES)
    scope = SyncScope(product_ids=tuple(product_ids) if product_ids else None, since=since)
    options = SyncOptions(force_refresh=force or nuke, nuke=nuke, direction=direction)
    tune_interpreter()
    try:
        result = asyncio.run(
            _sync(settings, phases, scope, options, wait, err, as_json, steps=steps)
        )
    except SyncLockBusyError as exc:
        err().print(f"testio-mirror sync: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err().print("testio-mirror sync: interrupted; committed pages are kept")
        return EXIT_INTERRUPTED
    if as_json:
        out().print_json(result.model_dump_json())
    else:
        _print_result(out(), result)
    return _STATUS_EXIT.get(result.status, EXIT_FAILED)


async def _sync(
    settings: Settings,
    phases: list[SyncPhase],
    scope: SyncScope,
    options: SyncOptions,
    wait: bool,
    make_err: ConsoleFactory,
    quiet: bool,
    *,
    steps: bool = False,
) -> SyncResult:
    from testio_mirror.upstream.client import CustomerApiClient

    # Every sync starts with the product list: ask for it now, and load the store, the sync
    # service and rich (in a thread, so the event loop sends the request) while it travels.
    client = CustomerApiClient(settings)
    client.prefetch_products()
    try:
        await asyncio.to_thread(_load_app_and_rich)
    except BaseException:
        await client.aclose()
        raise
    from testio_mirror.app import open_app
    from testio_mirror.cli.sync_output import PhaseLines, RunSummaryFilter
    from testio_mirror.logs import logs_through

    err = make_err()
    run_logs = logging.getLogger("testio_mirror.sync")
    # The command prints the run's summary on stdout; the service's log of it would repeat it.
    summary_filter = RunSummaryFilter()
    if not quiet:
        run_logs.addFilter(summary_filter)
    store_failures = StoreFailureLines()
    run_logs.addFilter(store_failures)
    try:
        async with open_app(settings, client, replace_account=options.nuke) as app:
            if quiet:
                return await app.sync.execute_sync(
                    phases, scope, options, SyncTrigger.CLI, None, wait_for_lock=wait
                )
            if err.is_terminal:
                # Imported here: only a terminal gets a progress bar, and rich.progress is not
                # cheap.
                from rich.progress import (
                    BarColumn,
                    Progress,
                    TaskProgressColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )

                with (
                    Progress(
                        TextColumn("{task.description}"),
                        BarColumn(),
                        TaskProgressColumn(),
                        TimeElapsedColumn(),
                        console=err,
                        transient=True,
                    ) as bar,
                    logs_through(err),  # log lines print above the bar, not into it
                ):
                    task = bar.add_task("syncing", total=None)

                    def show(done: int, total: int, message: str) -> None:
                        bar.update(task, completed=done, total=total, description=message[:60])

                    return await app.sync.execute_sync(
                        phases, scope, options, SyncTrigger.CLI, show, wait_for_lock=wait
                    )

            if steps:

                def step(done: int, total: int, message: str) -> None:
                    # Plain lines, written directly: a rich print costs about half a
                    # millisecond, and a sync reports a step per page or batch of bugs. Each
                    # follows the commit of its step, and nothing else is written.
                    err.file.write(f"[{done}/{total}] {message}\n")

                return await app.sync.execute_sync(
                    phases, scope, options, SyncTrigger.CLI, step, wait_for_lock=wait
                )

            def write(line: str) -> None:
                err.file.write(f"{line}\n")
                err.file.flush()

            # No terminal (a CI job, a log file): a line per phase and a summary every few
            # seconds, not a line per request.
            lines = PhaseLines(
                write,
                lambda: app.sync.current,
                counts=app.mirror.sync_state.counts,
                requests=lambda: client.metrics.requests,
            )
            async with lines.running():
                result = await app.sync.execute_sync(
                    phases, scope, options, SyncTrigger.CLI, lines.step, wait_for_lock=wait
                )
            lines.finish(result)
            return result
    finally:
        run_logs.removeFilter(summary_filter)
        run_logs.removeFilter(store_failures)


class StoreFailureLines(logging.Filter):
    """A log of a failure the user can act on (the mirror busy, damaged, the disk full) is one
    line with the reason, not a traceback: the command ends with that reason and its exit
    code."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, StoreError):
            record.msg, record.args = "%s: %s", (record.getMessage(), error)
            record.exc_info = record.exc_text = None
        return True


def _load_app_and_rich() -> None:
    for module in ("testio_mirror.app", "rich.console"):
        importlib.import_module(module)


def _print_result(out: Console, result: SyncResult) -> None:
    from rich.table import Table

    out.print(result.summary())
    # Phases that ended or fetched something; a run that failed before its first phase ended
    # has no table to show (its requests are in the summary line).
    completed = {p.value for p in result.phases_completed}
    ended = {
        phase: stats for phase, stats in result.stats.items() if phase in completed or stats.fetched
    }
    if ended:
        table = Table(title=f"run {result.run_id} ({result.status.value})", title_justify="left")
        for column in ("phase", "fetched", "new", "updated", "unchanged", "deleted", "requests"):
            table.add_column(column, justify="left" if column == "phase" else "right")
        for phase, stats in ended.items():
            table.add_row(
                phase,
                *(
                    str(v)
                    for v in (
                        stats.fetched,
                        stats.inserted,
                        stats.updated,
                        stats.unchanged,
                        stats.deleted,
                        stats.api_requests,
                    )
                ),
            )
        out.print(table)
    else:
        out.print(f"run {result.run_id} ({result.status.value}): no phase finished")
    for warning in result.warnings:
        out.print(f"warning: {warning}")
    from testio_mirror.cli.sync_output import distinct_errors

    for error in distinct_errors(result.errors):
        out.print(f"error: {error}")


def run_status(settings: Settings, *, as_json: bool, period_hours: float, out: Console) -> int:
    """Print what the mirror holds and how its syncs went (``--json``: the JSON ``sync_status``
    answers); returns the exit code.

    Raises:
        SettingsError: ``TESTIO_MIRROR_HOME`` is a file.
    """
    check_mirror_home(settings)
    report = asyncio.run(status_report(settings, period_hours))
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        _print_status(out, report)
    return EXIT_OK


async def status_report(settings: Settings, period_hours: float) -> SyncStatusReport:
    """The sync status of the mirror in ``settings`` (without what only a server knows).

    Raises:
        StoreError: the mirror cannot be opened.
    """
    # Imported here: `sync` needs neither, and its start-up is measured.
    from testio_mirror.store.mirror import Mirror
    from testio_mirror.sync.status import build_sync_status

    # Read only: an up-to-date mirror is not written (another process may hold its write lock).
    mirror = await Mirror.open(settings, None, read_only=True)
    try:
        return await build_sync_status(
            mirror.sync_state,
            SyncLock(settings.mirror_home),
            settings.database_path,
            period_hours=period_hours,
            outbox=mirror.outbox,
        )
    finally:
        await mirror.close()


def _print_status(out: Console, report: SyncStatusReport) -> None:
    from rich.table import Table

    from testio_mirror.cli.sync_output import outbox_lines

    if report.state == "never_synced":
        out.print(f"Mirror at {report.database}")
        out.print(
            "The mirror is empty: run `testio-mirror sync` to fill it (it needs "
            "TESTIO_CUSTOMER_API_TOKEN; `testio-mirror demo` tries it without an account)."
        )
        return
    out.print(
        f"Mirror at {report.database}: "
        + ", ".join(f"{n} {kind}" for kind, n in report.counts.items())
    )
    out.print(
        f"Runs: {report.total_runs} ({report.successful_runs} successful, "
        f"{report.partial_runs} partial, {report.failed_runs} failed, "
        f"{report.cancelled_runs} cancelled, {report.interrupted_runs} interrupted); "
        f"last sync {_when(report.last_sync_at)}, "
        f"last successful {_when(report.last_success_at)}"
    )
    holder = report.lock_holder
    out.print(
        "Sync lock: free"
        if holder is None
        else f"Sync lock: held by pid {holder.pid} on {holder.host}, run "
        f"{holder.run_id} since {_when(holder.started_at)}"
    )
    for line in outbox_lines(report.outbox):
        out.print(line, soft_wrap=True)
    if report.last_runs:
        # One line per run, not a table: a table squeezes the run id to fit the terminal, and
        # the id is what a user copies (whole, as sync_status and the logs give it).
        rows = [("run", "trigger", "status", "started (UTC)", "seconds", "items")]
        for run in report.last_runs:
            rows.append(
                (
                    run.run_id,
                    run.trigger or "-",
                    run.status or "-",
                    _when(run.started_at),
                    f"{run.duration_seconds:.1f}" if run.duration_seconds is not None else "-",
                    str(run.items_synced) if run.items_synced is not None else "-",
                )
            )
        width = max(len(row[0]) for row in rows)
        out.print("Last runs (newest first):")
        for run_id, trigger, status, started, seconds, items in rows:
            out.print(
                f"  {run_id:<{width}}  {trigger:<7} {status:<11} {started:<20} "
                f"{seconds:>7} {items:>7}",
                soft_wrap=True,
            )
    if report.products:
        products = Table(title="Products", title_justify="left")
        for column in ("product", "last complete listing", "complete", "last full listing"):
            products.add_column(column)
        for row in report.products:
            products.add_row(
                str(row.product_id),
                _when(row.last_complete_listing),
                "yes" if row.complete else "no",
                _when(row.last_full_listing),
            )
        out.print(products)


def _when(moment: datetime | None) -> str:
    """A time as the text shows it: UTC with ``Z`` like the JSON, to the second."""
    return "never" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
