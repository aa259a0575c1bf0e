"""The answer of the client's cheap health check, and ``UpstreamHealth``: whether TestIO is known
down, from the last requests the read-through and the health check made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

HealthState = Literal["healthy", "unauthorized", "rate_limited", "unreachable"]


@dataclass(frozen=True)
class HealthReport:
    """How TestIO answered one small authenticated request."""

    state: HealthState
    checked_at: datetime
    latency_ms: float | None  # None when no request was sent (no token)
    detail: str  # one line for a human: what happened and, if not healthy, what to do


def report_for_status(status: int, checked_at: datetime, latency_ms: float) -> HealthReport:
    """What an answer of HTTP ``status`` to the health check says."""
    if status < 400:
        return HealthReport("healthy", checked_at, latency_ms, f"HTTP {status}")
    if status in (401, 403):
        detail = f"HTTP {status}: check TESTIO_CUSTOMER_API_TOKEN"
        return HealthReport("unauthorized", checked_at, latency_ms, detail)
    if status == 429:
        detail = "HTTP 429: TestIO asks to slow down"
        return HealthReport("rate_limited", checked_at, latency_ms, detail)
    detail = f"HTTP {status}: TestIO is not answering normally"
    return HealthReport("unreachable", checked_at, latency_ms, detail)


@dataclass(frozen=True)
class Outage:
    """TestIO is known down: since when, and what the request that showed it met."""

    since: datetime
    detail: str


class UpstreamHealth:
    """What the last requests of the read-through and the health check said about TestIO.

    TestIO is *known down* from a request that met a connection failure, a timeout, a 5xx, or no
    answer within the read-through deadline, until a request gets any other answer (a 404 or a
    401 is TestIO answering). While it is down, ``may_probe`` lets one request through every
    ``probe_interval`` seconds, so that readers are answered from the mirror at once instead of
    each waiting on TestIO again.

    Example::

        health = UpstreamHealth(probe_interval=10.0)
        if health.outage() is None or health.may_probe():
            ...  # ask TestIO, then health.succeeded() or health.failed("HTTP 503")
    """

    def __init__(
        self, probe_interval: float, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._probe_interval = probe_interval
        self._clock = clock
        self._outage: Outage | None = None
        self._last_try: datetime | None = None  # the last request sent while down (or failing)

    def outage(self) -> Outage | None:
        """The outage under way, or None when TestIO is not known down."""
        return self._outage

    def may_probe(self) -> bool:
        """Whether a request may be sent now: always when TestIO is not known down; while it
        is, once per ``probe_interval`` (the caller that gets True is that once)."""
        if self._outage is None:
            return True
        now = self._clock()
        if self._last_try is not None and (now - self._last_try) < timedelta(
            seconds=self._probe_interval
        ):
            return False
        self._last_try = now
        return True

    def next_probe_at(self) -> datetime | None:
        """When ``may_probe`` says yes again, while TestIO is known down."""
        if self._outage is None or self._last_try is None:
            return None
        return self._last_try + timedelta(seconds=self._probe_interval)

    def failed(self, detail: str) -> None:
        """A request met a connection failure, a timeout, a 5xx, or missed its deadline."""
        now = self._clock()
        self._last_try = now
        if self._outage is None:
            self._outage = Outage(now, detail)

    def succeeded(self) -> None:
        """TestIO answered a request (whatever it said, as long as it was not a 5xx)."""
        self._outage = None
        self._last_try = None

    def record(self, report: HealthReport) -> None:
        """What the health check found: ``unreachable`` is an outage, anything else an answer."""
        if report.state == "unreachable":
            self.failed(report.detail)
        else:
            self.succeeded()
