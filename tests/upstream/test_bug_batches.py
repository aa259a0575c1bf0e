"""Bug batches against a faked network: de-duplicated batches, halving on 524 (not on timeouts),
the endpoint down after a few timeouts, failed batches reported, requests going on while the
caller writes."""

from __future__ import annotations

import asyncio
from typing import cast

import httpx
import pytest
import respx

from testio_mirror.settings import load_settings
from testio_mirror.upstream.bug_batches import (
    BUGS_DOWN_AFTER_TIMEOUTS,
    bug_batch_groups,
    bug_batches,
    bugs_for_tests,
)
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import EndpointDownError, UpstreamUnavailableError
from testio_mirror.upstream.metrics import RequestMetrics
from testio_mirror.upstream.models import Bug
from testio_mirror.upstream.retry import TimeoutBudget
from tests.helpers.fake_upstream import make_client
from tests.helpers.polling import settle


def asked_tests(request: httpx.Request) -> list[int]:
    return [int(t) for t in request.url.params["filter_test_cycle_ids"].split(",")]


def bugs_answer(request: httpx.Request) -> httpx.Response:
    """Every asked test has one bug, id = test id * 100."""
    bugs = [{"id": t * 100, "test": {"id": t}} for t in asked_tests(request)]
    return httpx.Response(200, json={"bugs": bugs})


async def test_bug_ids_are_deduplicated_and_batched(api: respx.MockRouter) -> None:
    route = api.get("bugs").mock(side_effect=bugs_answer)
    async with make_client(bug_batch_size=2) as client:
        bugs = await bugs_for_tests(client, [1, 2, 2, 3, 1, 4, 5])
    asked = sorted(call.request.url.params["filter_test_cycle_ids"] for call in route.calls)
    assert asked == ["1,2", "3,4", "5"]
    assert sorted(b.id for b in bugs) == [100, 200, 300, 400, 500]


