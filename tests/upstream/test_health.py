"""What an answer to the health check says, and what ``UpstreamHealth`` makes of failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testio_mirror.upstream.health import HealthReport, Outage, UpstreamHealth, report_for_status

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "state", "words"),
    [
        (200, "healthy", "HTTP 200"),
        (204, "healthy", "HTTP 204"),
        (401, "unauthorized", "TESTIO_CUSTOMER_API_TOKEN"),
        (403, "unauthorized", "TESTIO_CUSTOMER_API_TOKEN"),
        (429, "rate_limited", "slow down"),
        (404, "unreachable", "not answering normally"),
        (503, "unreachable", "not answering normally"),
    ],
)
def test_report_for_status(status: int, state: str, words: str) -> None:
    report = report_for_status(status, NOW, 12.5)
    assert (report.state, report.checked_at, report.latency_ms) == (state, NOW, 12.5)
    assert words in report.detail


class StepClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_upstream_health_is_down_from_a_failure_until_an_answer() -> None:
    clock = StepClock()
    health = UpstreamHealth(probe_interval=10.0, clock=clock)
    assert (health.outage(), health.may_probe(), health.may_probe()) == (None, True, True)

    health.failed("GET products: HTTP 503")
    clock.advance(3)
    health.failed("GET bugs: connection failed (ConnectError)")
    assert health.outage() == Outage(NOW, "GET products: HTTP 503")  # since the first failure
    assert health.next_probe_at() == NOW + timedelta(seconds=13)

    health.succeeded()
    assert (health.outage(), health.next_probe_at(), health.may_probe()) == (None, None, True)


def test_a_down_upstream_lets_one_probe_through_per_interval() -> None:
    clock = StepClock()
    health = UpstreamHealth(probe_interval=10.0, clock=clock)
    health.failed("no answer within 2 s")
    allowed = []
    for step in (0, 5, 5, 0, 9, 1, 0):
        clock.advance(step)
        allowed.append(health.may_probe())
    # At 10 s one caller gets the probe and the next one at the same moment does not.
    assert allowed == [False, False, True, False, False, True, False]


def test_health_reports_mark_upstream_down_or_up() -> None:
    health = UpstreamHealth(probe_interval=10.0, clock=StepClock())
    health.record(HealthReport("unreachable", NOW, 5.0, "connection failed: check the network"))
    outage = health.outage()
    assert outage is not None
    assert outage.detail == "connection failed: check the network"
    assert health.may_probe() is False
    health.record(HealthReport("rate_limited", NOW, 5.0, "HTTP 429"))  # it answered
    assert health.outage() is None
