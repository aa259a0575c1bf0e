"""Every bug of many tests: batches of test ids asked for concurrently, halved when too big.

- Test ids are de-duplicated and cut into batches of ``TESTIO_BUG_BATCH_SIZE``.
- At most ``TESTIO_MAX_CONCURRENT_REQUESTS`` batches are in flight, and requests go on while the
  caller works on what arrived: up to one and a half times that many batches in flight or
  finished and waiting, so memory stays bounded when writing is slower than fetching.
- A 524 (the API's "too big") on a batch of several tests halves it and asks for both halves,
  down to one test. A timeout is not "too big": the batch gets the ordinary retries, whole.
- The batches of one call share a ``TimeoutBudget`` of ``BUGS_DOWN_AFTER_TIMEOUTS``: once that
  many attempts timed out (or a single test met a 524), the bugs endpoint is down for this run
  and every batch not yet fetched comes back at once with an ``EndpointDownError``, no request
  sent; the next run asks for them.
- A batch that fails comes back with its ``error``: one bad batch does not lose the others.

Example::

    async for group in bug_batch_groups(client, test_ids):
        for batch in group:          # the batches that arrived while the last group was written
            save(batch.bugs, complete_for_tests=batch.test_ids)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import UpstreamError
from testio_mirror.upstream.models import Bug
from testio_mirror.upstream.retry import TimeoutBudget
from testio_mirror.upstream.sending import TooBigError

logger = logging.getLogger("testio_mirror.upstream")

# Timed-out attempts on the bugs endpoint, in one call, after which it is down for the run: a
# few, so that one slow moment is retried but a hung endpoint is not asked once per batch.
BUGS_DOWN_AFTER_TIMEOUTS = 3


@dataclass(frozen=True)
class BugBatch:
    """The complete bug lists of some tests, or why they could not be fetched."""

    test_ids: list[int]
    bugs: list[Bug] = field(default_factory=list)
    error: UpstreamError | None = None


async def bugs_for_tests(client: CustomerApiClient, test_ids: Sequence[int]) -> list[Bug]:
    """Every bug of the given tests.

    Raises:
        UpstreamError: the first batch that could not be fetched.
    """
    bugs: list[Bug] = []
    async for batch in bug_batches(client, test_ids):
        if batch.error is not None:
            raise batch.error
        bugs.extend(batch.bugs)
    return bugs


async def bug_batches(
    client: CustomerApiClient, test_ids: Sequence[int]
) -> AsyncIterator[BugBatch]:
    """The tests' bug lists, one ``BugBatch`` per batch as each completes."""
    async for group in bug_batch_groups(client, test_ids):
        for batch in group:
            yield batch


async def bug_batch_groups(
    client: CustomerApiClient, test_ids: Sequence[int]
) -> AsyncIterator[list[BugBatch]]:
    """Like ``bug_batches``, but every batch that completed while the caller was busy comes in
    one list: a caller that writes each list in one transaction commits less often the slower
    it writes."""
    unique = list(dict.fromkeys(test_ids))
    size = client.settings.bug_batch_size
    batches = [unique[i : i + size] for i in range(0, len(unique), size)]
    if not batches:
        return
    limit = client.settings.max_concurrent_requests
    in_flight = asyncio.Semaphore(limit)
    # In flight plus finished and not yet taken: half a round more than in flight keeps
    # requests going while the caller writes, and bounds what waits in memory.
    room = asyncio.Semaphore(limit + max(1, limit // 2))
    finished: asyncio.Queue[asyncio.Task[BugBatch]] = asyncio.Queue()
    timeouts = TimeoutBudget(BUGS_DOWN_AFTER_TIMEOUTS)

    async def fetch(ids: list[int]) -> BugBatch:
        async with in_flight:
            return await fetch_batch(client, ids, timeouts)

    def landed(task: asyncio.Task[BugBatch]) -> None:
        if not task.cancelled():  # cancelled only when the listing stops: nobody waits for it
            finished.put_nowait(task)

    async def launch_all() -> None:
        async with asyncio.TaskGroup() as running:
            for ids in batches:
                await room.acquire()
                running.create_task(fetch(ids)).add_done_callback(landed)

    # Its own task, so that requests go on while this generator waits at ``yield``; leaving
    # its task group cancels and awaits whatever still runs.
    launcher = asyncio.create_task(launch_all())
    try:
        taken = 0
        while taken < len(batches):
            group = [await finished.get()]
            while not finished.empty():
                group.append(finished.get_nowait())
            taken += len(group)
            for _ in group:
                room.release()
            yield [task.result() for task in group]
    finally:
        launcher.cancel()
        await asyncio.gather(launcher, return_exceptions=True)


async def fetch_batch(
    client: CustomerApiClient, test_ids: list[int], timeouts: TimeoutBudget | None = None
) -> BugBatch:
    """One batch's bugs (halved as often as 524s ask), or the error that stopped it
    (``EndpointDownError`` once ``timeouts`` ran out)."""
    try:
        return BugBatch(test_ids, await _bugs_halving(client, test_ids, timeouts))
    except UpstreamError as exc:
        return BugBatch(test_ids, error=exc)


async def _bugs_halving(
    client: CustomerApiClient, test_ids: list[int], timeouts: TimeoutBudget | None
) -> list[Bug]:
    try:
        return await client.bugs_of_tests(
            test_ids, raise_on_524=len(test_ids) > 1, timeouts=timeouts
        )
    except TooBigError:
        client.metrics.batch_splits += 1
        half = len(test_ids) // 2
        logger.info("bug batch of %d tests was too big (524); asking for halves", len(test_ids))
        halves = [
            asyncio.ensure_future(_bugs_halving(client, ids, timeouts))
            for ids in (test_ids[:half], test_ids[half:])
        ]
        try:
            return (await halves[0]) + (await halves[1])
        finally:
            # When one half fails (or the batch is cancelled) the other is stopped and awaited:
            # nothing is left running, and no failure goes unretrieved.
            for task in halves:
                task.cancel()
            await asyncio.gather(*halves, return_exceptions=True)
