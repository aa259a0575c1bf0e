"""The read-only entity tools: ``list_testers`` (bug authors and how their bugs fared),
``get_product`` and ``get_feature`` (one thing at a glance).

Thin as every tool: validate, ask the mirror (``mirror.testers``, ``mirror.summaries``; the store
loads with the App, never to list the tools), answer through ``query_tools.answer``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from testio_mirror.schema import tool_description
from testio_mirror.server.entity_answers import FeatureReport, ProductReport, TesterList
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.query_tools import (
    READ_ONLY,
    Cursor,
    Id,
    Limit,
    OnlyProduct,
    ProductId,
    Since,
    ToolContext,
    answer,
)
from testio_mirror.server.state import ServerState

# The orders store/testers.py knows (TesterSort), spelled here so listing needs no store.
SortTesters = Literal["bugs", "critical", "acceptance_rate", "last_activity", "name"]


async def list_testers(
    ctx: ToolContext,
    product_id: OnlyProduct = None,
    since: Since = None,
    until: Since = None,
    sort_by: Annotated[
        SortTesters,
        Field(
            description="bugs: most bugs first; critical: most critical bugs; acceptance_rate: "
            "best rate first (none decided last); last_activity: latest report first; name"
        ),
    ] = "bugs",
    limit: Limit = 20,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, TesterList]:
    """List the testers who reported bugs (by product and report date): per tester, bugs by
    severity, accepted / rejected / forwarded, acceptance rate and latest report. For reviews
    of who finds what, and how much of it holds up."""
    with tool_errors("list_testers", not_found_hint="Use list_products to see product ids."):
        mirror = (await ctx.request_context.lifespan_context.app()).mirror
        found = await mirror.testers.list_testers(
            product_id=product_id,
            since=since,
            until=until,
            sort_by=sort_by,
            limit=limit,
            cursor=cursor or None,
        )
        page = found.value
        hint = None
        if page.next_cursor is not None:
            hint = "more testers exist: call again with cursor set to next_cursor"
        elif not page.testers and not cursor:
            hint = "no bugs in this scope: widen it, or sync_data with include_bugs"
        return answer(ctx, TesterList.of(page, sort_by, found.freshness, hint), page.cursors)


async def get_product(
    product_id: ProductId, ctx: ToolContext
) -> Annotated[CallToolResult, ProductReport]:
    """One product at a glance: how many features, tests and bugs; tests that ended in the
    last 30 and 90 days and the latest end; its sections; its bugs by status and severity
    with the acceptance rate."""
    with tool_errors("get_product", not_found_hint="Use list_products to see product ids."):
        mirror = (await ctx.request_context.lifespan_context.app()).mirror
        summary = await mirror.summaries.product(product_id)
        return answer(ctx, ProductReport.of(summary))


async def get_feature(
    feature_id: Annotated[Id, Field(description="a feature id (see list_features)")],
    ctx: ToolContext,
) -> Annotated[CallToolResult, FeatureReport]:
    """One feature at a glance: its product, description and user stories; the tests that
    covered it (how many, the newest few); its bugs by status and severity with the
    acceptance rate."""
    with tool_errors("get_feature", not_found_hint="Use list_features to see feature ids."):
        mirror = (await ctx.request_context.lifespan_context.app()).mirror
        summary = await mirror.summaries.feature(feature_id)
        return answer(ctx, FeatureReport.of(summary))


TITLES = {
    "list_testers": "List testers and their bugs",
    "get_product": "Get a product at a glance",
    "get_feature": "Get a feature at a glance",
}


def register(server: MCPServer[ServerState]) -> None:
    for tool in (list_testers, get_product, get_feature):
        server.add_tool(
            tool,
            title=TITLES[tool.__name__],
            description=tool_description(tool),
            annotations=READ_ONLY,
        )
