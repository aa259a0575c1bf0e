"""What ``query_metrics`` answers: a page of groups, each with its key per dimension, the names
of ids, its metric values and (with compare) the previous period's values and the change."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import Field

from testio_mirror.schema import CompactSchema, inline_list
from testio_mirror.store.records import Freshness

MetricValues = dict[str, int | float | None]


class MetricsRow(CompactSchema):
    group: dict[str, str | None] = Field(
        description="the row's key per dimension (an id, a name, a time bucket; null: none)"
    )
    labels: dict[str, str | None] | None = Field(
        default=None, description="names of the ids in group (product, feature, test, reason)"
    )
    values: MetricValues = Field(description="each metric asked for; a rate is null at 0 / 0")
    previous: MetricValues | None = Field(
        default=None, description="with compare: the values of the previous period"
    )
    change: MetricValues | None = Field(default=None, description="with compare: value - previous")
    relative_change: MetricValues | None = Field(
        default=None, description="with compare: (value - previous) / previous; null at 0"
    )


class Period(CompactSchema):
    since: datetime
    until: datetime


def _truncated() -> Any:
    return Field(
        default=None, description="true when the answer was cut to fit its size limit (see hint)"
    )


class MetricsAnswer(CompactSchema):
    LIST_FIELD: ClassVar[str] = "rows"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit, or fewer metrics"

    metrics: list[str]
    dimensions: list[str]
    rows: Annotated[list[MetricsRow], inline_list(MetricsRow)] = Field(
        description="a page of the groups: time buckets in time order (empty ones included), "
        "else the first metric largest first, or as sort_by says"
    )
    row_count: int = Field(description="how many groups there are in all")
    totals: MetricValues = Field(description="each metric over everything in scope")
    previous_period: Period | None = Field(
        default=None, description="with compare: the period compared with, just before"
    )
    previous_totals: MetricValues | None = Field(
        default=None, description="with compare: totals of the previous period"
    )
    next_cursor: str | None = Field(description="pass as cursor to get the next rows")
    hint: str | None = Field(
        default=None, description="what to do when more rows exist, or the answer was cut"
    )
    truncated: bool | None = _truncated()
    freshness: Freshness
