"""Bad input over MCP: unknown ids, out-of-range numbers, malformed dates, unknown enum values,
wrong types, garbage cursors and query syntax. Each gives a result or an error result an agent can
read (never a traceback, never the token), and the server keeps answering afterwards."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from testio_mirror.sandbox import DatasetSpec, FaultRule
from tests.helpers.mcp_session import (
    JSON,
    Mirrored,
    call,
    call_error,
    connect,
    synced_sandbox,
    text_of,
)
from tests.helpers.settings import make_settings

DATASET = DatasetSpec(seed=4, products=2, section_products=1, tests_per_product=20, bugs_per_test=2)
INJECTION = "'; DROP TABLE bugs; --"
FTS_SYNTAX = ['NEAR("a" "b")', '"', "*", INJECTION, "title:crash", "a OR b", "^x", "crash AND"]


def cursor_of(value: object) -> str:
    """A well-formed base64 cursor around any JSON value (not one the mirror handed out)."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("bad"), include_bugs=True) as mirror:
        yield mirror


def assert_readable(text: str, token: str) -> None:
    assert text.strip(), "an error without a message"
    assert "Traceback" not in text
    assert 'File "' not in text
    assert token not in text
    assert len(text) < 2000, text


# (tool, arguments, a word the error must contain)
UNKNOWN_IDS = [
    ("get_test", {"test_id": 999999}, "list_tests"),
    ("get_bug", {"bug_id": 999999}, "list_bugs"),
    ("list_features", {"product_id": 999}, "list_products"),
]


@pytest.mark.parametrize(("tool", "args", "hint"), UNKNOWN_IDS, ids=[c[0] for c in UNKNOWN_IDS])
async def test_unknown_ids_name_the_tool_that_lists_valid_ones(
    mirrored: Mirrored, tool: str, args: JSON, hint: str
) -> None:
    async with connect(mirrored.settings) as client:
        text = await call_error(client, tool, args)
        products = await call(client, "list_products")
    assert hint in text
    assert "not found" in text
    assert_readable(text, mirrored.sandbox.token)
    assert len(products["products"]) == DATASET.products


# Invalid by the tools' own schemas: each must be refused, naming the argument.
INVALID = [
    ("list_tests", {"limit": 0}, "limit"),
    ("list_tests", {"limit": -5}, "limit"),
    ("list_bugs", {"limit": 10**9}, "limit"),
    ("search", {"query": "crash", "limit": 0}, "limit"),
    ("list_tests", {"since": "yesterday"}, "since"),
    ("list_bugs", {"until": "31/12/2026"}, "until"),
    ("bug_stats", {"since": "last week"}, "since"),
    ("list_tests", {"status": ["sleeping"]}, "status"),
    ("list_bugs", {"severity": ["blocker"]}, "severity"),
    ("bug_stats", {"group_by": "color"}, "group_by"),
    ("get_test", {"test_id": 100001, "detail": "verbose"}, "detail"),
    ("list_bugs", {"detail": "verbose"}, "detail"),
    ("list_tests", {"limit": "abc"}, "limit"),
    ("list_features", {"product_id": "abc"}, "product_id"),
    ("get_bug", {"bug_id": "abc"}, "bug_id"),
    ("get_test", {"test_id": 0}, "test_id"),
    ("get_test", {"test_id": -1}, "test_id"),
    ("get_test", {}, "test_id"),
    ("search", {"query": ""}, "query"),
    ("search", {"query": "crash", "kinds": ["spaceship"]}, "kinds"),
    ("list_bugs", {"test_ids": list(range(1, 300))}, "test_ids"),
    ("list_bugs", {"known": "maybe"}, "known"),
    ("sync_status", {"period": "1y"}, "period"),
    ("sync_data", {"product_ids": [0]}, "product_ids"),
    ("list_tests", {"cursor": "garbage!!"}, "cursor"),
    ("list_bugs", {"cursor": cursor_of({"x": 1})}, "cursor"),
    ("list_tests", {"cursor": cursor_of(["2026-01-01", "not an id"])}, "cursor"),
]


@pytest.mark.parametrize(
    ("tool", "args", "argument"), INVALID, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(INVALID)]
)
async def test_invalid_arguments_are_refused_readably(
    mirrored: Mirrored, tool: str, args: JSON, argument: str
) -> None:
    async with connect(mirrored.settings) as client:
        text = await call_error(client, tool, args)
        products = await call(client, "list_products")
    assert argument in text
    assert_readable(text, mirrored.sandbox.token)
    assert len(products["products"]) == DATASET.products


# Odd but not invalid: a result or an error result, both readable.
ODD = [
    ("get_test", {"test_id": 2**62}),
    ("list_bugs", {"cursor": cursor_of([None, True])}),
    ("list_tests", {"since": "2026-10-01", "until": "2026-09-01"}),
    ("list_bugs", {"test_ids": [999999]}),
    ("bug_stats", {"group_by": "tester", "product_id": 999}),
    ("search", {"query": "   "}),
    ("list_tests", {"colour": "red"}),
]


