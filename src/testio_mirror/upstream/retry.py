"""When to try a request again, and how long to wait first.

Backoff is exponential with "equal jitter" (half fixed, half random) so that many clients hit by
the same outage do not come back in lockstep; every wait is capped by
``TESTIO_RETRY_MAX_DELAY_SECONDS``. A 429 waits what ``Retry-After`` asks (seconds or an HTTP
date), ``DEFAULT_RETRY_AFTER_SECONDS`` when the header is absent or unreadable, capped the same way.
A ``TimeoutBudget`` shared by the calls to one endpoint says when its timeouts are too many: the
endpoint is then treated as down for the rest of the run instead of being asked on and on.

Example::

    policy = RetryPolicy(max_attempts=5, max_delay=30.0)
    policy.backoff(attempt=1, rng=random.Random())   # between 0.25 and 0.5 seconds
    policy.rate_limit_delay("120")                   # 30.0: capped
    budget = TimeoutBudget(limit=3)                  # then: ApiCall(..., timeouts=budget)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_RETRY_AFTER_SECONDS = 2.0
BASE_DELAY_SECONDS = 0.5


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is unreadable
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits for one request."""

    max_attempts: int
    max_delay: float
    base_delay: float = BASE_DELAY_SECONDS
    default_retry_after: float = DEFAULT_RETRY_AFTER_SECONDS

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Wait before retry number ``attempt`` (1 = the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return float(ceiling / 2 + rng.uniform(0, ceiling / 2))

    def rate_limit_delay(self, retry_after: str | None, now: datetime | None = None) -> float:
        """Wait after a 429 that carried ``retry_after`` (the raw header, or None)."""
        asked = parse_retry_after(retry_after, now)
        return min(self.default_retry_after if asked is None else asked, self.max_delay)


class TimeoutBudget:
    """How many timeouts the calls sharing it may meet before their endpoint is treated as
    down (``exhausted``): from then on they stop instead of asking again."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def spend(self) -> None:
        """One attempt timed out."""
        self.spent += 1

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.limit
