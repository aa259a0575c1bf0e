"""What the client did: requests, retries, bytes and time spent waiting for rate limits.

One ``RequestMetrics`` lives on each client; sync and status read it, and subtract two snapshots
to see what one run cost.

Example::

    before = client.metrics.snapshot()
    ...
    spent = client.metrics.snapshot() - before
    spent.requests, spent.retries
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields, replace


@dataclass
class RequestMetrics:
    """Counters since the client was made."""

    requests: int = 0  # attempts sent, retries included
    retries: int = 0  # attempts that were repeats of an earlier one
    batch_splits: int = 0  # bug batches halved after a 524
    rate_limited: int = 0  # 429 answers
    failures: int = 0  # attempts that ended in a 5xx, a timeout or a broken connection
    bytes_received: int = 0
    writes: int = 0  # triage PUTs sent (each once: writes are never retried)
    writes_unanswered: int = 0  # of those, how many ended without a usable answer ("unknown")
    rate_limit_wait_seconds: float = 0.0  # summed over requests that waited
    statuses: Counter[int] = field(default_factory=Counter)

    def snapshot(self) -> RequestMetrics:
        """A copy that later requests do not change."""
        return replace(self, statuses=Counter(self.statuses))

    def absorb(self, other: RequestMetrics) -> None:
        """Add ``other``'s counts to these (requests counted apart, taken in later)."""
        for item in fields(self):
            if item.name != "statuses":
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        self.statuses.update(other.statuses)

    def __sub__(self, earlier: RequestMetrics) -> RequestMetrics:
        delta = RequestMetrics()
        for item in fields(self):
            if item.name == "statuses":
                continue
            setattr(delta, item.name, getattr(self, item.name) - getattr(earlier, item.name))
        delta.statuses = self.statuses - earlier.statuses
        return delta
