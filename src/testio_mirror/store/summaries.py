"""Summaries of one product or one feature: what it holds, how testing went, how its bugs fared.

Counted from the mirror's live rows after the thing itself is read through (``get_product``,
a product's feature list); the bugs' freshness is the collection's, as ``bug_stats`` says it.

Example::

    summary = await mirror.summaries.product(7)
    summary.tests_last_30_days, summary.bugs_by_status
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosqlite

from testio_mirror.errors import RemovedError
from testio_mirror.store.bugs import BugRepository
from testio_mirror.store.features import FeatureRepository
from testio_mirror.store.products import ProductRepository
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.readthrough.repository import removed
from testio_mirror.store.records import BugFilter, Freshness
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import from_db, to_db
from testio_mirror.upstream.errors import NotFoundError

LATEST_TESTS = 5  # the newest tests a feature's summary names


@dataclass(frozen=True)
class BugTally:
    """Live bugs by status and by severity; ``acceptance_rate`` over the decided ones."""

    total: int
    by_status: dict[str, int]
    by_severity: dict[str, int]

    @property
    def acceptance_rate(self) -> float | None:
        """accepted / (accepted + rejected), to four decimals; None when none was decided."""
        accepted = self.by_status.get("accepted", 0)
        decided = accepted + self.by_status.get("rejected", 0)
        return round(accepted / decided, 4) if decided else None


@dataclass(frozen=True)
class SectionSummary:
    id: int
    name: str | None
    is_default: bool
    tests: int


@dataclass(frozen=True)
class TestBrief:
    id: int
    title: str | None
    status: str | None
    end_at: datetime | None


@dataclass(frozen=True)
class ProductSummary:
    id: int
    name: str | None
    type: str | None
    features: int
    tests: int
    tests_last_30_days: int
    tests_last_90_days: int
    last_test_end_at: datetime | None
    now: datetime
    sections: list[SectionSummary]
    bugs: BugTally
    freshness: Freshness
    bugs_freshness: Freshness


@dataclass(frozen=True)
class FeatureSummary:
    id: int
    title: str | None
    description: str | None
    user_stories: list[str]
    product_id: int
    product_name: str | None
    tests: int
    latest_tests: list[TestBrief]
    bugs: BugTally
    freshness: Freshness
    bugs_freshness: Freshness


class SummaryRepository:
    """Product and feature summaries over the other repositories' read-throughs."""

    def __init__(
        self,
        db: Database,
        policy: FreshnessPolicy,
        products: ProductRepository,
        features: FeatureRepository,
        bugs: BugRepository,
    ) -> None:
        self._db = db
        self._policy = policy
        self._products = products
        self._features = features
        self._bugs = bugs

    async def product(self, product_id: int) -> ProductSummary:
        """Counts of a product's features, tests and bugs; tests that ended in the last 30 and
        90 days (``now - days <= end_at <= now``) and the latest end up to now; its sections
        with their tests; its bugs by status and severity.

        Raises:
            NotFoundError: TestIO does not know the product.
            RemovedError: the product left the account.
            OfflineError, UpstreamError: as ``ProductRepository.get_product``.
        """
        found = await self._products.get_product(product_id)
        now = self._policy.clock()
        stamps = [to_db(now - timedelta(days=days)) for days in (30, 90)]
        async with self._db.reader() as conn:
            features = await _one(
                conn,
                "SELECT count(*) FROM features WHERE product_id = ? AND deleted_at IS NULL",
                (product_id,),
            )
            found_tests = list(
                await conn.execute_fetchall(
                    "SELECT count(*), coalesce(sum(end_at >= ? AND end_at <= ?), 0), "
                    "coalesce(sum(end_at >= ? AND end_at <= ?), 0), "
                    "max(CASE WHEN end_at <= ? THEN end_at END) "
                    "FROM tests WHERE product_id = ? AND deleted_at IS NULL",
                    (stamps[0], to_db(now), stamps[1], to_db(now), to_db(now), product_id),
                )
            )
            tests = found_tests[0]
            sections = await conn.execute_fetchall(
                "SELECT s.id, s.name, s.is_default, (SELECT count(*) FROM tests t "
                "WHERE t.section_id = s.id AND t.deleted_at IS NULL) AS tests "
                "FROM sections s WHERE s.product_id = ? AND s.deleted_at IS NULL ORDER BY s.id",
                (product_id,),
            )
            tally = await _tally(conn, "b.product_id = ?", product_id)
        return ProductSummary(
            id=found.value.id,
            name=found.value.name,
            type=found.value.type,
            features=features,
            tests=int(tests[0]),
            tests_last_30_days=int(tests[1]),
            tests_last_90_days=int(tests[2]),
            last_test_end_at=from_db(tests[3]),
            now=now,
            sections=[
                SectionSummary(row[0], row[1], bool(row[2]), int(row[3])) for row in sections
            ],
            bugs=tally,
            freshness=found.freshness,
            bugs_freshness=await self._bugs.freshness(BugFilter(product_id=product_id)),
        )

    async def feature(self, feature_id: int) -> FeatureSummary:
        """A feature with its product, user stories, tests (how many, the newest few by end)
        and its bugs by status and severity. Its product's feature list is read through
        first; a feature the mirror does not hold has every product's feature list read
        through before it is declared unknown.

        Raises:
            NotFoundError: no product of the account has this feature.
            RemovedError: the feature (or its product) left the account.
            OfflineError, UpstreamError: as ``FeatureRepository.list_features``.
        """
        product_id = await self._product_of(feature_id)
        if product_id is None:
            for known in await self._products.known_ids():
                try:
                    await self._features.list_features(known)
                except (NotFoundError, RemovedError):
                    continue  # that product went away meanwhile: its features did too
            product_id = await self._product_of(feature_id)
        if product_id is None:
            raise NotFoundError(
                f"feature {feature_id}: no product of the account has it",
                path=f"features/{feature_id}",
                status=404,
            )
        listed = await self._features.list_features(product_id)
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT f.*, (SELECT name FROM products p WHERE p.id = f.product_id) "
                    "AS product_name FROM features f WHERE f.id = ?",
                    (feature_id,),
                )
            )
            if not rows or rows[0]["deleted_at"] is not None:
                raise removed(f"feature {feature_id}")
            row = rows[0]
            tests = await _one(
                conn,
                "SELECT count(*) FROM test_features tf JOIN tests t ON t.id = tf.test_id "
                "WHERE tf.feature_id = ? AND t.deleted_at IS NULL",
                (feature_id,),
            )
            latest = await conn.execute_fetchall(
                "SELECT t.id, t.title, t.status, t.end_at FROM test_features tf "
                "JOIN tests t ON t.id = tf.test_id WHERE tf.feature_id = ? "
                "AND t.deleted_at IS NULL ORDER BY t.end_at DESC, t.id DESC LIMIT ?",
                (feature_id, LATEST_TESTS),
            )
            tally = await _tally(conn, "b.feature_id = ?", feature_id)
        return FeatureSummary(
            id=feature_id,
            title=row["title"],
            description=row["description"],
            user_stories=json.loads(row["user_stories"]),
            product_id=row["product_id"],
            product_name=row["product_name"],
            tests=tests,
            latest_tests=[TestBrief(r[0], r[1], r[2], from_db(r[3])) for r in latest],
            bugs=tally,
            freshness=listed.freshness,
            bugs_freshness=await self._bugs.freshness(BugFilter(product_id=product_id)),
        )

    async def _product_of(self, feature_id: int) -> int | None:
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT product_id FROM features WHERE id = ?", (feature_id,)
                )
            )
        return int(rows[0][0]) if rows else None


async def _one(conn: aiosqlite.Connection, sql: str, params: tuple[object, ...]) -> int:
    rows = list(await conn.execute_fetchall(sql, params))
    return int(rows[0][0])


async def _tally(conn: aiosqlite.Connection, condition: str, value: int) -> BugTally:
    """Live bugs matching ``condition`` (the store's own, over bugs ``b``; one bound value)."""
    rows = await conn.execute_fetchall(
        "SELECT coalesce(b.status, 'unknown'), coalesce(b.severity, 'unknown'), count(*) "
        f"FROM bugs b WHERE {condition} AND b.deleted_at IS NULL GROUP BY 1, 2",
        (value,),
    )
    return _fold(rows)


def _fold(rows: Iterable[aiosqlite.Row]) -> BugTally:
    status: dict[str, int] = {}
    severity: dict[str, int] = {}
    for row in rows:
        status[row[0]] = status.get(row[0], 0) + row[2]
        severity[row[1]] = severity.get(row[1], 0) + row[2]
    return BugTally(
        total=sum(status.values()),
        by_status=dict(sorted(status.items())),
        by_severity=dict(sorted(severity.items())),
    )
