"""Concurrent requests for the same key share one piece of work.

Example::

    flights = SingleFlight[int, Answer]()
    answer = await flights.run(test_id, lambda: fetch_and_store(test_id))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one ``work()`` per key at a time; late callers await the running one."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        # shield: one caller giving up (cancelled) must not cancel the others' shared work.
        return await asyncio.shield(task)

    def _finished(self, key: K, done: asyncio.Task[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure nobody awaited is not reported twice

    def __len__(self) -> int:
        return len(self._running)

    async def cancel_all(self) -> None:
        """Cancel the work still running (nobody may be waiting: a reader past its deadline
        leaves it running) and wait until it has stopped."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
