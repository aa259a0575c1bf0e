"""The ``quality_report`` tool: a quality review of some products over a period in one read.

Thin as every tool: validate, ask ``store/quality_report.py`` (imported when the tool is called:
the server lists its tools before the store loads), answer through ``query_tools.answer``.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from testio_mirror.schema import OneOrMany, tool_description
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.query_tools import READ_ONLY, Id, Since, ToolContext, answer, as_utc
from testio_mirror.server.report_answers import QualityReportAnswer
from testio_mirror.server.state import ServerState

MAX_PRODUCTS = 50


async def quality_report(
    ctx: ToolContext,
    product_ids: Annotated[
        list[Id] | None,
        Field(
            max_length=MAX_PRODUCTS,
            description="the products to review (see list_products); omit for every product",
        ),
        OneOrMany(),
    ] = None,
    since: Since = None,
    until: Since = None,
) -> Annotated[CallToolResult, QualityReportAnswer]:
    """A quality review in one read, per product and overall: tests by status, bugs by severity
    and status, the acceptance, rejection, auto-acceptance and review rates with their level
    (ok / warning / critical / no_data) against the health thresholds, the change against the
    previous period of equal length, the features and testers behind the critical bugs, and
    what the mirror may be missing. Period [since, until), UTC; default the 30 days ending
    now. Definitions and thresholds: docs/quality.md."""
    with tool_errors("quality_report", not_found_hint="Use list_products to see product ids."):
        from testio_mirror.store.quality_report import HealthThresholds, QualityReports

        state = ctx.request_context.lifespan_context
        mirror = (await state.app()).mirror
        reports = QualityReports(mirror, HealthThresholds.from_settings(state.settings))
        report = await reports.report(
            product_ids=product_ids, since=as_utc(since), until=as_utc(until)
        )
        return answer(ctx, QualityReportAnswer.of(report))


def register(server: MCPServer[ServerState]) -> None:
    server.add_tool(
        quality_report,
        title="Quality report of products over a period",
        description=tool_description(quality_report),
        annotations=READ_ONLY,
    )
