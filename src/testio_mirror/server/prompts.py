"""Prompts for the common jobs: a test's status report, a product's quality review."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field


def status_report_prompt(
    test_id: Annotated[str, Field(description="the id of the exploratory test")],
) -> str:
    """A status report of one exploratory test, for a customer success manager."""
    return (
        f"Write a short status report of TestIO exploratory test {test_id}.\n"
        f"1. Call get_test with test_id={test_id} and detail='full': its status, dates, goal and "
        "bug counts.\n"
        f"2. Call list_bugs with test_ids=[{test_id}] and severity=['critical', 'high'] for the "
        "bugs that matter most, and bug_stats with group_by='status' and the same test_ids.\n"
        "3. Report: where the test stands, how many bugs by severity, the acceptance rate, the "
        "critical bugs by title with their feature, and what needs a decision (forwarded bugs).\n"
        "Mention the freshness of the data when it is stale."
    )


def quality_review_prompt(
    product_id: Annotated[str, Field(description="the id of the product")],
    since: Annotated[str, Field(description="start of the period, YYYY-MM-DD")] = "",
) -> str:
    """A quality review of one product over a period, for a QA lead or product manager."""
    period = f" since {since}" if since else ""
    window = f", since='{since}'" if since else ""
    return (
        f"Review the quality of TestIO product {product_id}{period}.\n"
        f"1. Call list_tests with product_id={product_id}{window} to see the tests run.\n"
        f"2. Call bug_stats with product_id={product_id}{window} grouped by 'severity', then "
        "by 'feature' and by 'month'.\n"
        f"3. Call list_bugs with product_id={product_id}, severity=['critical']{window}.\n"
        "4. Summarise: bug trends over the months, the features with the most bugs and the "
        "lowest acceptance rates, the open critical bugs, and recommendations.\n"
        "If sync_status shows the mirror was never synced, call sync_data first."
    )


def register(server: MCPServer[Any]) -> None:
    server.prompt(name="test_status_report")(status_report_prompt)
    server.prompt(name="product_quality_review")(quality_review_prompt)
