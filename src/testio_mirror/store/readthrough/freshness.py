"""Freshness rules: when a copy in the mirror is still good, and how to say so.

Archived and cancelled tests never change, so they (and their bugs, once fetched after the test
closed) never go stale. Open tests and their bugs go stale after ``TESTIO_OPEN_TEST_TTL_SECONDS``;
products, features and listings after ``TESTIO_PRODUCT_TTL_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from testio_mirror.settings import Settings
from testio_mirror.store.records import Freshness
from testio_mirror.store.sqlite.timefmt import to_db, utc_now
from testio_mirror.upstream.models import FINAL_TEST_STATUSES
from testio_mirror.upstream.product_list import RemovalRule

Clock = Callable[[], datetime]
DEFAULT_REMOVAL_RULE = RemovalRule()


@dataclass(frozen=True)
class FreshnessPolicy:
    """TTLs by mutability, the clock they are measured with, and how large a removal from a
    refreshed product list needs a second listing."""

    open_test_ttl: float
    product_ttl: float
    clock: Clock = utc_now
    removal: RemovalRule = DEFAULT_REMOVAL_RULE

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = utc_now) -> FreshnessPolicy:
        return cls(
            settings.open_test_ttl_seconds,
            settings.product_ttl_seconds,
            clock,
            RemovalRule.from_settings(settings),
        )

    def stamp(self) -> str:
        """Now, as the mirror stores times."""
        text = to_db(self.clock())
        assert text is not None
        return text

    def test_ttl(self, status: str | None) -> float | None:
        """None: never stale."""
        return None if status in FINAL_TEST_STATUSES else self.open_test_ttl

    def is_fresh(self, fetched_at: datetime | None, ttl: float | None) -> bool:
        if fetched_at is None:
            return False
        return ttl is None or (self.clock() - fetched_at).total_seconds() <= ttl

    def mirror(
        self, fetched_at: datetime | None, ttl: float | None, reason: str | None = None
    ) -> Freshness:
        """Freshness of a copy served from the mirror; ``reason`` overrides the stale reason."""
        now = self.clock()
        age = (now - fetched_at).total_seconds() if fetched_at else None
        stale = reason is not None or not self.is_fresh(fetched_at, ttl)
        if stale and reason is None:
            reason = (
                "never fetched from TestIO"
                if fetched_at is None
                else f"last fetched {age:.0f} s ago, older than its {ttl:.0f} s freshness limit"
            )
        return Freshness(
            source="mirror", as_of=fetched_at, age_seconds=age, stale=stale, stale_reason=reason
        )

    def api(self, fetched_at: datetime | None) -> Freshness:
        """Freshness of data fetched from TestIO for this very answer."""
        now = self.clock()
        age = (now - fetched_at).total_seconds() if fetched_at else 0.0
        return Freshness(source="api", as_of=fetched_at or now, age_seconds=age, stale=False)
