"""Waiting for something another thread does (the sandbox logs and evolves on its own thread),
or for the event loop's other tasks to run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """True as soon as ``condition()`` holds, False if it still does not after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


async def settle(turns: int = 20) -> None:
    """Let every task that can run do so (a few turns of the event loop)."""
    for _ in range(turns):
        await asyncio.sleep(0)
