"""The read-only query tools: every answer comes from the mirror, read through when stale."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from testio_mirror.schema import JS_SAFE_INTEGER, OneOrMany, tool_description
from testio_mirror.server.answers import (
    Bug,
    BugAnswer,
    BugCounts,
    BugList,
    BugStats,
    Detail,
    ExploratoryTest,
    ExploratoryTestList,
    ExploratoryTestReport,
    Feature,
    FeatureList,
    Product,
    ProductList,
    SearchResults,
    respond,
)
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.state import ServerState
from testio_mirror.store.records import BugFilter, GroupBy, SearchKind

if TYPE_CHECKING:
    from testio_mirror.store.mirror import Mirror

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)

TestStatus = Literal[
    "initialized", "waiting", "running", "locked", "customer_finalized", "archived", "cancelled"
]
TestingType = Literal["coverage", "focused", "rapid", "usability", "external"]
Severity = Literal["low", "high", "critical", "visual", "content", "custom"]
BugStatus = Literal["accepted", "rejected", "forwarded"]
# The SDK hands every tool the lifespan's ServerState; annotated so, the tools read it typed.
ToolContext = Context[ServerState]

# TestIO ids are positive integers. SQLite holds up to 2**63 - 1, but a schema saying so is read
# wrong by JavaScript clients: ids go up to 2**53 - 1, exactly as published (docs/tools.md).
Id = Annotated[int, Field(ge=1, le=JS_SAFE_INTEGER)]
ProductId = Annotated[Id, Field(description="a product id (see list_products)")]
OnlyProduct = Annotated[Id | None, Field(description="only this product (see list_products)")]
# A list argument also takes one value: test_ids=5 is test_ids=[5] (schema.OneOrMany).
OnlyTests = Annotated[
    list[Id] | None,
    Field(max_length=200, description="only these tests, up to 200 (see list_tests)"),
    OneOrMany(),
]
Limit = Annotated[int, Field(ge=1, le=100, description="how many to return (1-100)")]
Level = Annotated[
    Detail, Field(description='"full" adds the long texts; "concise" leaves them out')
]
# The SDK json-decodes a string argument unless its annotation is exactly ``str``: typed
# ``str | None``, the text "null" would arrive as None and "[]" as a list (python-sdk #1873).
# So optional text is a ``str`` whose default "" means "not given".
Cursor = Annotated[str, Field(description="next_cursor of a previous answer; omit for page 1")]
Since = Annotated[
    datetime | None, Field(description="ISO 8601 date or date-time (UTC if no offset)")
]


def as_utc(moment: datetime | None) -> datetime | None:
    """A ``Since`` value: a date-time without an offset is UTC (as its description says)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def _mirror(ctx: ToolContext) -> Mirror:
    """The mirror, once the App is open (it opens in the background at start-up)."""
    return (await ctx.request_context.lifespan_context.app()).mirror


def _more(next_cursor: str | None, noun: str) -> str | None:
    if next_cursor is None:
        return None
    return f"more {noun} exist: call again with cursor set to next_cursor"


def answer(
    ctx: ToolContext,
    value: BaseModel,
    cursors: Sequence[str] | None = None,
    *,
    list_field: str | None = None,
) -> CallToolResult:
    """``respond`` within this server's answer ceiling (TESTIO_MAX_ANSWER_BYTES): every tool
    answers through here, compact and bounded."""
    max_bytes = ctx.request_context.lifespan_context.settings.max_answer_bytes
    return respond(value, max_bytes=max_bytes, cursors=cursors, list_field=list_field)


async def list_products(
    ctx: ToolContext, limit: Limit = 50, cursor: Cursor = ""
) -> Annotated[CallToolResult, ProductList]:
    """List the TestIO products of the account (id, name, type). Start here to find product ids
    for the other tools."""
    with tool_errors("list_products"):
        page = await (await _mirror(ctx)).products.page_products(limit=limit, cursor=cursor or None)
        return answer(
            ctx,
            ProductList(
                products=[Product.of(p) for p in page.items],
                next_cursor=page.next_cursor,
                hint=_more(page.next_cursor, "products"),
                freshness=page.freshness,
            ),
            page.cursors,
        )


