"""Waiting for something another thread does (the sandbox logs and evolves on its own thread)."""

from __future__ import annotations

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
