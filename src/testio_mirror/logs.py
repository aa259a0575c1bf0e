"""Logging set-up: everything goes to stderr, because stdout belongs to MCP in stdio mode."""

from __future__ import annotations

import logging
import sys

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
