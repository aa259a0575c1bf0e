"""Retry-After parsing, the backoff policy, and the waits the client asks its sleep for."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from testio_mirror.upstream.errors import UpstreamUnavailableError
from testio_mirror.upstream.retry import DEFAULT_RETRY_AFTER_SECONDS, RetryPolicy, parse_retry_after
from tests.upstream.fakes import BASE, BUG, Sleeps, make_client

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
OK = {"products": [{"id": 1}]}


class EdgeRandom(random.Random):
    """A Random whose ``uniform`` always answers one end of the range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.mark.parametrize(
    ("value", "seconds"), [("3", 3.0), ("0", 0.0), ("1.5", 1.5), ("-4", 0.0), (" 7 ", 7.0)]
)
def test_parse_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date_relative_to_now() -> None:
    assert parse_retry_after(http_date(NOW + timedelta(seconds=90)), NOW) == 90.0
    assert parse_retry_after(http_date(NOW - timedelta(hours=1)), NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "nan", "Mon, 99 Foo 2026 99:99"])
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_backoff_is_exponential_with_equal_jitter(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=10, max_delay=1000.0)
    ceiling = 0.5 * 2 ** (attempt - 1)
    assert policy.backoff(attempt, EdgeRandom(high=False)) == ceiling / 2
    assert policy.backoff(attempt, EdgeRandom(high=True)) == ceiling
    waits = [policy.backoff(attempt, random.Random(seed)) for seed in range(40)]
    assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
    assert len(set(waits)) > 30  # jittered, not one fixed value


def test_backoff_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(max_attempts=20, max_delay=3.0)
    assert policy.backoff(9, EdgeRandom(high=True)) == 3.0
    assert policy.backoff(9, EdgeRandom(high=False)) == 1.5
    assert all(policy.backoff(15, random.Random(s)) <= 3.0 for s in range(20))


def test_rate_limit_delay() -> None:
    policy = RetryPolicy(max_attempts=3, max_delay=30.0)
    assert policy.rate_limit_delay(None) == DEFAULT_RETRY_AFTER_SECONDS
    assert policy.rate_limit_delay("later") == DEFAULT_RETRY_AFTER_SECONDS
    assert policy.rate_limit_delay("5") == 5.0
    assert policy.rate_limit_delay("120") == 30.0
    assert policy.rate_limit_delay(http_date(NOW + timedelta(seconds=12)), NOW) == 12.0
    assert RetryPolicy(max_attempts=3, max_delay=1.0).rate_limit_delay(None) == 1.0


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
