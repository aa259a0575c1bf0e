"""The tools as ``tools/list`` publishes them: portable JSON schemas (what the MCP Inspector's
schema check warns about, and more), a title and a described argument everywhere, closed sets
of values as enums, and list arguments that take a single value too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_types import Tool

from testio_mirror.sandbox import DatasetSpec
from tests.conftest import SandboxFactory
from tests.helpers.mcp_session import JSON, Mirrored, call, connect, synced_sandbox
from tests.helpers.serving import TOOLS
from tests.helpers.settings import make_settings

TINY = DatasetSpec(seed=6, products=2, section_products=1, tests_per_product=20, bugs_per_test=3)
JS_SAFE = 2**53 - 1
# Arguments that really are free text; every other string argument has a closed set of values.
# confirm: the one-time token of a needs_confirmation answer; tester: a tester's name;
# field_value: what a tester typed into a custom report field.
FREE_TEXT = {"cursor", "text", "query", "confirm", "tester", "field_value"}
NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
SUBSCHEMAS = ("items", "contains", "not", "if", "then", "else", "additionalProperties")
# Keywords that constrain a value; a schema with none of them accepts anything (the Inspector's
# "untyped-schema" warning).
CONSTRAINING = {"type", "enum", "const", "$ref", "anyOf", "allOf", "oneOf", "not", "items"}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(TINY, tmp_path_factory.mktemp("schemas"), include_bugs=True) as mirror:
        yield mirror


async def listed_tools(make_sandbox: SandboxFactory, home: Path) -> list[Tool]:
    async with connect(make_settings(make_sandbox(TINY), home)) as client:
        return (await client.list_tools()).tools


def subschemas(node: JSON, path: str) -> Iterator[tuple[str, Any]]:
    for key in SUBSCHEMA_MAPS:
        for name, sub in (node.get(key) or {}).items():
            yield f"{path}.{key}.{name}", sub
    for key in SUBSCHEMA_LISTS:
        for i, sub in enumerate(node.get(key) or []):
            yield f"{path}.{key}[{i}]", sub
    for key in SUBSCHEMAS:
        if key in node:
            yield f"{path}.{key}", node[key]


def problems(node: Any, path: str, parent: str | None = None) -> Iterator[str]:
    """What is wrong with one schema and everything under it."""
    if isinstance(node, bool):
        if parent != "additionalProperties":
            yield f"{path}: a bare {node} where a schema is expected"
        return
    if not isinstance(node, dict):
        yield f"{path}: not a schema: {node!r}"
        return
    if isinstance(node.get("type"), list):
        yield f"{path}: type is a list {node['type']}"
    if not CONSTRAINING & set(node) and parent != "not":
        yield f"{path}: accepts any value (no type)"
    for key in NUMERIC_KEYWORDS:
        value = node.get(key)
        if isinstance(value, int | float) and abs(value) > JS_SAFE:
            yield f"{path}: {key} {value} is beyond what JavaScript reads exactly"
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        yield f"{path}: remote $ref {ref}"
    yield from description_problems(node.get("description"), path)
    for child_path, child in subschemas(node, path):
        yield from problems(child, child_path, child_path.rsplit(".", 1)[-1].split("[")[0])


def description_problems(text: object, path: str) -> Iterator[str]:
    if text is None:
        return
    if not isinstance(text, str) or not text.strip():
        yield f"{path}: empty description"
        return
    if text != text.strip():
        yield f"{path}: description starts or ends with white space: {text!r}"
    if re.search(r"\n[ \t]", text) or "\n\n\n" in text:
        yield f"{path}: description keeps indentation or runs of newlines: {text!r}"


def numbers_in(value: Any) -> Iterator[int | float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers_in(item)


def branches(schema: JSON) -> list[JSON]:
    """An argument's schema as the alternatives it accepts (null left out)."""
    choices = schema.get("anyOf", [schema])
    return [c for c in choices if c.get("type") != "null"]


