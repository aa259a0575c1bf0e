"""CustomerApiClient against a faked network: every error of errors.py, triage, features, bugs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from testio_mirror.upstream import client as client_module
from testio_mirror.upstream.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    UpstreamError,
    UpstreamUnavailableError,
)
from testio_mirror.upstream.models import Product
from tests.polling import settle
from tests.upstream.fakes import BASE, BUG, Sleeps, make_client


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def asked_tests(request: httpx.Request) -> list[int]:
    return [int(t) for t in request.url.params["filter_test_cycle_ids"].split(",")]


def bugs_answer(request: httpx.Request) -> httpx.Response:
    """Every asked test has one bug, id = test id * 100."""
    bugs = [{"id": t * 100, "test": {"id": t}} for t in asked_tests(request)]
    return httpx.Response(200, json={"bugs": bugs})


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, AuthError, "TESTIO_CUSTOMER_API_TOKEN"),
        (403, AuthError, "TESTIO_CUSTOMER_API_TOKEN"),
        (404, NotFoundError, "not found"),
        (400, RequestRejectedError, "per_page too large"),
        (422, RequestRejectedError, "per_page too large"),
    ],
)
async def test_4xx_maps_to_its_error_and_is_not_retried(
    api: respx.MockRouter, status: int, error: type[UpstreamError], words: str
) -> None:
    route = api.get("products/9").respond(status, json={"error": "per_page too large"})
    async with make_client() as client:
        with pytest.raises(error) as info:
            await client.product(9)
        assert type(info.value) is error
        assert words in str(info.value)
        assert (info.value.status, info.value.request) == (status, "GET products/9")
        assert (route.call_count, client.metrics.retries) == (1, 0)


async def test_without_a_token_nothing_is_sent(api: respx.MockRouter) -> None:
    products = api.get("products").respond(200, json={"products": []})
    health = api.get("bugs/reject_reasons").respond(200, json={"reject_reasons": []})
    async with make_client(customer_api_token=None) as client:
        with pytest.raises(AuthError, match="TESTIO_CUSTOMER_API_TOKEN"):
            await client.products()
        report = await client.check_health()
        assert client.metrics.requests == 0
    assert (report.state, report.latency_ms) == ("unauthorized", None)
    assert "TESTIO_CUSTOMER_API_TOKEN" in report.detail
    assert (products.call_count, health.call_count) == (0, 0)


async def test_429_past_the_attempts_is_rate_limited(api: respx.MockRouter) -> None:
    route = api.get("products").respond(429, headers={"Retry-After": "4"})
    async with make_client() as client:
        with pytest.raises(RateLimitedError) as info:
            await client.products()
        assert (info.value.retry_after, info.value.status) == (4.0, 429)
        assert route.call_count == 3
        assert (client.metrics.rate_limited, client.metrics.retries) == (3, 2)


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (524, "HTTP 524"),
        (httpx.ConnectError, "connection failed"),
        (httpx.ReadTimeout, "timed out"),
    ],
)
async def test_5xx_and_transport_errors_are_retried_then_unavailable(
    api: respx.MockRouter, failure: int | type[Exception], words: str
) -> None:
    route = api.get("products")
    if isinstance(failure, int):
        route.respond(failure)
    else:
        route.mock(side_effect=failure)
    sleeps = Sleeps()
    async with make_client(sleeps, retry_max_attempts=4) as client:
        with pytest.raises(UpstreamUnavailableError, match=f"{words}.* after 4 attempts"):
            await client.products()
        assert route.call_count == 4
        assert (client.metrics.retries, client.metrics.failures) == (3, 4)
    assert len(sleeps.delays) == 3


async def test_500_then_200_succeeds_with_one_retry(api: respx.MockRouter) -> None:
    ok = httpx.Response(200, json={"products": [{"id": 1}]})
    api.get("products").mock(side_effect=[httpx.Response(500), ok])
    async with make_client() as client:
        assert [p.id for p in await client.products()] == [1]
        assert client.metrics.retries == 1
        assert client.metrics.statuses == {500: 1, 200: 1}


async def test_non_json_200_is_a_bad_response_not_retried(api: respx.MockRouter) -> None:
    route = api.get("products").respond(200, text="<html>login</html>")
    async with make_client() as client:
        with pytest.raises(BadResponseError, match="not JSON") as info:
            await client.products()
    assert "TESTIO_CUSTOMER_API_BASE_URL" in str(info.value)
    assert (route.call_count, info.value.status) == (1, 200)


@pytest.mark.parametrize(
    "body", [{"products": {}}, [], {"items": []}, "products", {"products": [1]}]
)
async def test_json_of_the_wrong_shape_is_a_bad_response(api: respx.MockRouter, body: Any) -> None:
    route = api.get("products").respond(200, json=body)
    async with make_client() as client:
        with pytest.raises(BadResponseError):
            await client.products()
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("method", "action"),
    [
        ("accept_bug", "accept"),
        ("mark_bug_as_known", "mark_as_known"),
        ("mark_bug_as_fixed", "mark_as_fixed"),
        ("mark_bug_as_exported", "mark_as_exported"),
    ],
)
async def test_triage_puts_to_the_action(api: respx.MockRouter, method: str, action: str) -> None:
    route = api.put(f"bugs/7/{action}").respond(200, json=BUG)
    async with make_client() as client:
        bug = await getattr(client, method)(7)
    assert (bug.id, bug.status, route.call_count) == (7, "accepted", 1)
    assert route.calls.last.request.method == "PUT"


async def test_reject_sends_reason_and_comment(api: respx.MockRouter) -> None:
    route = api.put("bugs/7/reject").respond(200, json=BUG)
    async with make_client() as client:
        assert (await client.reject_bug(7, "duplicate", "see #6")).id == 7
        await client.reject_bug(7, "duplicate")
    sent = [json.loads(call.request.content) for call in route.calls]
    assert sent == [{"reason": "duplicate", "comment": "see #6"}, {"reason": "duplicate"}]


@pytest.mark.parametrize(
    ("action", "failure", "calls"),
    [
        ("reject", httpx.Response(500), 1),
        ("reject", httpx.ReadTimeout("slow"), 1),
        ("reject", httpx.Response(429, headers={"Retry-After": "0"}), 2),
        ("reject", httpx.ConnectError("refused"), 2),
        ("accept", httpx.Response(500), 2),
        ("accept", httpx.ReadTimeout("slow"), 2),
    ],
)
async def test_triage_retries_only_what_cannot_apply_twice(
    api: respx.MockRouter, action: str, failure: Any, calls: int
) -> None:
    route = api.put(f"bugs/7/{action}").mock(side_effect=[failure, httpx.Response(200, json=BUG)])
    async with make_client() as client:
        call = client.reject_bug(7, "duplicate") if action == "reject" else client.accept_bug(7)
        if calls == 1:
            with pytest.raises(UpstreamUnavailableError, match="check the bug"):
                await call
        else:
            assert (await call).id == 7
    assert route.call_count == calls


async def test_features_of_a_product_without_sections(api: respx.MockRouter) -> None:
    api.get("products/5").respond(200, json={"product": {"id": 5}})
    api.get("products/5/features").respond(200, json={"features": [{"id": 1}, {"id": 2}]})
    async with make_client() as client:
        assert [f.id for f in await client.features(5)] == [1, 2]


async def test_features_per_section_are_deduplicated(api: respx.MockRouter) -> None:
    flat = api.get("products/5/features").respond(422)
    api.get("products/5/sections/10/features").respond(
        200, json={"features": [{"id": 1}, {"id": 2}]}
    )
    api.get("products/5/sections/11/features").respond(
        200, json={"features": [{"id": 2}, {"id": 3}]}
    )
    product = Product.from_wire({"id": 5, "sections": [{"id": 10}, {"id": 11}]})
    async with make_client() as client:
        assert sorted(f.id for f in await client.features(product)) == [1, 2, 3]
    assert flat.call_count == 0


async def test_features_422_falls_back_to_sections_with_default(api: respx.MockRouter) -> None:
    product = {"id": 5, "sections_with_default": [{"id": 99}]}
    api.get("products/5").respond(200, json={"product": product})
    flat = api.get("products/5/features").respond(422, json={"error": "has sections"})
    api.get("products/5/sections/99/features").respond(200, json={"features": [{"id": 4}]})
    async with make_client() as client:
        assert [f.id for f in await client.features(Product.from_wire(product))] == [4]
        flat.respond(400, json={"error": "bad"})
        with pytest.raises(RequestRejectedError):  # only a 422 means "ask the sections"
            await client.features(Product.from_wire(product))


async def test_features_422_learns_the_sections_the_product_gained(api: respx.MockRouter) -> None:
    # BUG: the 422 says the product gained sections since it was read, but the fallback asks
    # the sections of that stale Product (here only the default one) and misses the new ones.
    fresh = {"id": 5, "sections": [{"id": 10}, {"id": 11}], "sections_with_default": [{"id": 99}]}
    api.get("products/5").respond(200, json={"product": fresh})
    api.get("products/5/features").respond(422, json={"error": "product has sections"})
    for section, features in ((99, []), (10, [{"id": 1}]), (11, [{"id": 2}])):
        api.get(f"products/5/sections/{section}/features").respond(200, json={"features": features})
    stale = Product.from_wire({"id": 5, "sections_with_default": [{"id": 99}]})
    async with make_client() as client:
        assert sorted(f.id for f in await client.features(stale)) == [1, 2]


async def test_bug_ids_are_deduplicated_and_batched(api: respx.MockRouter) -> None:
    route = api.get("bugs").mock(side_effect=bugs_answer)
    async with make_client(bug_batch_size=2) as client:
        bugs = await client.bugs_for_tests([1, 2, 2, 3, 1, 4, 5])
    asked = sorted(call.request.url.params["filter_test_cycle_ids"] for call in route.calls)
    assert asked == ["1,2", "3,4", "5"]
    assert sorted(b.id for b in bugs) == [100, 200, 300, 400, 500]


async def test_a_524_on_a_big_batch_splits_it(api: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(524) if len(asked_tests(request)) > 10 else bugs_answer(request)

    route = api.get("bugs").mock(side_effect=answer)
    async with make_client(bug_batch_size=40) as client:
        bugs = await client.bugs_for_tests(range(1, 41))
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
        bugs = await client.bugs_for_tests([1, 2, 3, 4])
        assert (client.metrics.batch_splits, client.metrics.retries) == (3, 0)
    assert sorted(b.id for b in bugs) == [100, 200, 300, 400]


async def test_a_failed_batch_is_reported_and_the_others_return(api: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if asked_tests(request) == [3] else bugs_answer(request)

    api.get("bugs").mock(side_effect=answer)
    async with make_client(bug_batch_size=2) as client:
        batches = {tuple(b.test_ids): b async for b in client.bug_batches([1, 2, 3])}
        with pytest.raises(UpstreamUnavailableError, match="after 3 attempts"):
            await client.bugs_for_tests([1, 2, 3])
    assert [b.id for b in batches[(1, 2)].bugs] == [100, 200]
    assert batches[(1, 2)].error is None
    assert isinstance(batches[(3,)].error, UpstreamUnavailableError)
    assert batches[(3,)].bugs == []


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (httpx.Response(200, json={"reject_reasons": []}), "healthy"),
        (httpx.Response(401), "unauthorized"),
        (httpx.Response(403), "unauthorized"),
        (httpx.Response(429), "rate_limited"),
        (httpx.Response(503), "unreachable"),
        (httpx.ConnectError("refused"), "unreachable"),
    ],
)
async def test_check_health(api: respx.MockRouter, answer: Any, state: str) -> None:
    route = api.get("bugs/reject_reasons").mock(side_effect=[answer])
    async with make_client() as client:
        report = await client.check_health()
    assert (report.state, route.call_count) == (state, 1)
    assert report.latency_ms is not None
    assert report.latency_ms >= 0


async def test_bug_batches_go_on_while_the_caller_writes_up_to_a_bounded_backlog(
    api: respx.MockRouter,
) -> None:
    route = api.get("bugs").mock(side_effect=bugs_answer)
    async with make_client(bug_batch_size=1, max_concurrent_requests=4) as client:
        groups = client.bug_batch_groups(list(range(1, 21)))
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


PRODUCTS = {"products": [{"id": 1, "name": "Shop"}]}


async def test_a_prefetched_product_list_is_taken_once_and_counted_when_taken(
    api: respx.MockRouter,
) -> None:
    route = api.get("products").mock(return_value=httpx.Response(200, json=PRODUCTS))
    async with make_client() as client:
        client.prefetch_products()
        client.prefetch_products()  # already on its way: not asked twice
        await settle()
        assert route.call_count == 1
        assert client.metrics.requests == 0  # not yet taken
        products = await client.products()
        assert client.metrics.requests == 1
        assert [p.id for p in products] == [1]
        await client.products()  # the next call asks again
    assert route.call_count == 2
    assert client.metrics.requests == 2


async def test_a_prefetch_too_old_or_never_taken_is_dropped_and_still_counted(
    api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = api.get("products").mock(return_value=httpx.Response(200, json=PRODUCTS))
    async with make_client() as client:
        monkeypatch.setattr(client_module, "PREFETCH_SECONDS", -1.0)
        client.prefetch_products()
        await settle()
        await client.products()  # the prefetched answer is too old: asked again
        assert route.call_count == 2
        assert client.metrics.requests == 2
        client.prefetch_products()
        await settle()
    assert route.call_count == 3
    assert client.metrics.requests == 3  # the one never taken is counted at close


async def test_a_failed_prefetch_fails_the_products_call(api: respx.MockRouter) -> None:
    api.get("products").mock(return_value=httpx.Response(401))
    async with make_client() as client:
        client.prefetch_products()
        with pytest.raises(AuthError):
            await client.products()
        assert client.metrics.statuses[401] == 1
