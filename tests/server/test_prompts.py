"""The prompts over MCP: listed, and naming the ids they are given."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from testio_mirror.sandbox import DatasetSpec
from testio_mirror.server.prompts import period_dates
from tests.conftest import SandboxFactory
from tests.helpers.expected_answers import has_sections
from tests.helpers.mcp_session import connect
from tests.helpers.settings import make_settings

TINY = DatasetSpec(seed=5, products=2, section_products=1, tests_per_product=30, bugs_per_test=2)


async def test_prompts_name_the_given_ids(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    sandbox = make_sandbox(TINY)
    product = next(p for p in sandbox.world.products() if not has_sections(p))
    async with connect(make_settings(sandbox, tmp_path / "home")) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        report = await client.get_prompt("test_status_report", {"test_id": "100017"})
        review = await client.get_prompt(
            "product_quality_review", {"product_id": str(product["id"]), "since": "2026-09-01"}
        )
    assert {"test_status_report", "product_quality_review"} <= names
    report_text = getattr(report.messages[0].content, "text", "")
    review_text = getattr(review.messages[0].content, "text", "")
    assert "test_id=100017" in report_text
    assert "get_test" in report_text
    assert f"product_id={product['id']}" in review_text
    assert "2026-09-01" in review_text
    assert "bug_stats" in review_text


async def test_the_triage_prompt_walks_forwarded_bugs_with_tools_the_server_lists(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    product_id = sandbox.world.products()[0]["id"]
    async with connect(make_settings(sandbox, tmp_path / "home")) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        tools = {t.name for t in (await client.list_tools()).tools}
        prompt = await client.get_prompt("triage_forwarded_bugs", {"product_id": str(product_id)})
    text = getattr(prompt.messages[0].content, "text", "")
    assert "triage_forwarded_bugs" in names
    assert f"product_id={product_id}" in text
    assert "status=['forwarded']" in text
    # The tools the prompt tells the agent to call are ones the server lists.
    called = set(re.findall(r"\b[a-z_]+\b", text)) & tools
    assert {"list_bugs", "triage_bugs", "resolve_conflict", "sync_data", "search"} <= called
    assert "Never send a decision they did not confirm" in text


async def test_the_customer_meeting_prompt_calls_tools_the_server_lists(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(TINY)
    async with connect(make_settings(sandbox, tmp_path / "home")) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        tools = {t.name for t in (await client.list_tools()).tools}
        chosen = await client.get_prompt(
            "prep_customer_meeting", {"product_ids": "101, 102", "period": "2026-07-01..2026-09-30"}
        )
        default = await client.get_prompt("prep_customer_meeting", {})
    assert "prep_customer_meeting" in names
    text = getattr(chosen.messages[0].content, "text", "")
    assert "product_ids=[101, 102]" in text
    assert "since='2026-07-01', until='2026-10-01'" in text, "the last day is included"
    called = set(re.findall(r"\b[a-z_]+\b", text)) & tools
    assert {"quality_report", "query_metrics", "list_testers", "get_product", "list_bugs"} <= called
    assert "dimensions=['month']" in text
    assert "compare=true" in text
    assert "dimensions=['feature']" in text
    assert "status=['forwarded']" in text
    assert "brief" in text
    # No arguments: every product over the 30 days up to today.
    plain = getattr(default.messages[0].content, "text", "")
    today = datetime.datetime.now(datetime.UTC).date()
    since = (today - datetime.timedelta(days=29)).isoformat()
    until = (today + datetime.timedelta(days=1)).isoformat()
    assert f"since='{since}', until='{until}'" in plain
    assert "product_ids=" not in plain
    assert "every product" in plain


def test_the_meeting_periods_are_dated_from_today() -> None:
    today = datetime.date(2026, 12, 4)
    assert period_dates("30d", today) == (datetime.date(2026, 11, 5), datetime.date(2026, 12, 5))
    assert period_dates("90d", today) == (datetime.date(2026, 9, 6), datetime.date(2026, 12, 5))
    # quarter: the last complete calendar quarter.
    assert period_dates("quarter", today) == (datetime.date(2026, 7, 1), datetime.date(2026, 10, 1))
    assert period_dates("quarter", datetime.date(2026, 2, 1)) == (
        datetime.date(2025, 10, 1),
        datetime.date(2026, 1, 1),
    )
    assert period_dates("2026-01-01..2026-01-01", today) == (
        datetime.date(2026, 1, 1),
        datetime.date(2026, 1, 2),
    )
    assert period_dates("2026-01-02..2026-01-01", today) is None
    assert period_dates("9999-12-31..9999-12-31", today) is None
