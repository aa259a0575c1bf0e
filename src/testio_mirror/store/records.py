"""The store's vocabulary: what a caller asks for (``BugFilter``, ``GroupBy``, ``SearchKind``) and
what the mirror answers (records of each entity, freshness, pages of results, statistics).

Records are the mirror's own shape (not the wire's): flat, typed, with the raw JSON available
when asked for. Every answer carries ``Freshness``: an agent can tell a fresh fact from an old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import ConfigDict, Field, field_serializer

from testio_mirror.schema import CompactSchema

SearchKind = Literal["test", "feature", "bug"]
GroupBy = Literal["severity", "status", "feature", "test", "tester", "month"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class BugFilter:
    """Which bugs a listing or a statistic covers: all of the given conditions at once.

    A field left at None (or an empty sequence) does not filter. ``since`` and ``until`` bound the
    report date (``since`` included, ``until`` not); ``text`` keeps the bugs whose title or results
    hold every word of it (as a word prefix), and none when it holds no word. ``field`` keeps the
    bugs whose custom report has that key with the value ``field_value`` (exactly), or, without
    ``field_value``, with any value but a blank one.

    Example::

        BugFilter(product_id=7, severities=["critical"], since=datetime(2026, 1, 1, tzinfo=UTC))
    """

    product_id: int | None = None
    test_ids: Sequence[int] | None = None
    feature_id: int | None = None
    severities: Sequence[str] | None = None
    statuses: Sequence[str] | None = None
    known: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    field: str | None = None
    field_value: str | None = None


EVERY_BUG = BugFilter()


class Freshness(CompactSchema):
    """How current an answer is."""

    model_config = ConfigDict(frozen=True)

    source: Literal["mirror", "api"] = Field(
        description="mirror: served from the local copy; api: fetched from TestIO just now"
    )
    as_of: datetime | None = Field(description="when the data was last fetched from TestIO (UTC)")
    age_seconds: float | None = Field(description="seconds since as_of")
    stale: bool = Field(description="true when the data may be out of date")
    stale_reason: str | None = Field(default=None, description="why it may be out of date")

    @field_serializer("age_seconds")
    def _age_to_the_millisecond(self, age: float | None) -> float | None:
        # Kept exact in the model, written to the millisecond: more digits tell an agent nothing.
        return None if age is None else round(age, 3)


class Answer(CompactSchema, Generic[T]):
    """One value and how fresh it is."""

    value: T
    freshness: Freshness


class Page(CompactSchema, Generic[T]):
    """Some results, a cursor for the next ones, and how fresh they are."""

    items: list[T]
    next_cursor: str | None = Field(description="pass back as cursor for the next page")
    freshness: Freshness
    cursors: list[str] = Field(
        default_factory=list,
        description="the cursor right after each item (for an answer cut to fit its size limit)",
    )


# Records the repositories return are built when first used (in the App), not when the module
# loads: the server imports this module to answer tools/list, which needs none of them.
_BUILT_ON_FIRST_USE = ConfigDict(defer_build=True)


class ProductRecord(CompactSchema):
    model_config = _BUILT_ON_FIRST_USE

    id: int
    name: str | None
    description: str | None
    type: str | None
    has_sections: bool
    section_ids: list[int]
    deleted: bool
    fetched_at: datetime


class FeatureRecord(CompactSchema):
    model_config = _BUILT_ON_FIRST_USE

    id: int
    product_id: int
    title: str | None
    description: str | None
    howtofind: str | None
    user_stories: list[str]
    deleted: bool
    fetched_at: datetime


class ExploratoryTestRecord(CompactSchema):
    model_config = _BUILT_ON_FIRST_USE

    id: int
    product_id: int
    product_name: str | None = None
    section_id: int | None
    title: str | None
    status: str | None
    testing_type: str | None
    goal: str | None
    instructions: str | None
    out_of_scope: str | None
    start_at: datetime | None
    end_at: datetime | None
    review_status: str | None
    created_by: str | None
    submitted_by: str | None
    feature_ids: list[int]
    deleted: bool
    fetched_at: datetime
    bugs_fetched_at: datetime | None
    raw: dict[str, Any] | None = None


class BugRecord(CompactSchema):
    model_config = _BUILT_ON_FIRST_USE

    id: int
    test_id: int | None
    product_id: int | None
    feature_id: int | None
    title: str | None
    severity: str | None
    status: str | None
    auto_accepted: bool | None
    known: bool | None
    actual_result: str | None
    expected_result: str | None
    steps: list[str]
    reported_at: datetime | None
    exported_at: datetime | None
    author: str | None
    reject_reason: str | None
    test_title: str | None = None
    feature_title: str | None = None
    product_name: str | None = None
    deleted: bool
    fetched_at: datetime
    raw: dict[str, Any] | None = None
    report_configuration_id: int | None = None
    custom_fields: list[tuple[str, str | None]] = Field(default_factory=list)  # (key, value)


class SearchHit(CompactSchema):
    kind: SearchKind
    id: int
    product_id: int | None
    product_name: str | None
    title: str
    status: str | None = Field(
        description="a bug's (accepted, rejected, forwarded) or a test's status; null for features"
    )
    severity: str | None = Field(description="a bug's severity; null for tests and features")
    test_id: int | None = Field(description="a bug's test, or the test itself")
    test_title: str | None = Field(description="a bug's test's title, or the test's own")
    snippet: str = Field(description="the matching text, matched words in [brackets]")
    rank: float = Field(description="lower is better (bm25)")


class SearchPage(CompactSchema):
    """Some hits, best first, and the cursor for the next ones."""

    hits: list[SearchHit]
    next_cursor: str | None
    cursors: list[str] = Field(description="the cursor right after each hit")


class StatsGroup(CompactSchema):
    key: str | None
    label: str | None
    total: int
    accepted: int
    rejected: int
    forwarded: int
    acceptance_rate: float | None = Field(
        description="accepted / (accepted + rejected); null when none was decided"
    )


class StatsPage(CompactSchema):
    """Some groups of a statistic (in its order), totals over every group, and the cursor for
    the next groups."""

    groups: list[StatsGroup]
    group_count: int
    total: int
    accepted: int
    rejected: int
    forwarded: int
    next_cursor: str | None
    cursors: list[str] = Field(description="the cursor right after each group")

    @property
    def acceptance_rate(self) -> float | None:
        """accepted / (accepted + rejected) over every group, to four decimals."""
        decided = self.accepted + self.rejected
        return round(self.accepted / decided, 4) if decided else None
