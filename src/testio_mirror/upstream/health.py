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