@pytest.mark.parametrize(("tool", "args"), ODD, ids=[f"{c[0]}-{i}" for i, c in enumerate(ODD)])
async def test_odd_input_gives_a_readable_answer_and_the_server_goes_on(
    mirrored: Mirrored, tool: str, args: JSON
) -> None:
    async with connect(mirrored.settings) as client:
        result = await client.call_tool(tool, args)
        products = await call(client, "list_products")
    if result.is_error:
        assert_readable(text_of(result), mirrored.sandbox.token)
    else:
        assert result.structured_content is not None
        assert mirrored.sandbox.token not in text_of(result)
    assert len(products["products"]) == DATASET.products


# Beyond SQLite's 64-bit integers: the agent's input is wrong, not the server.
HUGE = [
    ("get_bug", {"bug_id": 2**70}),
    ("get_test", {"test_id": 2**70}),
    ("list_features", {"product_id": 2**70}),
    ("sync_data", {"product_ids": [2**70]}),
    ("list_tests", {"cursor": cursor_of(["2026-01-01T00:00:00.000000Z", 2**80])}),
]


@pytest.mark.parametrize(("tool", "args"), HUGE, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in HUGE])
async def test_ids_beyond_64_bits_are_refused_as_bad_input(
    mirrored: Mirrored, tool: str, args: JSON
) -> None:
    async with connect(mirrored.settings) as client:
        text = await call_error(client, tool, args)
        products = await call(client, "list_products")
    assert_readable(text, mirrored.sandbox.token)
    assert len(products["products"]) == DATASET.products
    # SQLite's OverflowError must not surface as an internal failure (the cursor case does).
    assert "unexpectedly" not in text, text


async def test_query_syntax_is_searched_as_words_and_changes_nothing(mirrored: Mirrored) -> None:
    async with connect(mirrored.settings) as client:
        before = (await call(client, "sync_status"))["counts"]
        for query in FTS_SYNTAX:
            # call() fails the test on an error result: syntax is never an error here.
            hits = await call(client, "search", {"query": query})
            bugs = await call(client, "list_bugs", {"text": query, "limit": 100})
            assert all(h["title"] for h in hits["hits"])
            assert len(bugs["bugs"]) <= 100
            assert len((await call(client, "list_products"))["products"]) == DATASET.products
        # Only punctuation: no word to look for, so nothing matches (not everything).
        assert (await call(client, "search", {"query": '"'}))["hits"] == []
        assert (await call(client, "list_bugs", {"text": "*"}))["bugs"] == []
        # Words inside the syntax are still found.
        crash = await call(client, "list_bugs", {"text": "crashes", "limit": 100})
        wrapped = await call(client, "list_bugs", {"text": '"crashes"*', "limit": 100})
        after = (await call(client, "sync_status"))["counts"]
    assert crash["bugs"]
    assert [b["id"] for b in wrapped["bugs"]] == [b["id"] for b in crash["bugs"]]
    assert after == before
    assert after["bugs"] == len(mirrored.truth["bugs"])


async def test_upstream_failures_read_well_and_never_show_the_token(mirrored: Mirrored) -> None:
    sandbox = mirrored.sandbox
    sandbox.faults.add(FaultRule(kind="error", path="exploratory_tests/*", status=500, times=None))
    sandbox.faults.add(FaultRule(kind="error", path="bugs/*", status=524, times=None))
    try:
        async with connect(mirrored.settings) as client:
            test_error = await call_error(client, "get_test", {"test_id": 888888})
            bug_error = await call_error(client, "get_bug", {"bug_id": 888888})
            products = await call(client, "list_products")
    finally:
        sandbox.faults.clear()
    for text in (test_error, bug_error):
        assert_readable(text, sandbox.token)
        assert "TestIO" in text
    assert len(products["products"]) == DATASET.products


OFFLINE_MISSING = [
    ("list_products", {}, "the product list is not in the mirror"),
    ("list_features", {"product_id": 101}, "the features of product 101 are not in the mirror"),
    ("get_test", {"test_id": 100001}, "test 100001 is not in the mirror"),
    ("get_bug", {"bug_id": 1000001}, "bug 1000001 is not in the mirror"),
]


@pytest.mark.parametrize(
    ("tool", "args", "says"), OFFLINE_MISSING, ids=[c[0] for c in OFFLINE_MISSING]
)
async def test_offline_and_missing_reads_as_a_sentence(
    mirrored: Mirrored, tmp_path: Path, tool: str, args: JSON, says: str
) -> None:
    settings = make_settings(mirrored.sandbox, tmp_path / "empty", customer_api_token=None)
    async with connect(settings, initial_sync=False) as client:
        text = await call_error(client, tool, args)
    assert_readable(text, mirrored.sandbox.token)
    assert says in text
    assert "(" not in text.split(":", 1)[0], text  # no Python tuple such as ('products',)
    assert "TESTIO_CUSTOMER_API_TOKEN" in text