async def list_features(
    product_id: ProductId, ctx: ToolContext, limit: Limit = 20, cursor: Cursor = ""
) -> Annotated[CallToolResult, FeatureList]:
    """List a product's features (what testers test), with their user stories."""
    with tool_errors("list_features", not_found_hint="Use list_products to see product ids."):
        page = await (await _mirror(ctx)).features.page_features(
            product_id, limit=limit, cursor=cursor or None
        )
        return answer(
            ctx,
            FeatureList(
                product_id=product_id,
                features=[Feature.of(f) for f in page.items],
                next_cursor=page.next_cursor,
                hint=_more(page.next_cursor, "features"),
                freshness=page.freshness,
            ),
            page.cursors,
        )


async def list_tests(
    ctx: ToolContext,
    product_id: OnlyProduct = None,
    status: Annotated[
        list[TestStatus] | None,
        Field(max_length=20, description="only tests in these statuses"),
        OneOrMany(),
    ] = None,
    testing_type: Annotated[
        TestingType | None, Field(description="only tests of this testing type")
    ] = None,
    since: Since = None,
    until: Since = None,
    limit: Limit = 20,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, ExploratoryTestList]:
    """List exploratory tests newest first (by end date), filtered by product, status, testing
    type and end date. Use get_test for one test's details and bug counts."""
    with tool_errors("list_tests"):
        page = await (await _mirror(ctx)).tests.list_tests(
            product_id=product_id,
            statuses=status,
            testing_type=testing_type,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor or None,
        )
        return answer(
            ctx,
            ExploratoryTestList(
                tests=[ExploratoryTest.of(t, "concise") for t in page.items],
                next_cursor=page.next_cursor,
                hint=_more(page.next_cursor, "tests"),
                freshness=page.freshness,
            ),
            page.cursors,
        )


async def get_test(
    test_id: Annotated[Id, Field(description="a test id (see list_tests)")],
    ctx: ToolContext,
    detail: Level = "concise",
) -> Annotated[CallToolResult, ExploratoryTestReport]:
    """One exploratory test with its bug counts by severity and status: the basis of a test's
    status report. detail="full" adds goal, instructions and out-of-scope texts."""
    with tool_errors("get_test", not_found_hint="Use list_tests to see test ids."):
        mirror = await _mirror(ctx)
        found = await mirror.tests.get_test(test_id)
        bugs_freshness = await mirror.bugs.ensure_fresh([test_id])
        counts = await mirror.bugs.counts_for_test(test_id)
        return answer(
            ctx,
            ExploratoryTestReport(
                test=ExploratoryTest.of(found.value, detail),
                bug_counts=BugCounts(
                    by_severity=counts["severity"],
                    by_status=counts["status"],
                    total=sum(counts["status"].values()),
                ),
                freshness=found.freshness,
                bugs_freshness=bugs_freshness,
            ),
        )


async def list_bugs(
    ctx: ToolContext,
    product_id: OnlyProduct = None,
    test_ids: OnlyTests = None,
    feature_id: Annotated[
        Id | None, Field(description="only bugs of this feature (see list_features)")
    ] = None,
    severity: Annotated[
        list[Severity] | None,
        Field(max_length=20, description="only these severities"),
        OneOrMany(),
    ] = None,
    status: Annotated[
        list[BugStatus] | None, Field(max_length=20, description="only these statuses"), OneOrMany()
    ] = None,
    known: Annotated[
        bool | None, Field(description="true: only known bugs; false: only new ones")
    ] = None,
    since: Since = None,
    until: Since = None,
    text: Annotated[
        str, Field(max_length=500, description="words in title or results; omit for any")
    ] = "",
    # Plain ``str`` both (see Cursor): a value "5" or "null" must stay the text it is.
    field: Annotated[
        str,
        Field(
            pattern="^([a-z0-9_]{1,64})?$",
            description="only bugs whose custom report has this field (its key, as get_bug "
            "shows it) filled in; with field_value, with exactly that value; omit for any",
        ),
    ] = "",
    field_value: Annotated[
        str, Field(max_length=500, description="the value field must have (needs field)")
    ] = "",
    limit: Limit = 20,
    cursor: Cursor = "",
    detail: Level = "concise",
) -> Annotated[CallToolResult, BugList]:
    """List bugs newest first, filtered by product, tests, feature, severity, status, known,
    report date, words or a custom report field's value. Each bug names its test and feature.
    detail="full" adds steps, expected results and the custom report's fields."""
    with tool_errors("list_bugs", not_found_hint="Use list_tests to see test ids."):
        if field_value and not field:
            raise ValueError("field_value needs field: the key of the custom field to match")
        chosen = BugFilter(
            product_id=product_id,
            test_ids=test_ids,
            feature_id=feature_id,
            severities=severity,
            statuses=status,
            known=known,
            since=since,
            until=until,
            text=text or None,
            field=field or None,
            field_value=field_value or None,
        )
        page = await (await _mirror(ctx)).bugs.list_bugs(chosen, limit=limit, cursor=cursor or None)
        return answer(
            ctx,
            BugList(
                bugs=[Bug.of(b, detail) for b in page.items],
                next_cursor=page.next_cursor,
                hint=_more(page.next_cursor, "bugs"),
                freshness=page.freshness,
            ),
            page.cursors,
        )


