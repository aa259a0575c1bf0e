"""Bug batches against a faked network: de-duplicated batches, halving on 524 and timeouts,
failed batches reported, requests going on while the caller writes."""

from __future__ import annotations

import httpx
import pytest
import respx

from testio_mirror.upstream.bug_batches import bug_batch_groups, bug_batches, bugs_for_tests
from testio_mirror.upstream.errors import UpstreamUnavailableError
from tests.helpers.fake_upstream import make_client
from tests.polling import settle


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


async def test_a_timeout_on_a_multi_test_batch_splits_it(api: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if len(asked_tests(request)) > 1:
            raise httpx.ReadTimeout("slow", request=request)
        return bugs_answer(request)

    api.get("bugs").mock(side_effect=answer)
    async with make_client(bug_batch_size=4) as client:
        bugs = await bugs_for_tests(client, [1, 2, 3, 4])
        assert (client.metrics.batch_splits, client.metrics.retries) == (3, 0)
    assert sorted(b.id for b in bugs) == [100, 200, 300, 400]


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
