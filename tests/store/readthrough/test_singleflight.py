"""SingleFlight: one piece of work per key however many callers ask at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from testio_mirror.store.readthrough.singleflight import SingleFlight


class Gate:
    """Work that blocks until released, counting how often it started and finished."""

    def __init__(self, result: str = "done", error: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.finished = 0
        self.result = result
        self.error = error

    async def work(self) -> str:
        self.started += 1
        await self.release.wait()
        self.finished += 1
        if self.error is not None:
            raise self.error
        return f"{self.result}#{self.started}"


async def settle() -> None:
    """Let every task that is ready run up to its next real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def spawn(
    flights: SingleFlight[str, str], key: str, work: Callable[[], Awaitable[str]], count: int
) -> list[asyncio.Task[str]]:
    return [asyncio.create_task(flights.run(key, work)) for _ in range(count)]


async def test_concurrent_callers_of_one_key_share_one_run() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    tasks = spawn(flights, "test:1", gate.work, 10)
    await settle()
    assert gate.started == 1
    assert len(flights) == 1
    gate.release.set()
    results = await asyncio.gather(*tasks)
    assert results == ["done#1"] * 10
    assert gate.started == gate.finished == 1
    assert len(flights) == 0


async def test_different_keys_run_separately() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    first, second = Gate("first"), Gate("second")
    tasks = spawn(flights, "a", first.work, 3) + spawn(flights, "b", second.work, 3)
    await settle()
    assert (first.started, second.started) == (1, 1)
    assert len(flights) == 2
    second.release.set()
    assert await asyncio.gather(*tasks[3:]) == ["second#1"] * 3
    assert len(flights) == 1  # "a" is still running
    assert not any(task.done() for task in tasks[:3])
    first.release.set()
    assert await asyncio.gather(*tasks[:3]) == ["first#1"] * 3
    assert len(flights) == 0


async def test_an_error_reaches_every_waiter_and_frees_the_key() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    failure = RuntimeError("TestIO said no")
    failing = Gate(error=failure)
    tasks = spawn(flights, "k", failing.work, 5)
    await settle()
    failing.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(outcome is failure for outcome in outcomes)
    assert failing.started == 1
    assert len(flights) == 0

    # The key is free: the next caller runs new work instead of getting the old error.
    retry = Gate("retry")
    retry.release.set()
    assert await flights.run("k", retry.work) == "retry#1"
    assert retry.started == 1
    assert len(flights) == 0


async def test_a_cancelled_waiter_does_not_cancel_the_shared_work() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    quitter, stayer = spawn(flights, "k", gate.work, 2)
    await settle()
    quitter.cancel()
    await settle()
    assert quitter.cancelled()
    assert len(flights) == 1  # the work goes on for the caller still waiting
    gate.release.set()
    assert await stayer == "done#1"
    assert gate.finished == 1
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert len(flights) == 0


async def test_work_finishes_even_when_every_waiter_gave_up() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    (only,) = spawn(flights, "k", gate.work, 1)
    await settle()
    only.cancel()
    await settle()
    assert len(flights) == 1
    # A newcomer joins the run already under way rather than starting another.
    (late,) = spawn(flights, "k", gate.work, 1)
    await settle()
    gate.release.set()
    assert await late == "done#1"
    assert gate.started == gate.finished == 1
    assert len(flights) == 0


async def test_len_is_zero_after_a_plain_run() -> None:
    flights: SingleFlight[int, str] = SingleFlight()

    async def quick() -> str:
        return "quick"

    assert len(flights) == 0
    assert await flights.run(1, quick) == "quick"
    assert await flights.run(1, quick) == "quick"
    assert len(flights) == 0


async def test_a_caller_past_its_deadline_leaves_the_work_running_for_the_next() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await flights.run("k", gate.work)
    assert (len(flights), gate.started) == (1, 1)  # still running, nobody waiting

    late = asyncio.ensure_future(flights.run("k", gate.work))
    await settle()
    gate.release.set()
    assert await late == "done#1"
    assert (gate.started, gate.finished, len(flights)) == (1, 1, 0)


async def test_cancel_all_stops_work_nobody_waits_for() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = Gate()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await flights.run("k", gate.work)
    await flights.cancel_all()
    await settle()
    assert (gate.started, gate.finished, len(flights)) == (1, 0, 0)
