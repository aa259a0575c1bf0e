"""What the MCP tools answer: small, typed, with names next to ids and freshness on every answer
read from the mirror's entities (search reads the full-text index and has none).

``concise`` answers carry what an agent needs to decide its next step; ``full`` adds the long texts.
Field descriptions become the tools' output schemas, so they are written for the model reading them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import orjson
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from testio_mirror.limits import DEFAULT_MAX_ANSWER_BYTES
from testio_mirror.schema import CompactSchema, inline_list
from testio_mirror.server.answer_bounds import fit
from testio_mirror.store.records import (
    BugRecord,
    ExploratoryTestRecord,
    FeatureRecord,
    Freshness,
    ProductRecord,
    SearchHit,
    StatsGroup,
)
from testio_mirror.sync.models import SyncResult

Detail = Literal["concise", "full"]
_SNIPPET = 280


def respond(
    answer: BaseModel,
    *,
    max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    cursors: Sequence[str] | None = None,
    list_field: str | None = None,
) -> CallToolResult:
    """A tool's result for ``answer``, as structured content and the same JSON as text, at most
    ``max_bytes`` bytes of it (``TESTIO_MAX_ANSWER_BYTES``).

    Optional fields left empty (the long texts of a concise answer, a hint when there is none)
    are left out rather than sent as null: a page of 20 bugs is about a third smaller, an agent
    reads fewer tokens, and a client validating the answer against the output schema does
    less work. Fields the schema requires are always there, null or not.

    An answer larger than ``max_bytes`` is cut to fit (``answer_bounds.fit``): a list answer
    (one whose class names its ``LIST_FIELD``, or ``list_field``) loses items from the end of
    that list, and its ``next_cursor`` becomes ``cursors[i]``, the cursor right after the last
    item kept; long texts are cut when that is not enough. A cut answer says
    ``truncated: true`` and its hint says how to get the rest.

    Example::

        respond(BugList(...), max_bytes=settings.max_answer_bytes, cursors=page.cursors)
    """
    data = answer.model_dump(mode="json")
    _drop_empty_optionals(answer, data)
    raw = orjson.dumps(data)  # compact, and UTF-8 as it is
    if len(raw) > max_bytes:
        raw = fit(
            data,
            max_bytes,
            list_field=list_field or getattr(type(answer), "LIST_FIELD", None),
            cursors=cursors,
            advice=getattr(type(answer), "CUT_ADVICE", ""),
        )
    return CallToolResult(
        content=[TextContent(type="text", text=raw.decode())], structured_content=data
    )


@functools.cache
def _optional_fields(model_type: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name, f in model_type.model_fields.items() if not f.is_required())


def _drop_empty_optionals(model: BaseModel, data: dict[str, Any]) -> None:
    for name in _optional_fields(type(model)):
        if name in data and data[name] is None:
            del data[name]
    # Answers nest models directly or in lists; their dumps are the dicts and lists of dicts.
    for name, value in data.items():
        if isinstance(value, dict):
            nested = getattr(model, name)
            if isinstance(nested, BaseModel):
                _drop_empty_optionals(nested, value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item, item_data in zip(getattr(model, name), value, strict=True):
                if isinstance(item, BaseModel):
                    _drop_empty_optionals(item, item_data)


def _cut(text: str | None, limit: int = _SNIPPET) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


class Product(CompactSchema):
    id: int
    name: str | None
    type: str | None = Field(description="website, mobile_app_ios, mobile_app_android, ...")
    has_sections: bool
    description: str | None = None

    @classmethod
    def of(cls, record: ProductRecord) -> Product:
        return cls(
            id=record.id,
            name=record.name,
            type=record.type,
            has_sections=record.has_sections,
            description=_cut(record.description),
        )


# Every answer says when it was cut to fit TESTIO_MAX_ANSWER_BYTES (``respond``).
def _truncated() -> Any:
    return Field(
        default=None, description="true when the answer was cut to fit its size limit (see hint)"
    )


_MORE = "what to do when more results exist, or the answer was cut"


class ProductList(CompactSchema):
    LIST_FIELD: ClassVar[str] = "products"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit"

    products: Annotated[list[Product], inline_list(Product)]
    next_cursor: str | None = Field(description="pass as cursor to get the next products")
    hint: str | None = Field(default=None, description=_MORE)
    truncated: bool | None = _truncated()
    freshness: Freshness


class Feature(CompactSchema):
    id: int
    title: str | None
    description: str | None
    user_stories: list[str]

    @classmethod
    def of(cls, record: FeatureRecord) -> Feature:
        return cls(
            id=record.id,
            title=record.title,
            description=_cut(record.description),
            user_stories=record.user_stories,
        )


class FeatureList(CompactSchema):
    LIST_FIELD: ClassVar[str] = "features"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit"

    product_id: int
    features: Annotated[list[Feature], inline_list(Feature)]
    next_cursor: str | None = Field(description="pass as cursor to get the next features")
    hint: str | None = Field(default=None, description=_MORE)
    truncated: bool | None = _truncated()
    freshness: Freshness


class ExploratoryTest(CompactSchema):
    """An exploratory test (a test cycle)."""

    id: int
    title: str | None
    status: str | None = Field(
        description="initialized, waiting, running, locked, customer_finalized, archived, "
        "cancelled (the last two never change)"
    )
    testing_type: str | None = Field(description="coverage, focused, rapid, usability, external")
    product_id: int
    product_name: str | None
    start_at: datetime | None
    end_at: datetime | None
    goal: str | None = None
    instructions: str | None = None
    out_of_scope: str | None = None
    review_status: str | None = None
    created_by: str | None = None
    feature_ids: list[int] | None = None

    @classmethod
    def of(cls, record: ExploratoryTestRecord, detail: Detail) -> ExploratoryTest:
        full = detail == "full"
        return cls(
            id=record.id,
            title=record.title,
            status=record.status,
            testing_type=record.testing_type,
            product_id=record.product_id,
            product_name=record.product_name,
            start_at=record.start_at,
            end_at=record.end_at,
            goal=record.goal if full else _cut(record.goal, 160),
            instructions=record.instructions if full else None,
            out_of_scope=record.out_of_scope if full else None,
            review_status=record.review_status if full else None,
            created_by=record.created_by if full else None,
            feature_ids=record.feature_ids if full else None,
        )


class ExploratoryTestList(CompactSchema):
    LIST_FIELD: ClassVar[str] = "tests"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit"

    tests: Annotated[list[ExploratoryTest], inline_list(ExploratoryTest)]
    next_cursor: str | None = Field(description="pass as cursor to get the next tests")
    hint: str | None = Field(default=None, description=_MORE)
    truncated: bool | None = _truncated()
    freshness: Freshness


class BugCounts(CompactSchema):
    by_severity: dict[str, int]
    by_status: dict[str, int]
    total: int


class ExploratoryTestReport(CompactSchema):
    test: ExploratoryTest
    bug_counts: BugCounts = Field(description="bugs of this test in the mirror")
    hint: str | None = Field(default=None, description="what was cut, when truncated")
    truncated: bool | None = _truncated()
    freshness: Freshness
    bugs_freshness: Freshness


class CustomField(CompactSchema):
    key: str = Field(description="the field's key (query_metrics: custom_field:<key>)")
    value: str | None = Field(description='as the tester filled it in ("" when left blank)')


class Bug(CompactSchema):
    id: int
    title: str | None
    severity: str | None = Field(description="low, high, critical, visual, content, custom")
    status: str | None = Field(
        description="accepted, rejected, or forwarded (waiting for the customer's decision)"
    )
    known: bool | None
    auto_accepted: bool | None = None
    test_id: int | None
    test_title: str | None
    feature_id: int | None
    feature_title: str | None
    product_id: int | None
    reported_at: datetime | None
    author: str | None = Field(description="the tester who reported it")
    reject_reason: str | None = None
    actual_result: str | None = None
    expected_result: str | None = None
    steps: list[str] | None = None
    custom_report_configuration_id: int | None = Field(
        default=None,
        description="the product's custom report form, when the bug has a report (detail full)",
    )
    custom_fields: Annotated[list[CustomField], inline_list(CustomField)] | None = Field(
        default=None, description="the custom report's fields by key (detail full)"
    )

    @classmethod
    def of(cls, record: BugRecord, detail: Detail) -> Bug:
        full = detail == "full"
        fields = [CustomField(key=k, value=v) for k, v in record.custom_fields] if full else None
        return cls(
            id=record.id,
            title=record.title,
            severity=record.severity,
            status=record.status,
            known=record.known,
            auto_accepted=record.auto_accepted,
            test_id=record.test_id,
            test_title=record.test_title,
            feature_id=record.feature_id,
            feature_title=record.feature_title,
            product_id=record.product_id,
            reported_at=record.reported_at,
            author=record.author,
            reject_reason=record.reject_reason,
            actual_result=record.actual_result if full else _cut(record.actual_result, 160),
            expected_result=record.expected_result if full else None,
            steps=record.steps if full else None,
            custom_report_configuration_id=record.report_configuration_id if full else None,
            custom_fields=fields,
        )


class BugList(CompactSchema):
    LIST_FIELD: ClassVar[str] = "bugs"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit, or detail='concise'"

    bugs: Annotated[list[Bug], inline_list(Bug)]
    next_cursor: str | None = Field(description="pass as cursor to get the next bugs")
    hint: str | None = Field(default=None, description=_MORE)
    truncated: bool | None = _truncated()
    freshness: Freshness


class BugAnswer(CompactSchema):
    bug: Bug
    hint: str | None = Field(default=None, description="what was cut, when truncated")
    truncated: bool | None = _truncated()
    freshness: Freshness


class SearchResults(CompactSchema):
    LIST_FIELD: ClassVar[str] = "hits"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit"

    query: str
    hits: Annotated[list[SearchHit], inline_list(SearchHit)]
    next_cursor: str | None = Field(description="pass as cursor to get the next hits")
    hint: str | None = Field(default=None, description=_MORE)
    truncated: bool | None = _truncated()


class BugStats(CompactSchema):
    LIST_FIELD: ClassVar[str] = "groups"
    CUT_ADVICE: ClassVar[str] = "or a smaller limit"

    group_by: str
    groups: Annotated[list[StatsGroup], inline_list(StatsGroup)] = Field(
        description="a page of the groups: largest first; months oldest first"
    )
    group_count: int = Field(description="how many groups there are in all")
    total: int = Field(description="bugs over all groups, not only those shown")
    acceptance_rate: float | None = Field(
        description="accepted / (accepted + rejected) over all groups; null when none decided"
    )
    next_cursor: str | None = Field(description="pass as cursor to get the next groups")
    hint: str | None = Field(default=None, description=_MORE)
    truncated: bool | None = _truncated()
    freshness: Freshness


class SyncDataAnswer(CompactSchema):
    run_id: str
    joined: bool = Field(description="true when this call joined a sync already running")
    started: bool = Field(description="true when this call started the run")
    result: SyncResult | None = Field(description="the run's result (null with wait=false)")
    hint: str | None = None
