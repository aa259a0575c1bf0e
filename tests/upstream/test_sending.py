"""The sending layers through the client: errors by status, retries and backoff, the 429 pause,
calls that may not be repeated, metrics."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from testio_mirror.settings import load_settings
from testio_mirror.upstream.errors import (
    AuthError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    UpstreamError,
    UpstreamUnavailableError,
)
from testio_mirror.upstream.metrics import RequestMetrics
from testio_mirror.upstream.retry import DEFAULT_RETRY_AFTER_SECONDS, RetryPolicy
from testio_mirror.upstream.sending import (
    ApiCall,
    RateLimitPause,
    Sender,
    TooBigError,
    http_client_for,
)
from tests.helpers.fake_upstream import BASE, BUG, TOKEN, Sleeps, http_date, make_client

OK = {"products": [{"id": 1}]}


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, AuthError, "TESTIO_CUSTOMER_API_TOKEN"),
        (403, AuthError, "TESTIO_CUSTOMER_API_TOKEN"),
        (404, NotFoundError, "not found"),
        (400, RequestRejectedError, "HTTP 400: the request was malformed"),
        (422, RequestRejectedError, "HTTP 422: it cannot be done as asked"),
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
        assert "per_page" not in str(info.value)  # our words, never the server's
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


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("3", 3.0), (None, DEFAULT_RETRY_AFTER_SECONDS), ("3600", 7.5)],
)
async def test_client_waits_what_a_429_asks(
    api: respx.MockRouter, retry_after: str | None, expected: float
) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    route = api.get("products").mock(
        side_effect=[httpx.Response(429, headers=headers), httpx.Response(200, json=OK)]
    )
    sleeps = Sleeps()
    async with make_client(sleeps, retry_max_delay_seconds=7.5) as client:
        assert [p.id for p in await client.products()] == [1]
        assert client.metrics.rate_limit_wait_seconds == pytest.approx(expected, abs=0.25)
        assert (client.metrics.retries, client.metrics.rate_limited) == (1, 1)
    assert sleeps.delays == [pytest.approx(expected, abs=0.25)]  # no backoff on top
    assert route.call_count == 2


async def test_client_reads_an_http_date_retry_after(api: respx.MockRouter) -> None:
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    limited = httpx.Response(429, headers={"Retry-After": http_date(target)})
    api.get("products").mock(side_effect=[limited, httpx.Response(200, json=OK)])
    sleeps = Sleeps()
    async with make_client(sleeps) as client:
        await client.products()
    assert len(sleeps.delays) == 1
    assert 18.5 <= sleeps.delays[0] <= 20.0


async def test_backoff_between_retries_of_a_503_grows(api: respx.MockRouter) -> None:
    api.get("products").respond(503)
    sleeps = Sleeps()
    async with make_client(sleeps, retry_max_attempts=5) as client:
        with pytest.raises(UpstreamUnavailableError):
            await client.products()
    assert len(sleeps.delays) == 4
    assert sleeps.delays == sorted(sleeps.delays)
    assert len(set(sleeps.delays)) == 4
    for attempt, delay in enumerate(sleeps.delays, start=1):
        ceiling = 0.5 * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling


async def test_metrics_count_and_subtract(api: respx.MockRouter) -> None:
    api.get("products").respond(200, json=OK)
    limited = httpx.Response(429, headers={"Retry-After": "0"})
    ok = httpx.Response(200, json=BUG)
    api.get("bugs/2").mock(side_effect=[httpx.Response(500), limited, ok])
    async with make_client() as client:
        await client.products()
        before = client.metrics.snapshot()
        await client.bug(2)
        after = client.metrics
    assert (before.requests, before.retries, before.statuses) == (1, 0, {200: 1})
    assert before.bytes_received > 0
    delta = after - before
    assert (delta.requests, delta.retries, delta.rate_limited, delta.failures) == (3, 2, 1, 1)
    assert delta.statuses == {500: 1, 429: 1, 200: 1}
    assert delta.bytes_received > 0
    assert (after.requests, after.statuses[200]) == (4, 2)


# -- the layers on their own ------------------------------------------------------------------


@asynccontextmanager
async def sending(sleeps: Sleeps | None = None) -> AsyncIterator[tuple[Sender, RequestMetrics]]:
    """A Sender on its own, as a client builds it, and the metrics it counts into."""
    metrics = RequestMetrics()
    settings = load_settings(customer_api_token=TOKEN, customer_api_base_url=BASE)
    async with http_client_for(settings) as http:
        sender = Sender(
            http,
            token=TOKEN,
            policy=RetryPolicy(max_attempts=3, max_delay=30.0),
            max_in_flight=4,
            tally=lambda: metrics,
            deadline=settings.http_timeout_seconds,
            sleep=sleeps or Sleeps(),
            rng=random.Random(0),
        )
        yield sender, metrics


async def test_a_call_raising_on_524_is_not_retried(api: respx.MockRouter) -> None:
    route = api.get("bugs").mock(
        side_effect=[httpx.Response(524), httpx.Response(200, json={"bugs": []})]
    )
    sleeps = Sleeps()
    async with sending(sleeps) as (sender, metrics):
        with pytest.raises(TooBigError):
            await sender.send(ApiCall("GET", "bugs", raise_on_524=True))
    assert (metrics.requests, metrics.failures, metrics.retries) == (1, 1, 0)
    assert (route.call_count, sleeps.delays) == (1, [])


@pytest.mark.parametrize("failure", [httpx.Response(503), httpx.ReadTimeout("slow")])
async def test_a_503_or_a_timeout_while_raising_on_524_is_retried_as_usual(
    api: respx.MockRouter, failure: Any
) -> None:
    route = api.get("bugs").mock(side_effect=[failure, httpx.Response(200, json={"bugs": []})])
    async with sending() as (sender, metrics):
        response = await sender.send(ApiCall("GET", "bugs", raise_on_524=True))
    assert (response.status_code, metrics.retries) == (200, 1)
    assert route.call_count == 2


async def test_the_pause_after_a_429_holds_every_later_request(api: respx.MockRouter) -> None:
    limited = httpx.Response(429, headers={"Retry-After": "3"})
    api.get("products").mock(side_effect=[limited, httpx.Response(200, json=OK)])
    api.get("bugs/7").respond(200, json=BUG)
    sleeps = Sleeps()  # no time passes while it "sleeps": the pause is still on afterwards
    async with make_client(sleeps) as client:
        await client.products()
        await client.bug(7)  # another path, never refused itself
    assert sleeps.delays == [pytest.approx(3.0, abs=0.25), pytest.approx(3.0, abs=0.25)]


async def test_send_unchecked_answers_any_status_once(api: respx.MockRouter) -> None:
    route = api.get("bugs/reject_reasons").respond(503)
    async with sending() as (sender, metrics):
        response = await sender.send_unchecked(ApiCall("GET", "bugs/reject_reasons"))
    assert response.status_code == 503
    assert (metrics.requests, metrics.failures, metrics.retries) == (1, 1, 0)
    assert route.call_count == 1


def test_a_pause_only_ever_grows() -> None:
    pause = RateLimitPause()
    assert pause.remaining() <= 0
    pause.extend(5.0)
    pause.extend(1.0)  # a shorter Retry-After does not cut the pause short
    assert 4.0 < pause.remaining() <= 5.0


def test_a_call_names_its_request() -> None:
    assert ApiCall("PUT", "bugs/7/accept").where == "PUT bugs/7/accept"
