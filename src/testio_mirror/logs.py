"""Logging set-up: everything goes to stderr, because stdout belongs to MCP in stdio mode."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send testio-mirror's logs to stderr at ``level``; safe to call more than once."""
    root = logging.getLogger("testio_mirror")
    root.setLevel(level)
    if not any(getattr(h, "_testio_mirror", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._testio_mirror = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def configure_server_logging(level: str) -> None:
    """For ``serve``: every log line to stderr (stdout carries the MCP protocol in stdio mode),
    testio-mirror's at ``level``, third-party libraries' only from WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("testio_mirror").setLevel(level)


class _ConsoleHandler(logging.Handler):
    """Writes log lines through a rich console, so a live display on it stays below them."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def logs_through(console: Console) -> Iterator[None]:
    """While a live display (a progress bar) owns ``console``, testio-mirror's log lines are
    printed through it, above the display, instead of into it; then as before.

    Example::

        with Progress(console=err) as bar, logs_through(err):
            ...
    """
    root = logging.getLogger("testio_mirror")
    ours = [h for h in root.handlers if getattr(h, "_testio_mirror", False)]
    handler = _ConsoleHandler(console)
    handler.setFormatter(logging.Formatter(_FORMAT))
    for each in ours:
        for kept in each.filters:
            handler.addFilter(kept)
        root.removeHandler(each)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for each in ours:
            root.addHandler(each)
