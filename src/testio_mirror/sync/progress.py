"""Progress reports whose ``done`` only ever goes up.

Work is counted in steps (a phase's first request, a product's features, a page, a bug batch).
The total grows as work is discovered (a listing's length is unknown until its end), so it is an
estimate that never falls below ``done``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("testio_mirror.sync")

OnProgress = Callable[[int, int, str], Awaitable[None] | None]


class ProgressTracker:
    """Counts steps and reports ``(done, total, message)`` after each one."""

    def __init__(self, on_progress: OnProgress | None) -> None:
        self._on_progress = on_progress
        self.done = 0
        self.total = 0

    def expect(self, steps: int) -> None:
        """More work was discovered."""
        self.total += max(steps, 0)

    async def step(self, message: str) -> None:
        """One step finished: ``done`` grows by exactly one."""
        self.done += 1
        self.total = max(self.total, self.done)
        if self._on_progress is None:
            return
        try:
            outcome = self._on_progress(self.done, self.total, message)
            if outcome is not None:
                await outcome
        except Exception:
            # A listener that fails (a client that went away) must not stop the sync.
            logger.exception("a progress listener failed; the sync goes on")
