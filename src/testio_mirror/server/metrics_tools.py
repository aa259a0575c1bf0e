"""The ``query_metrics`` tool: metrics of bugs and tests by up to two dimensions, from SQL over
the mirror. Names come from the one vocabulary (``store/metrics_vocabulary.py``, which imports
nothing heavy); the query itself (``store/metrics.py``) is imported when the tool is called."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from testio_mirror.schema import OneOrMany, tool_description
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.metrics_answers import MetricsAnswer, MetricsRow, Period
from testio_mirror.server.query_tools import (
    READ_ONLY,
    BugStatus,
    Cursor,
    Id,
    Severity,
    Since,
    TestingType,
    ToolContext,
    answer,
    as_utc,
)
from testio_mirror.server.state import ServerState
from testio_mirror.store.metrics_fields import CUSTOM_FIELD_PATTERN, FIELD_METRIC_PATTERN
from testio_mirror.store.metrics_vocabulary import DIMENSIONS, METRICS

# Custom report fields are named by a pattern and a key (``field_mean:affected_users``,
# ``custom_field:customer_impact``): still a closed grammar, published as one.
FieldMetric = Annotated[str, Field(pattern=FIELD_METRIC_PATTERN, max_length=80)]
FieldDimension = Annotated[str, Field(pattern=CUSTOM_FIELD_PATTERN, max_length=80)]
if TYPE_CHECKING:
    MetricName = str
    DimensionName = str
    SortName = str
else:
    # Closed sets published as enums, made from the vocabulary: one place names them.
    MetricName = Literal[tuple(METRICS)] | FieldMetric
    DimensionName = Literal[tuple(DIMENSIONS)] | FieldDimension
    SortName = Literal[(*METRICS, *DIMENSIONS)] | FieldMetric | FieldDimension


async def query_metrics(
    ctx: ToolContext,
    metrics: Annotated[
        list[MetricName],
        Field(
            min_length=1,
            max_length=24,
            description="what to compute (testio://metrics/definitions); over a numeric "
            "custom report field: field_count, field_sum, field_mean, field_min or field_max, "
            "then ':' and the field's key (field_mean:affected_users)",
        ),
        OneOrMany(),
    ],
    dimensions: Annotated[
        list[DimensionName] | None,
        Field(
            max_length=2,
            description="0 to 2 dimensions to group by; at most one time bucket; "
            "custom_field:<key> groups bugs by a custom report field's value",
        ),
        OneOrMany(),
    ] = None,
    product_ids: Annotated[
        list[Id] | None, Field(max_length=100, description="only these products"), OneOrMany()
    ] = None,
    feature_ids: Annotated[
        list[Id] | None, Field(max_length=100, description="only these features"), OneOrMany()
    ] = None,
    test_ids: Annotated[
        list[Id] | None,
        Field(max_length=200, description="only these tests, up to 200"),
        OneOrMany(),
    ] = None,
    since: Since = None,
    until: Since = None,
    severity: Annotated[
        list[Severity] | None,
        Field(max_length=20, description="only bugs of these severities"),
        OneOrMany(),
    ] = None,
    status: Annotated[
        list[BugStatus] | None,
        Field(max_length=20, description="only bugs in these statuses"),
        OneOrMany(),
    ] = None,
    testing_type: Annotated[
        list[TestingType] | None,
        Field(max_length=20, description="only tests (and their bugs) of these testing types"),
        OneOrMany(),
    ] = None,
    # One name, a plain ``str``: the SDK would json-decode the text of a ``list[str]`` (#1873).
    tester: Annotated[
        str, Field(max_length=200, description="only bugs reported by this tester; omit for any")
    ] = "",
    known: Annotated[
        bool | None, Field(description="true: only known bugs; false: only new ones")
    ] = None,
    compare: Annotated[
        bool, Field(description="also the previous period of equal length (needs since, until)")
    ] = False,
    sort_by: Annotated[
        SortName | None,
        Field(description="a metric (largest first) or a dimension (ascending)"),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="how many rows to return (1-100)")] = 50,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, MetricsAnswer]:
    """Metrics of bugs and tests (counts, acceptance and rejection rates, severity score,
    testers, features, numeric custom report fields...) grouped by up to two dimensions
    (product, feature, test, tester, severity, status, testing type, day/week/month/quarter,
    platform, browser, device category, a custom report field, ...), filtered by products,
    features, tests, period, severity, status, testing type, tester, known. since/until bound a
    bug's report time and a test's end time (UTC). compare=true adds the previous period. Every
    definition: resource testio://metrics/definitions."""
    with tool_errors("query_metrics", not_found_hint="Use list_tests to see test ids."):
        from testio_mirror.store.metrics import MetricsQuery, MetricsRepository
        from testio_mirror.store.metrics_sql import MetricsFilter

        mirror = (await ctx.request_context.lifespan_context.app()).mirror
        query = MetricsQuery(
            metrics=tuple(dict.fromkeys(metrics)),
            dimensions=tuple(dimensions or ()),
            filter=MetricsFilter(
                product_ids=product_ids,
                feature_ids=feature_ids,
                test_ids=test_ids,
                testing_types=testing_type,
                severities=severity,
                statuses=status,
                testers=[tester] if tester else None,
                known=known,
                since=as_utc(since),
                until=as_utc(until),
            ),
            sort_by=sort_by,
            compare=compare,
        )
        repository = MetricsRepository(mirror.db, mirror.bugs, mirror.policy, mirror.bug_facts)
        found = await repository.query(query, limit=limit, cursor=cursor or None)
        previous = found.previous_period
        hint = None
        if found.next_cursor is not None:
            hint = "more rows exist: call again with cursor set to next_cursor"
        elif found.row_count == 0:
            hint = "nothing in scope: widen the filters, or sync_data with include_bugs first"
        return answer(
            ctx,
            MetricsAnswer(
                metrics=list(query.metrics),
                dimensions=list(query.dimensions),
                rows=[
                    MetricsRow(
                        group=row.group,
                        labels=row.labels or None,
                        values=row.values,
                        previous=row.previous,
                        change=row.change,
                        relative_change=row.relative_change,
                    )
                    for row in found.rows
                ],
                row_count=found.row_count,
                totals=found.totals,
                previous_period=Period(since=previous[0], until=previous[1]) if previous else None,
                previous_totals=found.previous_totals,
                next_cursor=found.next_cursor,
                hint=hint,
                freshness=found.freshness,
            ),
            found.cursors,
        )


def register(server: MCPServer[ServerState]) -> None:
    server.add_tool(
        query_metrics,
        title="Query metrics",
        description=tool_description(query_metrics),
        annotations=READ_ONLY,
    )
