"""The prompts over MCP: listed, and naming the ids they are given."""

from __future__ import annotations

import re
from pathlib import Path

from testio_mirror.sandbox import DatasetSpec
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
