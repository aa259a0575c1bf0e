"""Retry-After parsing and the backoff policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from testio_mirror.upstream.retry import (
    DEFAULT_RETRY_AFTER_SECONDS,
    RetryPolicy,
    TimeoutBudget,
    parse_retry_after,
)
from tests.helpers.fake_upstream import http_date

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class EdgeRandom(random.Random):
    """A Random whose ``uniform`` always answers one end of the range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


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


def test_a_timeout_budget_runs_out_at_its_limit() -> None:
    budget = TimeoutBudget(limit=2)
    assert not budget.exhausted
    budget.spend()
    assert not budget.exhausted
    budget.spend()
    assert budget.exhausted
