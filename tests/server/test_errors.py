"""Refused arguments over MCP: the error names the argument, shows what was given and says what
is accepted (the values, the range), in plain words: no pydantic codes, no links."""

from __future__ import annotations

from pathlib import Path

import pytest

from testio_mirror.sandbox import DatasetSpec
from tests.conftest import SandboxFactory
from tests.helpers.mcp_session import JSON, call_error, connect
from tests.helpers.settings import make_settings

TINY = DatasetSpec(seed=7, products=1, section_products=0, tests_per_product=3, bugs_per_test=1)
JS_SAFE = 2**53 - 1  # the largest id the tools take: what JavaScript reads exactly
TEST_STATUSES = "initialized, waiting, running, locked, customer_finalized, archived, cancelled"
METRIC_NAMES = "one of test_count, bug_count, bugs_per_test, accepted, rejected, forwarded"
FIELD_METRIC = "field_<count|sum|mean|min|max>:<1 to 64 of [a-z0-9_]>"
METRIC_SHAPE = [METRIC_NAMES, FIELD_METRIC, "or a list of 1 to 24 of them"]

# (tool, arguments, what the message must say)
REFUSED: list[tuple[str, JSON, list[str]]] = [
    ("list_tests", {"limit": 0}, ["limit was 0", "an integer from 1 to 100"]),
    ("list_tests", {"limit": "abc"}, ['limit was "abc"', "an integer from 1 to 100"]),
    ("search", {"query": "x", "limit": 51}, ["limit was 51", "an integer from 1 to 50"]),
    ("list_tests", {"status": ["sleeping"]}, ['status[0] was "sleeping"', TEST_STATUSES]),
    ("list_tests", {"status": "sleeping"}, ['status was "sleeping"', "or a list of up to 20 of"]),
    ("list_tests", {"testing_type": "fast"}, ["testing_type", "coverage, focused, rapid"]),
    ("sync_status", {"period": "1y"}, ['period was "1y"', "one of 1h, 24h, 7d, 30d"]),
    ("bug_stats", {"group_by": "color"}, ["group_by", "severity, status, feature, test"]),
    ("get_test", {"test_id": 5, "detail": "verbose"}, ["detail", "one of concise, full"]),
    ("list_bugs", {"known": "maybe"}, ['known was "maybe"', "true or false"]),
    ("list_bugs", {"since": "yesterday"}, ['since was "yesterday"', "ISO 8601 date"]),
    ("get_test", {"test_id": 0}, ["test_id was 0", f"an integer from 1 to {JS_SAFE}"]),
    ("get_bug", {"bug_id": 2**70}, ["bug_id was 1180591620717411303424", f"from 1 to {JS_SAFE}"]),
    ("get_test", {"test_id": 2**53}, [f"test_id was {2**53}", f"from 1 to {JS_SAFE}"]),
    ("get_test", {}, ["test_id is required", "a test id (see list_tests)"]),
    ("search", {"query": ""}, ['query was ""', "text of 1 to 500 characters"]),
    ("list_bugs", {"test_ids": list(range(1, 300))}, ["a list of 299 items", "up to 200"]),
    ("sync_data", {"product_ids": [0]}, ["product_ids[0] was 0", f"from 1 to {JS_SAFE}"]),
    # A list argument refused as a whole: what was given (and its kind when no value of that
    # kind is taken), then the list and its items' shape (an enum or a pattern, their anyOf).
    ("query_metrics", {"metrics": "nope"}, ['metrics was "nope", expected', *METRIC_SHAPE]),
    ("query_metrics", {"metrics": 5}, ["metrics was 5 (a number)", *METRIC_SHAPE]),
    ("query_metrics", {"metrics": {"a": 1}}, ['metrics was {"a": 1} (an object)', *METRIC_SHAPE]),
    ("query_metrics", {"metrics": []}, ["metrics was [], expected", *METRIC_SHAPE]),
    ("query_metrics", {"metrics": ["bug_count"] * 25}, ["a list of 25 items", *METRIC_SHAPE]),
    ("query_metrics", {"metrics": [1]}, ["metrics[0] was 1 (a number)", METRIC_NAMES]),
    (
        "query_metrics",
        {"metrics": ["bug_count"], "dimensions": ["product", "day", "week"]},
        ["dimensions was", "a list of up to 2 of them", "one of product, feature, test"],
    ),
    (
        "query_metrics",
        {"metrics": ["bug_count"], "sort_by": "zz"},
        ['sort_by was "zz"', "test_count, bug_count", "more", "field_<count|sum|mean|min|max>:"],
    ),
]


@pytest.mark.parametrize(
    ("tool", "args", "expected"), REFUSED, ids=[f"{c[0]}-{i}" for i, c in enumerate(REFUSED)]
)
async def test_a_refused_argument_says_what_is_accepted(
    make_sandbox: SandboxFactory, tmp_path: Path, tool: str, args: JSON, expected: list[str]
) -> None:
    async with connect(make_settings(make_sandbox(TINY), tmp_path / "home")) as client:
        text = await call_error(client, tool, args)
    for part in expected:
        assert part in text, f"{part!r} not in {text!r}"
    for pydantic_detail in ("http", "[type=", "input_value", "validation error for", "Arguments"):
        assert pydantic_detail not in text, text
    assert "\n" not in text, text


async def test_every_refused_argument_is_named_once(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    async with connect(make_settings(make_sandbox(TINY), tmp_path / "home")) as client:
        text = await call_error(
            client, "list_bugs", {"limit": 0, "severity": ["blocker", "major"], "until": "soon"}
        )
    assert text.startswith("Error executing tool list_bugs: invalid arguments: "), text
    for part in ("limit was 0", 'severity[0] was "blocker"', 'severity[1] was "major"', "until"):
        assert text.count(part) == 1, (part, text)


async def test_items_refused_alike_share_one_expectation(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # Each item is shown as the value it is (not the whole list), and what every item must be
    # is said once, not once per item.
    async with connect(make_settings(make_sandbox(TINY), tmp_path / "home")) as client:
        text = await call_error(client, "query_metrics", {"metrics": [1, 2]})
    assert "metrics[0] was 1 (a number), metrics[1] was 2 (a number), expected " in text, text
    assert "[1, 2]" not in text, text
    assert text.count(METRIC_NAMES) == 1, text