async def test_a_524_on_a_big_batch_splits_it(api: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(524) if len(asked_tests(request)) > 10 else bugs_answer(request)

    route = api.get("bugs").mock(side_effect=answer)
    async with make_client(bug_batch_size=40) as client:
        bugs = await bugs_for_tests(client, range(1, 41))
        assert client.metrics.batch_splits == 3  # 40 -> 2 x 20 -> 4 x 10
    assert sorted(b.id for b in bugs) == [t * 100 for t in range(1, 41)]
    assert route.call_count == 7


async def test_a_timeout_on_a_multi_test_batch_is_retried_whole(api: respx.MockRouter) -> None:
    route = api.get("bugs").mock(
        side_effect=[httpx.ReadTimeout("slow"), bugs_answer_to(1, 2, 3, 4)]
    )
    async with make_client(bug_batch_size=4) as client:
        bugs = await bugs_for_tests(client, [1, 2, 3, 4])
        assert (client.metrics.batch_splits, client.metrics.retries) == (0, 1)
    assert sorted(b.id for b in bugs) == [100, 200, 300, 400]
    assert [asked_tests(call.request) for call in route.calls] == [[1, 2, 3, 4]] * 2


async def test_repeated_timeouts_put_the_bugs_endpoint_down_for_the_call(
    api: respx.MockRouter,
) -> None:
    route = api.get("bugs").mock(side_effect=httpx.ReadTimeout("slow"))
    async with make_client(bug_batch_size=2, max_concurrent_requests=1) as client:
        batches = [b async for b in bug_batches(client, list(range(1, 21)))]
    assert route.call_count == BUGS_DOWN_AFTER_TIMEOUTS  # then no batch is asked for again
    assert len(batches) == 10
    assert all(isinstance(b.error, EndpointDownError) for b in batches), batches
    assert "next sync" in str(batches[-1].error)


def bugs_answer_to(*test_ids: int) -> httpx.Response:
    return httpx.Response(
        200, json={"bugs": [{"id": t * 100, "test": {"id": t}} for t in test_ids]}
    )


async def test_a_failed_batch_is_reported_and_the_others_return(api: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if asked_tests(request) == [3] else bugs_answer(request)

    api.get("bugs").mock(side_effect=answer)
    async with make_client(bug_batch_size=2) as client:
        batches = {tuple(b.test_ids): b async for b in bug_batches(client, [1, 2, 3])}
        with pytest.raises(UpstreamUnavailableError, match="after 3 attempts"):
            await bugs_for_tests(client, [1, 2, 3])
    assert [b.id for b in batches[(1, 2)].bugs] == [100, 200]
    assert batches[(1, 2)].error is None
    assert isinstance(batches[(3,)].error, UpstreamUnavailableError)
    assert batches[(3,)].bugs == []


async def test_bug_batches_go_on_while_the_caller_writes_up_to_a_bounded_backlog(
    api: respx.MockRouter,
) -> None:
    route = api.get("bugs").mock(side_effect=bugs_answer)
    async with make_client(bug_batch_size=1, max_concurrent_requests=4) as client:
        groups = bug_batch_groups(client, list(range(1, 21)))
        first = await anext(groups)
        await settle()  # the caller is busy writing: the event loop runs other tasks
        # Four in flight at a time, and at most six in flight or waiting: requests went on
        # after the first group was handed out, and stopped at the bound.
        asked_while_busy = route.call_count
        rest = [batch async for group in groups for batch in group]
    assert asked_while_busy == len(first) + 6
    received = sorted(t for batch in [*first, *rest] for t in batch.test_ids)
    assert received == list(range(1, 21))
    assert route.call_count == 20


class SlowBugs:
    """A stand-in for the client whose ``bugs_of_tests`` answers a test once it is released."""

    def __init__(self, *, failing: int | None = None) -> None:
        self.settings = load_settings(bug_batch_size=1, max_concurrent_requests=2)
        self.metrics = RequestMetrics()
        self.released: dict[int, asyncio.Event] = {}
        self.failing = failing
        self.started: list[int] = []
        self.cancelled: list[int] = []

    def release(self, test_id: int) -> None:
        self.released.setdefault(test_id, asyncio.Event()).set()

    async def bugs_of_tests(
        self, test_ids: list[int], *, raise_on_524: bool, timeouts: TimeoutBudget | None
    ) -> list[Bug]:
        (test_id,) = test_ids
        self.started.append(test_id)
        if test_id == self.failing:
            raise KeyError("a bug in the client, not an upstream error")
        try:
            await self.released.setdefault(test_id, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.cancelled.append(test_id)
            raise
        return []


def as_client(fake: SlowBugs) -> CustomerApiClient:
    return cast(CustomerApiClient, fake)


async def test_no_test_ids_no_groups() -> None:
    assert [group async for group in bug_batch_groups(as_client(SlowBugs()), [])] == []


async def test_a_caller_that_stops_early_cancels_the_batches_in_flight() -> None:
    fake = SlowBugs()
    groups = bug_batch_groups(as_client(fake), [1, 2, 3, 4, 5])
    waiting = asyncio.ensure_future(anext(groups))
    await settle()
    assert fake.started == [1, 2]  # two in flight: the bound
    fake.release(1)
    assert [batch.test_ids for batch in await waiting] == [[1]]
    await settle()
    assert fake.started == [1, 2, 3]  # 3 took the place of 1
    await groups.aclose()
    assert sorted(fake.cancelled) == [2, 3]
    await settle()
    assert fake.started == [1, 2, 3]  # nothing asked for after the caller left


async def test_an_error_that_is_not_upstream_reaches_the_caller() -> None:
    fake = SlowBugs(failing=2)
    with pytest.raises(KeyError, match="a bug in the client"):
        async for _ in bug_batch_groups(as_client(fake), [1, 2, 3]):
            pass
    assert 2 in fake.started
    assert 1 in fake.cancelled  # the batch still in flight does not outlive the failure
