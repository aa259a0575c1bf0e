"""Rich consoles for the CLI: results on stdout, problems on stderr.

rich is imported when a console is made (about 45 ms here): ``testio-mirror sync`` loads it
while its first request travels, not before sending it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def stdout_console() -> Console:
    """Where CLI commands print their results (never used in MCP stdio mode)."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)


def stderr_console() -> Console:
    """Where CLI commands report problems and progress."""
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False)
