"""``quality_report``: how testing of some products went over a period, judged against health
thresholds, compared with the period just before, with what drives the critical bugs and what
the mirror may be missing.

Every figure comes from ``MetricsRepository`` (the one metrics engine; nothing here writes SQL):
counts and rates by product for the period and the previous one, tests by status, bugs by
severity and by status, the critical bugs by feature and by tester. What is stale comes from the
sync bookkeeping (listing states, the last runs) and the scope's tests whose bugs were never
fetched (``metrics_sql.scope_sql``, the test scope the metrics read through).

Example::

    reports = QualityReports(mirror, HealthThresholds.from_settings(settings))
    report = await reports.report(product_ids=[101], since=None, until=None)
    report.overall.rates["acceptance_rate"].level
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from testio_mirror.store.metrics import MetricsQuery, MetricsRepository, MetricsResult, MetricsRow
from testio_mirror.store.metrics_buckets import MetricsQueryError
from testio_mirror.store.metrics_sql import SCOPE_FRESHNESS, MetricsFilter, scope_sql
from testio_mirror.store.records import Freshness

if TYPE_CHECKING:
    from testio_mirror.settings import Settings
    from testio_mirror.store.mirror import Mirror

Values = Mapping[str, float | int | None]
Level = Literal["ok", "warning", "critical", "no_data"]
BadWhen = Literal["below", "above"]
DEFAULT_PERIOD = timedelta(days=30)  # no since/until: the 30 days ending now
TOP_DRIVERS = 5  # features and testers named as drivers of the critical bugs
TOP_PRODUCTS = 10  # products shown one by one; the overall figures count every one
NAMED_IDS = 10  # product ids a staleness note names before "and N more"
PAGE = 100  # rows per MetricsRepository page (its largest)

# The report's counts and the metrics they are (names in the vocabulary).
COUNTS: Mapping[str, str] = {
    "tests": "test_count",
    "bugs": "bug_count",
    "accepted": "accepted",
    "rejected": "rejected",
    "forwarded": "forwarded",
    "auto_accepted": "auto_accepted",
    "critical": "critical_count",
}
RATES = ("acceptance_rate", "rejection_rate", "auto_acceptance_rate", "review_rate")
# What each rate divides by, from the counts (the vocabulary's denominators, as numbers).
DENOMINATORS: Mapping[str, tuple[str, ...]] = {
    "acceptance_rate": ("accepted", "rejected"),
    "rejection_rate": ("accepted", "rejected"),
    "auto_acceptance_rate": ("accepted",),
    "review_rate": ("bugs",),
}


@dataclass(frozen=True)
class Threshold:
    """A rate's health levels: past ``warning`` it is a warning, past ``critical`` critical;
    past means below for a rate that is bad when low, above for one bad when high."""

    warning: float
    critical: float
    bad_when: BadWhen

    def level(self, value: float | None) -> Level:
        if value is None:
            return "no_data"
        if self.bad_when == "below":
            return (
                "critical" if value < self.critical else "warning" if value < self.warning else "ok"
            )
        return "critical" if value > self.critical else "warning" if value > self.warning else "ok"


@dataclass(frozen=True)
class HealthThresholds:
    rates: Mapping[str, Threshold]

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthThresholds:
        """The ``TESTIO_HEALTH_*`` settings (ordered warning before critical: ``settings.py``)."""
        from testio_mirror.settings import LOW_IS_BAD

        rates = {}
        for rate in RATES:
            name = f"health_{rate}"
            rates[rate] = Threshold(
                warning=getattr(settings, f"{name}_warning"),
                critical=getattr(settings, f"{name}_critical"),
                bad_when="below" if name in LOW_IS_BAD else "above",
            )
        return cls(rates)


@dataclass(frozen=True)
class RateFigure:
    value: float | None
    denominator: int
    level: Level
    threshold: Threshold
    previous: float | None
    change: float | None  # value - previous (absolute); None when either is None


@dataclass
class ScopeQuality:
    """One product's figures (``product_id`` None: every product of the report together)."""

    product_id: int | None
    name: str | None
    counts: dict[str, int]
    previous_counts: dict[str, int]
    tests_by_status: dict[str, int] = field(default_factory=dict)
    bugs_by_severity: dict[str, int] = field(default_factory=dict)
    bugs_by_status: dict[str, int] = field(default_factory=dict)
    rates: dict[str, RateFigure] = field(default_factory=dict)

    @property
    def count_change(self) -> dict[str, int]:
        return {k: v - self.previous_counts.get(k, 0) for k, v in self.counts.items()}


