"""What ``quality_report`` answers: per product and overall, counts with the previous period's
and the change, tests by status, bugs by severity and status, four rates judged against the
health thresholds; the drivers of the critical bugs; what the mirror may be missing.

Built from ``store/quality_report.py``'s records, named for type checking only: the server
imports this module to list its tools, before the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from testio_mirror.schema import CompactSchema, inline_list
from testio_mirror.store.records import Freshness

if TYPE_CHECKING:
    from testio_mirror.store.quality_report import (
        Driver,
        Drivers,
        QualityReport,
        RateFigure,
        ScopeQuality,
        Staleness,
    )

_COUNTS = "tests (by end), bugs (by report), accepted, rejected, forwarded, auto_accepted, critical"


class Rate(CompactSchema):
    value: float | None = Field(
        description="the rate in the period; null when its denominator is 0"
    )
    denominator: int = Field(description="what it divides by, counted (docs/quality.md)")
    level: Literal["ok", "warning", "critical", "no_data"]
    warning: float = Field(description="the warning level used (TESTIO_HEALTH_*_WARNING)")
    critical: float = Field(description="the critical level used (TESTIO_HEALTH_*_CRITICAL)")
    bad_when: Literal["below", "above"] = Field(description="which side of a level is bad")
    previous: float | None = Field(description="the rate in the previous period")
    change: float | None = Field(description="value - previous (absolute); null without both")

    @classmethod
    def of(cls, figure: RateFigure) -> Rate:
        return cls(
            value=figure.value,
            denominator=figure.denominator,
            level=figure.level,
            warning=figure.threshold.warning,
            critical=figure.threshold.critical,
            bad_when=figure.threshold.bad_when,
            previous=figure.previous,
            change=figure.change,
        )


class Rates(CompactSchema):
    acceptance_rate: Rate = Field(description="accepted / (accepted + rejected)")
    rejection_rate: Rate = Field(description="rejected / (accepted + rejected)")
    auto_acceptance_rate: Rate = Field(description="auto_accepted / accepted")
    review_rate: Rate = Field(description="(accepted + rejected) / bugs: the share decided")


class ScopeFigures(CompactSchema):
    """One product, or (product_id null) every product of the report together."""

    product_id: int | None = Field(default=None, description="null for the overall figures")
    name: str | None = None
    counts: dict[str, int] = Field(description=_COUNTS)
    previous_counts: dict[str, int] = Field(description="the same in the previous period")
    change: dict[str, int] = Field(description="counts - previous_counts")
    tests_by_status: dict[str, int] = Field(description="tests that ended in the period")
    bugs_by_severity: dict[str, int]
    bugs_by_status: dict[str, int]
    rates: Rates

    @classmethod
    def of(cls, scope: ScopeQuality) -> ScopeFigures:
        return cls(
            product_id=scope.product_id,
            name=scope.name,
            counts=scope.counts,
            previous_counts=scope.previous_counts,
            change=scope.count_change,
            tests_by_status=scope.tests_by_status,
            bugs_by_severity=scope.bugs_by_severity,
            bugs_by_status=scope.bugs_by_status,
            rates=Rates(**{name: Rate.of(figure) for name, figure in scope.rates.items()}),
        )


class DriverItem(CompactSchema):
    key: str = Field(description="a feature id (none: bugs without a feature), or a tester")
    name: str | None = Field(default=None, description="the feature's title (features only)")
    critical_bugs: int

    @classmethod
    def of(cls, driver: Driver) -> DriverItem:
        return cls(key=driver.key, name=driver.name, critical_bugs=driver.critical_bugs)


class CriticalDrivers(CompactSchema):
    critical_bugs: int = Field(description="critical bugs reported in the period, in scope")
    features: Annotated[list[DriverItem], inline_list(DriverItem)] = Field(
        description="the features with the most critical bugs, most first (top 5)"
    )
    features_total: int = Field(description="how many features have a critical bug")
    testers: Annotated[list[DriverItem], inline_list(DriverItem)] = Field(
        description="the testers who reported the most critical bugs, most first (top 5)"
    )
    testers_total: int = Field(description="how many testers reported a critical bug")
    hint: str | None = Field(default=None, description="where the full lists are")

    @classmethod
    def of(cls, drivers: Drivers) -> CriticalDrivers:
        more = []
        if drivers.features_total > len(drivers.features):
            more.append(
                f"{drivers.features_total - len(drivers.features)} more features: query_metrics "
                "with metrics=['critical_count'], dimensions=['feature'] and the same period"
            )
        if drivers.testers_total > len(drivers.testers):
            more.append(
                f"{drivers.testers_total - len(drivers.testers)} more testers: list_testers "
                "with sort_by='critical' and the same period"
            )
        return cls(
            critical_bugs=drivers.critical_bugs,
            features=[DriverItem.of(d) for d in drivers.features],
            features_total=drivers.features_total,
            testers=[DriverItem.of(d) for d in drivers.testers],
            testers_total=drivers.testers_total,
            hint="; ".join(more) or None,
        )


class MirrorStaleness(CompactSchema):
    last_sync_at: datetime | None = Field(description="when the last sync ended")
    last_success_at: datetime | None = Field(description="when the last successful sync ended")
    never_listed: list[int] = Field(description="products in scope whose tests were never listed")
    listing_incomplete: list[int] = Field(
        description="products in scope whose last listing stopped before its end"
    )
    tests_in_scope: int = Field(description="tests whose run overlaps the period")
    tests_without_bugs: int = Field(description="of those, tests whose bugs were never fetched")
    notes: list[str] = Field(description="what the mirror may be missing, in plain words")

    @classmethod
    def of(cls, staleness: Staleness) -> MirrorStaleness:
        return cls(
            last_sync_at=staleness.last_sync_at,
            last_success_at=staleness.last_success_at,
            never_listed=staleness.never_listed,
            listing_incomplete=staleness.listing_incomplete,
            tests_in_scope=staleness.tests_in_scope,
            tests_without_bugs=staleness.tests_without_bugs,
            notes=staleness.notes,
        )


class ReportPeriod(CompactSchema):
    since: datetime = Field(description="included")
    until: datetime = Field(description="not included")


def _truncated() -> Any:
    return Field(
        default=None, description="true when the answer was cut to fit its size limit (see hint)"
    )


class QualityReportAnswer(CompactSchema):
    LIST_FIELD: ClassVar[str] = "products"
    CUT_ADVICE: ClassVar[str] = "or fewer product_ids"

    period: ReportPeriod
    previous_period: ReportPeriod = Field(description="the same length, just before")
    overall: ScopeFigures = Field(description="every product of the report together")
    # Not inlined (its items nest models): a list of at most 10, validated once per answer.
    products: list[ScopeFigures] = Field(description="per product, most bugs first (the first 10)")
    products_total: int = Field(description="how many products the report covers")
    critical_drivers: CriticalDrivers
    staleness: MirrorStaleness
    hint: str | None = Field(default=None, description="what was left out, and how to see it")
    truncated: bool | None = _truncated()
    freshness: Freshness = Field(description="how current the bug lists counted are")

    @classmethod
    def of(cls, report: QualityReport) -> QualityReportAnswer:
        hint = None
        if report.products_total > len(report.products):
            hint = (
                f"{report.products_total - len(report.products)} products with fewer bugs are "
                "counted in overall but not shown: pass product_ids to see them"
            )
        return cls(
            period=ReportPeriod(since=report.since, until=report.until),
            previous_period=ReportPeriod(since=report.previous_since, until=report.previous_until),
            overall=ScopeFigures.of(report.overall),
            products=[ScopeFigures.of(p) for p in report.products],
            products_total=report.products_total,
            critical_drivers=CriticalDrivers.of(report.drivers),
            staleness=MirrorStaleness.of(report.staleness),
            hint=hint,
            freshness=report.freshness,
        )
