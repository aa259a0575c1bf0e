"""What ``list_testers``, ``get_product`` and ``get_feature`` answer (structured output).

Built from the store's records (``store/testers.py``, ``store/summaries.py``), which are only
named for type checking: the server imports this module to list its tools, before the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field

from testio_mirror.schema import CompactSchema, inline_list
from testio_mirror.store.records import Freshness

if TYPE_CHECKING:
    from testio_mirror.store.summaries import (
        BugTally,
        FeatureSummary,
        ProductSummary,
        SectionSummary,
        TestBrief,
    )
    from testio_mirror.store.testers import TesterPage, TesterStats

_MORE = "what to do when more results exist, or the answer was cut"
_RATE = "accepted / (accepted + rejected); null when none was decided"


def _truncated() -> Any:
    return Field(
        default=None, description="true when the answer was cut to fit its size limit (see hint)"
    )


class Tester(CompactSchema):
    """One tester (a bug author) and the bugs they reported in the scope asked for."""

    id: int = Field(description="the mirror's id of the tester (one per normalised name)")
    name: str
    bugs: int = Field(description="live bugs reported in the scope")
    by_severity: dict[str, int]
    accepted: int
    rejected: int
    forwarded: int
    acceptance_rate: float | None = Field(description=_RATE)
    last_activity_at: datetime | None = Field(description="their latest bug report in the scope")

    @classmethod
    def of(cls, stats: TesterStats) -> Tester:
        return cls(
            id=stats.id,
            name=stats.name,
            bugs=stats.bugs,
            by_severity=stats.by_severity,
            accepted=stats.accepted,
            rejected=stats.rejected,
            forwarded=stats.forwarded,
            acceptance_rate=stats.acceptance_rate,
            last_activity_at=stats.last_activity_at,
        )


class TesterList(CompactSchema):
    LIST_FIELD: ClassVar[str] = "testers"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit"

    sort_by: str
    testers: Annotated[list[Tester], inline_list(Tester)]
    tester_count: int = Field(description="testers with bugs in the scope, not only those shown")
    bugs: int = Field(description="bugs of all those testers in the scope")
    next_cursor: str | None = Field(description="pass as cursor to get the next testers")
    hint: str | None = Field(default=None, description=_MORE)
    truncated: bool | None = _truncated()
    freshness: Freshness

    @classmethod
    def of(
        cls, page: TesterPage, sort_by: str, freshness: Freshness, hint: str | None
    ) -> TesterList:
        return cls(
            sort_by=sort_by,
            testers=[Tester.of(t) for t in page.testers],
            tester_count=page.tester_count,
            bugs=page.bugs,
            next_cursor=page.next_cursor,
            hint=hint,
            freshness=freshness,
        )


class BugRates(CompactSchema):
    """Live bugs by status and severity, and their acceptance rate."""

    total: int
    by_status: dict[str, int] = Field(description="accepted, rejected, forwarded")
    by_severity: dict[str, int]
    acceptance_rate: float | None = Field(description=_RATE)

    @classmethod
    def of(cls, tally: BugTally) -> BugRates:
        return cls(
            total=tally.total,
            by_status=tally.by_status,
            by_severity=tally.by_severity,
            acceptance_rate=tally.acceptance_rate,
        )


class Section(CompactSchema):
    id: int
    name: str | None
    is_default: bool = Field(description="the product's default section")
    tests: int = Field(description="live tests in this section")

    @classmethod
    def of(cls, section: SectionSummary) -> Section:
        return cls(
            id=section.id, name=section.name, is_default=section.is_default, tests=section.tests
        )


class ProductReport(CompactSchema):
    """A product at a glance."""

    id: int
    name: str | None
    type: str | None = Field(description="website, mobile_app_ios, mobile_app_android, ...")
    features: int = Field(description="live features")
    tests: int = Field(description="live exploratory tests")
    tests_last_30_days: int = Field(description="tests that ended in the 30 days up to now")
    tests_last_90_days: int = Field(description="tests that ended in the 90 days up to now")
    last_test_end_at: datetime | None = Field(description="the latest test end up to now")
    now: datetime = Field(description="the moment the day windows were counted back from")
    sections: Annotated[list[Section], inline_list(Section)]
    bugs: BugRates
    hint: str | None = Field(default=None, description="what was cut, when truncated")
    truncated: bool | None = _truncated()
    freshness: Freshness = Field(description="how current the product itself is")
    bugs_freshness: Freshness = Field(description="how current its bugs are")

    @classmethod
    def of(cls, summary: ProductSummary) -> ProductReport:
        return cls(
            id=summary.id,
            name=summary.name,
            type=summary.type,
            features=summary.features,
            tests=summary.tests,
            tests_last_30_days=summary.tests_last_30_days,
            tests_last_90_days=summary.tests_last_90_days,
            last_test_end_at=summary.last_test_end_at,
            now=summary.now,
            sections=[Section.of(s) for s in summary.sections],
            bugs=BugRates.of(summary.bugs),
            freshness=summary.freshness,
            bugs_freshness=summary.bugs_freshness,
        )


class TestSummary(CompactSchema):
    id: int
    title: str | None
    status: str | None
    end_at: datetime | None

    @classmethod
    def of(cls, brief: TestBrief) -> TestSummary:
        return cls(id=brief.id, title=brief.title, status=brief.status, end_at=brief.end_at)


class FeatureReport(CompactSchema):
    """A feature at a glance."""

    id: int
    title: str | None
    description: str | None
    user_stories: list[str]
    product_id: int
    product_name: str | None
    tests: int = Field(description="live tests that covered this feature")
    latest_tests: Annotated[list[TestSummary], inline_list(TestSummary)] = Field(
        description="the newest of those tests, by end"
    )
    bugs: BugRates
    hint: str | None = Field(default=None, description="what was cut, when truncated")
    truncated: bool | None = _truncated()
    freshness: Freshness = Field(description="how current the product's feature list is")
    bugs_freshness: Freshness = Field(description="how current the product's bugs are")

    @classmethod
    def of(cls, summary: FeatureSummary) -> FeatureReport:
        return cls(
            id=summary.id,
            title=summary.title,
            description=summary.description,
            user_stories=summary.user_stories,
            product_id=summary.product_id,
            product_name=summary.product_name,
            tests=summary.tests,
            latest_tests=[TestSummary.of(t) for t in summary.latest_tests],
            bugs=BugRates.of(summary.bugs),
            freshness=summary.freshness,
            bugs_freshness=summary.bugs_freshness,
        )