async def get_bug(
    bug_id: Annotated[Id, Field(description="a bug id (see list_bugs)")],
    ctx: ToolContext,
) -> Annotated[CallToolResult, BugAnswer]:
    """One bug in full: steps, actual and expected result, reject reason, test and feature, and
    its custom report's fields (custom_fields, with custom_report_configuration_id)."""
    with tool_errors("get_bug", not_found_hint="Use list_bugs to see bug ids."):
        found = await (await _mirror(ctx)).bugs.get_bug(bug_id)
        return answer(ctx, BugAnswer(bug=Bug.of(found.value, "full"), freshness=found.freshness))


async def search(
    query: Annotated[str, Field(min_length=1, max_length=500, description="words to find")],
    ctx: ToolContext,
    kinds: Annotated[
        list[SearchKind] | None,
        Field(max_length=20, description="only these kinds of item (default: all)"),
        OneOrMany(),
    ] = None,
    product_id: OnlyProduct = None,
    limit: Annotated[int, Field(ge=1, le=50, description="how many hits to return (1-50)")] = 10,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, SearchResults]:
    """Full-text search over test titles and goals, feature titles and descriptions, and bug
    titles and results; every word must match (as a word prefix), best matches first."""
    with tool_errors("search"):
        page = await (await _mirror(ctx)).search.search_page(
            query, kinds, product_id, limit, cursor or None
        )
        hint = _more(page.next_cursor, "hits")
        if not page.hits and not cursor:
            hint = "nothing matched: try fewer or other words, or sync_data first"
        return answer(
            ctx,
            SearchResults(query=query, hits=page.hits, next_cursor=page.next_cursor, hint=hint),
            page.cursors,
        )


async def bug_stats(
    ctx: ToolContext,
    group_by: Annotated[GroupBy, Field(description="what to count the bugs by")] = "severity",
    product_id: OnlyProduct = None,
    test_ids: OnlyTests = None,
    since: Since = None,
    until: Since = None,
    limit: Limit = 20,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, BugStats]:
    """Bug counts and acceptance rates (accepted / decided) grouped by severity, status,
    feature, test, tester or month (largest groups first; months oldest first): for quality
    reviews of a product or a set of tests."""
    with tool_errors("bug_stats", not_found_hint="Use list_tests to see test ids."):
        chosen = BugFilter(product_id=product_id, test_ids=test_ids, since=since, until=until)
        found = await (await _mirror(ctx)).bugs.stats(
            group_by, chosen, limit=limit, cursor=cursor or None
        )
        stats = found.value
        return answer(
            ctx,
            BugStats(
                group_by=group_by,
                groups=stats.groups,
                group_count=stats.group_count,
                total=stats.total,
                acceptance_rate=stats.acceptance_rate,
                next_cursor=stats.next_cursor,
                hint=_more(stats.next_cursor, "groups"),
                freshness=found.freshness,
            ),
            stats.cursors,
        )


TITLES = {
    "list_products": "List products",
    "list_features": "List a product's features",
    "list_tests": "List tests",
    "get_test": "Get a test and its bug counts",
    "list_bugs": "List bugs",
    "get_bug": "Get a bug",
    "search": "Search tests, features and bugs",
    "bug_stats": "Bug statistics",
}


def register(server: MCPServer[ServerState]) -> None:
    for tool in (
        list_products,
        list_features,
        list_tests,
        get_test,
        list_bugs,
        get_bug,
        search,
        bug_stats,
    ):
        server.add_tool(
            tool,
            title=TITLES[tool.__name__],
            description=tool_description(tool),
            annotations=READ_ONLY,
        )
