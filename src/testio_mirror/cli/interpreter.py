"""Process-wide interpreter settings for the commands that run the mirror (``serve``, ``sync``).

They change the whole process, so only those commands' entry points call them, never the
library code a test or an embedding program runs.
"""

from __future__ import annotations

import gc
import sys

# How long a thread may hold the GIL while another waits for it (Python's default is 5 ms).
SWITCH_INTERVAL_SECONDS = 0.0005


def tune_interpreter() -> None:
    """Shorten the GIL switch interval and leave what is loaded by now out of garbage collection.

    Every SQLite connection runs in its own thread, which needs the GIL back after each SQLite
    call; while the event loop's thread parses a page or an answer, that wait is the whole switch
    interval, so at the default a sync's writes and the queries served meanwhile mostly wait.
    Modules, classes and schemas loaded at start live as long as the process; frozen, they are
    not walked again by every full collection, which a sync's many new objects set off.
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
    gc.freeze()
