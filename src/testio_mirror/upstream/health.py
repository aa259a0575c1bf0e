"""The answer of the client's cheap health check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
