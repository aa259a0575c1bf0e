"""The read-only query tools: every answer comes from the mirror, read through when stale."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

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


async def _mirror(ctx: ToolContext) -> Mirror:
    """The mirror, once the App is open (it opens in the background at start-up)."""
    return (await ctx.request_context.lifespan_context.app()).mirror


def _more(next_cursor: str | None, noun: str) -> str | None:
    if next_cursor is None:
        return None
    return f"more {noun} exist: call again with cursor set to next_cursor"


async def list_products(ctx: ToolContext) -> Annotated[CallToolResult, ProductList]:
    """List the TestIO products of the account (id, name, type). Start here to find product ids
    for the other tools."""
    with tool_errors("list_products"):
        answer = await (await _mirror(ctx)).products.list_products()
        return respond(
            ProductList(products=[Product.of(p) for p in answer.value], freshness=answer.freshness)
        )


async def list_features(
    product_id: ProductId, ctx: ToolContext
) -> Annotated[CallToolResult, FeatureList]:
    """List a product's features (what testers test), with their user stories."""
    with tool_errors("list_features", not_found_hint="Use list_products to see product ids."):
        answer = await (await _mirror(ctx)).features.list_features(product_id)
        return respond(
            FeatureList(
                product_id=product_id,
                features=[Feature.of(f) for f in answer.value],
                freshness=answer.freshness,
            )
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
        return respond(
            ExploratoryTestList(
                tests=[ExploratoryTest.of(t, "concise") for t in page.items],
                next_cursor=page.next_cursor,
                hint=_more(page.next_cursor, "tests"),
                freshness=page.freshness,
            )
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
        answer = await mirror.tests.get_test(test_id)
        bugs_freshness = await mirror.bugs.ensure_fresh([test_id])
        counts = await mirror.bugs.counts_for_test(test_id)
        return respond(
            ExploratoryTestReport(
                test=ExploratoryTest.of(answer.value, detail),
                bug_counts=BugCounts(
                    by_severity=counts["severity"],
                    by_status=counts["status"],
                    total=sum(counts["status"].values()),
                ),
                freshness=answer.freshness,
                bugs_freshness=bugs_freshness,
            )
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
    limit: Limit = 20,
    cursor: Cursor = "",
    detail: Level = "concise",
) -> Annotated[CallToolResult, BugList]:
    """List bugs newest first, filtered by product, tests, feature, severity, status, known,
    report date or words. Each bug names its test and feature. detail="full" adds steps and
    expected results."""
    with tool_errors("list_bugs", not_found_hint="Use list_tests to see test ids."):
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
        )
        page = await (await _mirror(ctx)).bugs.list_bugs(chosen, limit=limit, cursor=cursor or None)
        return respond(
            BugList(
                bugs=[Bug.of(b, detail) for b in page.items],
                next_cursor=page.next_cursor,
                hint=_more(page.next_cursor, "bugs"),
                freshness=page.freshness,
            )
        )


async def get_bug(
    bug_id: Annotated[Id, Field(description="a bug id (see list_bugs)")],
    ctx: ToolContext,
) -> Annotated[CallToolResult, BugAnswer]:
    """One bug in full: steps, actual and expected result, reject reason, test and feature."""
    with tool_errors("get_bug", not_found_hint="Use list_bugs to see bug ids."):
        answer = await (await _mirror(ctx)).bugs.get_bug(bug_id)
        return respond(BugAnswer(bug=Bug.of(answer.value, "full"), freshness=answer.freshness))


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
) -> Annotated[CallToolResult, SearchResults]:
    """Full-text search over test titles and goals, feature titles and descriptions, and bug
    titles and results; every word must match (as a word prefix), best matches first."""
    with tool_errors("search"):
        hits = await (await _mirror(ctx)).search.search(query, kinds, product_id, limit)
        hint = None if hits else "nothing matched: try fewer or other words, or sync_data first"
        return respond(SearchResults(query=query, hits=hits, hint=hint))


async def bug_stats(
    ctx: ToolContext,
    group_by: Annotated[GroupBy, Field(description="what to count the bugs by")] = "severity",
    product_id: OnlyProduct = None,
    test_ids: OnlyTests = None,
    since: Since = None,
    until: Since = None,
) -> Annotated[CallToolResult, BugStats]:
    """Bug counts and acceptance rates (accepted / decided) grouped by severity, status,
    feature, test, tester or month (largest groups first; months oldest first): for quality
    reviews of a product or a set of tests."""
    with tool_errors("bug_stats", not_found_hint="Use list_tests to see test ids."):
        chosen = BugFilter(product_id=product_id, test_ids=test_ids, since=since, until=until)
        answer = await (await _mirror(ctx)).bugs.stats(group_by, chosen)
        groups = answer.value
        accepted = sum(g.accepted for g in groups)
        decided = accepted + sum(g.rejected for g in groups)
        return respond(
            BugStats(
                group_by=group_by,
                groups=groups,
                total=sum(g.total for g in groups),
                acceptance_rate=round(accepted / decided, 4) if decided else None,
                freshness=answer.freshness,
            )
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
