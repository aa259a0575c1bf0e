"""Rich consoles for the CLI: results on stdout, problems on stderr."""

from __future__ import annotations

import sys

from rich.console import Console


def stdout_console() -> Console:
    """Where CLI commands print their results (never used in MCP stdio mode)."""
    return Console(file=sys.stdout, highlight=False)


def stderr_console() -> Console:
    """Where CLI commands report problems and progress."""
    return Console(file=sys.stderr, highlight=False)