@dataclass(frozen=True)
class Driver:
    key: str  # a feature id, or a tester's name
    name: str | None  # the feature's title (None for testers: the key is their name)
    critical_bugs: int


@dataclass(frozen=True)
class Drivers:
    critical_bugs: int
    features: list[Driver]
    features_total: int  # features with a critical bug in the period (the no-feature group too)
    testers: list[Driver]
    testers_total: int


@dataclass(frozen=True)
class Staleness:
    last_sync_at: datetime | None
    last_success_at: datetime | None
    never_listed: list[int]
    listing_incomplete: list[int]
    tests_in_scope: int
    tests_without_bugs: int
    notes: list[str]


@dataclass(frozen=True)
class QualityReport:
    since: datetime
    until: datetime
    previous_since: datetime
    previous_until: datetime
    overall: ScopeQuality
    products: list[ScopeQuality]  # the first TOP_PRODUCTS, most bugs first
    products_total: int
    drivers: Drivers
    staleness: Staleness
    freshness: Freshness


def period_of(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The report's period: as given; a missing end is now, a missing start 30 days before it.

    Raises:
        MetricsQueryError: ``until`` is not after ``since``, or the period or the one before it
            would leave the calendar (before year 1, after 9999).
    """
    try:
        end = until or (now if since is None or since < now else since + DEFAULT_PERIOD)
        start = since or end - DEFAULT_PERIOD
        if end > start:
            start - (end - start)  # the previous period must begin within the calendar too
    except OverflowError:
        raise MetricsQueryError(
            "the period and the one of equal length before it must lie between the years 1 "
            "and 9999: give a later since or an earlier until"
        ) from None
    if end <= start:
        raise MetricsQueryError("until must be after since (the period of the report)")
    return start, end


def _ago(then: datetime, now: datetime) -> str:
    """An age in coarse words: the report is read by people, and an example stays the same."""
    hours = (now - then).total_seconds() / 3600
    if hours < 1:
        return "less than an hour ago"
    if hours < 48:
        return f"{int(hours)} hours ago"
    return f"{int(hours // 24)} days ago"


def _named(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:NAMED_IDS])
    return shown + (f" and {len(ids) - NAMED_IDS} more" if len(ids) > NAMED_IDS else "")


class QualityReports:
    """Quality reports over one mirror."""

    def __init__(self, mirror: Mirror, thresholds: HealthThresholds) -> None:
        self._mirror = mirror
        self._metrics = MetricsRepository(mirror.db, mirror.bugs, mirror.policy, mirror.bug_facts)
        self._thresholds = thresholds

    async def report(
        self,
        *,
        product_ids: Sequence[int] | None,
        since: datetime | None,
        until: datetime | None,
    ) -> QualityReport:
        """The report of ``product_ids`` (every product of the mirror when None) over
        ``[since, until)`` (default: the 30 days ending now) and the period just before.

        Raises:
            MetricsQueryError: the period is empty or reversed.
            NotFoundError, RemovedError: a product asked for is not (or no longer) the account's.
            OfflineError, UpstreamError: as the read-throughs of products and bugs.
        """
        start, end = period_of(since, until, self._mirror.policy.clock())
        before = start - (end - start)
        products = await self._products(product_ids)
        ids = [pid for pid, _ in products]
        now_scope = MetricsFilter(product_ids=ids, since=start, until=end)
        then_scope = MetricsFilter(product_ids=ids, since=before, until=start)
        current, now_result = await self._by_product(now_scope)
        previous, then_result = await self._by_product(then_scope)
        scopes = {
            pid: ScopeQuality(pid, name, _counts(current.get(pid)), _counts(previous.get(pid)))
            for pid, name in products
        }
        overall = ScopeQuality(None, None, _counts(now_result.totals), _counts(then_result.totals))
        await self._tally(now_scope, scopes, overall)
        for scope in scopes.values():
            assert scope.product_id is not None
            pid = scope.product_id
            self._judge(scope, current.get(pid, {}), previous.get(pid, {}))
        self._judge(overall, now_result.totals, then_result.totals)
        for scope in (*scopes.values(), overall):
            for target in ("tests_by_status", "bugs_by_severity", "bugs_by_status"):
                setattr(scope, target, dict(sorted(getattr(scope, target).items())))
        ordered = sorted(scopes.values(), key=lambda s: (-s.counts["bugs"], s.product_id or 0))
        freshness = next(
            (r.freshness for r in (now_result, then_result) if r.freshness.stale),
            now_result.freshness,
        )
        return QualityReport(
            since=start,
            until=end,
            previous_since=before,
            previous_until=start,
            overall=overall,
            products=ordered[:TOP_PRODUCTS],
            products_total=len(ordered),
            drivers=await self._drivers(now_scope),
            staleness=await self._staleness(ids, now_scope, freshness),
            freshness=freshness,
        )

    async def _tally(
        self, chosen: MetricsFilter, scopes: Mapping[int, ScopeQuality], overall: ScopeQuality
    ) -> None:
        """Tests by status, bugs by severity and by status over ``chosen``: per product, and
        summed into ``overall``."""
        for dimension, metric, target in (
            ("test_status", "test_count", "tests_by_status"),
            ("severity", "bug_count", "bugs_by_severity"),
            ("status", "bug_count", "bugs_by_status"),
        ):
            query = MetricsQuery(
                metrics=(metric,), dimensions=("product", dimension), filter=chosen
            )
            rows, _ = await self._rows(query)
            for row in rows:
                count = int(row.values[metric] or 0)
                product, key = row.group["product"], row.group[dimension] or "unknown"
                if not count or product is None or int(product) not in scopes:
                    continue
                for scope in (scopes[int(product)], overall):
                    tally: dict[str, int] = getattr(scope, target)
                    tally[key] = tally.get(key, 0) + count

    async def _products(self, product_ids: Sequence[int] | None) -> list[tuple[int, str | None]]:
        if product_ids:
            found = []
            for pid in dict.fromkeys(product_ids):
                product = (await self._mirror.products.get_product(pid)).value
                found.append((product.id, product.name))
            return found
        listed = await self._mirror.products.list_products()
        return [(p.id, p.name) for p in listed.value]

    async def _rows(self, query: MetricsQuery) -> tuple[list[MetricsRow], MetricsResult]:
        """Every row of ``query``, page after page, and its first page (totals, freshness)."""
        first = await self._metrics.query(query, limit=PAGE)
        rows = list(first.rows)
        cursor = first.next_cursor
        while cursor is not None:
            page = await self._metrics.query(query, limit=PAGE, cursor=cursor)
            rows.extend(page.rows)
            cursor = page.next_cursor
        return rows, first

    async def _by_product(self, chosen: MetricsFilter) -> tuple[dict[int, Values], MetricsResult]:
        """The counts and rates per product over ``chosen``, and the first page's result (its
        totals and freshness)."""
        query = MetricsQuery(
            metrics=(*COUNTS.values(), *RATES), dimensions=("product",), filter=chosen
        )
        rows, first = await self._rows(query)
        by_product: dict[int, Values] = {
            int(row.group["product"]): row.values for row in rows if row.group["product"]
        }
        return by_product, first

    def _judge(self, scope: ScopeQuality, now: Values, then: Values) -> None:
        """Each rate of ``scope`` (as the vocabulary computes it): its value, denominator and
        level, and the previous period's."""
        for rate in RATES:
            value, before = now.get(rate), then.get(rate)
            threshold = self._thresholds.rates[rate]
            scope.rates[rate] = RateFigure(
                value=value,
                denominator=sum(scope.counts[k] for k in DENOMINATORS[rate]),
                level=threshold.level(value),
                threshold=threshold,
                previous=before,
                change=None if value is None or before is None else round(value - before, 4),
            )

    async def _drivers(self, chosen: MetricsFilter) -> Drivers:
        critical = MetricsFilter(
            product_ids=chosen.product_ids,
            severities=["critical"],
            since=chosen.since,
            until=chosen.until,
        )
        tops: list[tuple[list[Driver], int, int]] = []
        for dimension in ("feature", "tester"):
            found = await self._metrics.query(
                MetricsQuery(metrics=("bug_count",), dimensions=(dimension,), filter=critical),
                limit=TOP_DRIVERS,
            )
            drivers = [
                Driver(
                    key=row.group[dimension] or "none",
                    name=row.labels.get(dimension),
                    critical_bugs=int(row.values["bug_count"] or 0),
                )
                for row in found.rows
                if row.values["bug_count"]
            ]
            tops.append((drivers, found.row_count, int(found.totals["bug_count"] or 0)))
        (features, feature_total, count), (testers, tester_total, _) = tops
        return Drivers(count, features, feature_total, testers, tester_total)

    async def _staleness(
        self, ids: Sequence[int], chosen: MetricsFilter, freshness: Freshness
    ) -> Staleness:
        mirror = self._mirror
        listings = await mirror.sync_state.listing_states()
        counters = await mirror.sync_state.counters()
        never = [pid for pid in ids if pid not in listings]
        incomplete = [pid for pid in ids if pid in listings and not listings[pid].complete]
        in_scope = without = 0
        unfetched: list[int] = []
        async with mirror.db.reader() as conn:
            for pid in ids:
                sql, params = scope_sql(
                    MetricsFilter(product_ids=[pid], since=chosen.since, until=chosen.until),
                    SCOPE_FRESHNESS,
                )
                count, missing, _ = next(iter(await conn.execute_fetchall(sql, params)))
                in_scope += count
                without += missing
                if missing:
                    unfetched.append(pid)
        now = mirror.policy.clock()
        notes = []
        if counters.last_sync_at is None:
            notes.append("the mirror was never synced: run sync_data (include_bugs=true)")
        else:
            notes.append(f"the last sync ended {_ago(counters.last_sync_at, now)}")
            if counters.last_success_at is None:
                notes.append("no sync has succeeded yet: sync_status says why")
            elif counters.last_success_at < counters.last_sync_at:
                notes.append(
                    f"the last successful sync ended {_ago(counters.last_success_at, now)}"
                )
        if never:
            notes.append(
                f"products never listed (their tests are missing): {_named(never)}; run "
                "sync_data with their product_ids"
            )
        if incomplete:
            notes.append(
                f"products whose last listing stopped before its end (some tests may be "
                f"missing): {_named(incomplete)}; run sync_data with their product_ids"
            )
        if without:
            notes.append(
                f"bugs of {without} of {in_scope} tests in the period were never fetched "
                f"(products {_named(unfetched)}): run sync_data with include_bugs=true"
            )
        if freshness.stale and freshness.stale_reason and not without:
            notes.append(f"bug lists: {freshness.stale_reason}")
        return Staleness(
            last_sync_at=counters.last_sync_at,
            last_success_at=counters.last_success_at,
            never_listed=never,
            listing_incomplete=incomplete,
            tests_in_scope=in_scope,
            tests_without_bugs=without,
            notes=notes,
        )


def _counts(values: Values | None) -> dict[str, int]:
    return {name: int((values or {}).get(metric) or 0) for name, metric in COUNTS.items()}
