"""The read-only ``get_test_case_results`` tool: a test-case test's cases, their executions,
pass / fail per case and overall.

Thin as every tool: validate, ask the mirror (``mirror.test_cases``, read through with the
tests' TTLs; the store loads with the App, never to list the tools), answer through
``query_tools.answer``. A test that is not a test-case test is an answer, not an error
(``is_test_case_test`` false, no cases, a hint naming get_test and list_tests): asking is how an
agent learns whether a test has cases.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import Field

from testio_mirror.schema import tool_description
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.query_tools import READ_ONLY, Id, ToolContext, answer
from testio_mirror.server.state import ServerState
from testio_mirror.server.test_case_answers import TestCaseResults


async def get_test_case_results(
    test_id: Annotated[
        Id, Field(description="a test-case test's id (list_tests: testing_type null)")
    ],
    ctx: ToolContext,
) -> Annotated[CallToolResult, TestCaseResults]:
    """A test-case test's cases (tests whose testing_type is null): per case its steps, every
    execution (tester, status, when, failed steps with their comments), passed and failed
    counts and a verdict (its latest execution's); overall counts and the pass rate
    (passed executions / executions). Another test answers is_test_case_test false."""
    with tool_errors("get_test_case_results", not_found_hint="Use list_tests to see test ids."):
        mirror = (await ctx.request_context.lifespan_context.app()).mirror
        found = await mirror.test_cases.test_case_run(test_id)
        return answer(ctx, TestCaseResults.of(found.value, found.freshness))


def register(server: MCPServer[ServerState]) -> None:
    server.add_tool(
        get_test_case_results,
        title="Get a test-case test's results",
        description=tool_description(get_test_case_results),
        annotations=READ_ONLY,
    )
