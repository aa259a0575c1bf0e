"""Logging: stderr by default; through a live console while a progress bar shows."""

from __future__ import annotations

import io
import logging

from rich.console import Console
from rich.progress import Progress

from testio_mirror.logs import configure_logging, logs_through


def test_log_lines_go_through_the_live_console_while_a_bar_shows() -> None:
    root = logging.getLogger("testio_mirror")
    untouched, level = list(root.handlers), root.level
    try:
        configure_logging("INFO")
        _check_the_bar(root)
    finally:  # leave logging as the other tests expect it
        root.handlers[:] = untouched
        root.setLevel(level)


def _check_the_bar(root: logging.Logger) -> None:
    before = list(root.handlers)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with Progress(console=console, transient=True) as bar, logs_through(console):
        bar.add_task("syncing", total=10)
        logging.getLogger("testio_mirror.upstream").warning("HTTP 503; retry 1 of 4")
    shown = screen.getvalue()
    assert "WARNING testio_mirror.upstream: HTTP 503; retry 1 of 4" in shown
    # Printed through the console, the line is followed by the bar drawn again below it.
    assert "syncing" in shown[shown.index("retry 1 of 4") :]
    assert root.handlers == before  # afterwards, logs go where they went before