async def test_every_schema_is_portable(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    tools = await listed_tools(make_sandbox, tmp_path / "home")
    assert {tool.name for tool in tools} == TOOLS
    found = []
    for tool in tools:
        assert tool.output_schema is not None, tool.name
        for kind, schema in (("input", tool.input_schema), ("output", tool.output_schema)):
            found += [f"{tool.name} {kind}{p}" for p in problems(schema, "")]
            found += [
                f"{tool.name} {kind}: {n} cannot be read exactly in JavaScript"
                for n in numbers_in(schema)
                if abs(n) > JS_SAFE
            ]
    assert found == []


async def test_every_tool_has_a_title_and_a_plain_description(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    tools = await listed_tools(make_sandbox, tmp_path / "home")
    titles = {tool.name: tool.title for tool in tools}
    assert all(titles.values()), titles
    assert len(set(titles.values())) == len(titles), "two tools with one title"
    assert titles["list_bugs"] == "List bugs"
    for tool in tools:
        assert tool.description, tool.name
        assert list(description_problems(tool.description, tool.name)) == []
        # One paragraph reads as one line: the docstring's line breaks are gone.
        assert "\n" not in tool.description.replace("\n\n", ""), tool.description


async def test_every_argument_is_described_and_closed_sets_are_enums(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    tools = await listed_tools(make_sandbox, tmp_path / "home")
    undescribed, free = [], []
    for tool in tools:
        for name, schema in tool.input_schema.get("properties", {}).items():
            if not schema.get("description"):
                undescribed.append(f"{tool.name}.{name}")
            for choice in branches(schema):
                item = choice.get("items", choice) if choice.get("type") == "array" else choice
                # A pattern is a closed grammar (custom_field:<key>, a field's key).
                closed = {"enum", "format", "pattern"} & set(item)
                if item.get("type") == "string" and not closed:
                    free.append(name)
    assert undescribed == []
    assert set(free) <= FREE_TEXT, f"free strings that are not free text: {set(free) - FREE_TEXT}"
    period = next(t for t in tools if t.name == "sync_status").input_schema["properties"]["period"]
    assert period["enum"] == ["1h", "24h", "7d", "30d"]
    assert period["default"] == "24h"


def list_arguments(tools: list[Tool]) -> dict[str, JSON]:
    """``tool.argument`` -> schema, for every argument that takes a list."""
    found = {}
    for tool in tools:
        for name, schema in tool.input_schema.get("properties", {}).items():
            if any(choice.get("type") == "array" for choice in branches(schema)):
                found[f"{tool.name}.{name}"] = schema
    return found


async def test_list_arguments_say_they_take_one_value_or_a_list(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    lists = list_arguments(await listed_tools(make_sandbox, tmp_path / "home"))
    assert {"list_tests.status", "list_bugs.test_ids", "sync_data.product_ids"} <= set(lists)
    for name, schema in lists.items():
        choices = branches(schema)
        arrays = [c for c in choices if c.get("type") == "array"]
        singles = [c for c in choices if c.get("type") != "array"]
        assert len(arrays) == 1, name
        assert singles == [arrays[0]["items"]], f"{name} does not take a single value: {schema}"


# (tool, argument, one value, the answer's list, its items' field the value filters)
SINGLES = [
    ("list_tests", "status", "running", "tests", "status"),
    ("list_bugs", "severity", "critical", "bugs", "severity"),
    ("list_bugs", "status", "rejected", "bugs", "status"),
    ("search", "kinds", "bug", "hits", "kind"),
]


@pytest.mark.parametrize(
    ("tool", "argument", "value", "key", "field"), SINGLES, ids=[f"{c[0]}-{c[1]}" for c in SINGLES]
)
async def test_a_single_value_is_taken_as_a_list_of_one(
    mirrored: Mirrored, tool: str, argument: str, value: str, key: str, field: str
) -> None:
    base: JSON = {"query": "the", "limit": 50} if tool == "search" else {"limit": 50}
    async with connect(mirrored.settings) as client:
        single = await call(client, tool, {**base, argument: value})
        listed = await call(client, tool, {**base, argument: [value]})
    assert _without_freshness(single) == _without_freshness(listed)
    assert single[key], f"nothing to compare: no {key} with {argument}={value}"
    assert {item[field] for item in single[key]} == {value}


async def test_single_ids_are_taken_as_a_list_of_one(mirrored: Mirrored) -> None:
    product_id = next(iter(mirrored.truth["products"]))
    async with connect(mirrored.settings) as client:
        test_id = (await call(client, "list_bugs", {"limit": 1}))["bugs"][0]["test_id"]
        for tool in ("list_bugs", "bug_stats"):
            single = await call(client, tool, {"test_ids": test_id})
            listed = await call(client, tool, {"test_ids": [test_id]})
            assert _without_freshness(single) == _without_freshness(listed), tool
        bugs = (await call(client, "list_bugs", {"test_ids": test_id, "limit": 100}))["bugs"]
        synced = await call(client, "sync_data", {"product_ids": product_id})
    assert bugs
    assert {b["test_id"] for b in bugs} == {test_id}
    assert synced["result"]["status"] == "success"


def _without_freshness(answer: JSON) -> JSON:
    return {k: v for k, v in answer.items() if k != "freshness"}
