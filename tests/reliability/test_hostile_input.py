"""Hostile input: property-based calls of every tool the server lists, with arguments built from
the tool's own input schema (valid values, wrong types, huge and negative numbers, empty and very
long strings, unicode, SQL and FTS5 syntax, unknown extra arguments).

Every call answers with a result that matches the tool's output schema or with an error an agent
can read: no exception out of the client, no traceback, no internal exception name, no crash
caught by the safety net in ``server/errors.py`` ("failed unexpectedly", logged at ERROR). The
server answers the next call, the query tools leave the mirror as it was, and SQLite's integrity
check passes afterwards.

One sandbox and one synced mirror serve the module; one in-memory MCP client runs on an anyio
portal thread, so hypothesis drives it from ordinary (sync) test functions.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import example as hypothesis_example
from hypothesis import strategies as st
from mcp import Client
from mcp_types import CallToolResult, Tool

from testio_mirror.sandbox import DatasetSpec, SandboxServer
from tests.helpers.expected_answers import parse_time
from tests.helpers.hostile_arguments import (
    EDGE_MOMENTS,
    FTS,
    JSON_TEXT,
    MOMENTS,
    NUMERIC_TEXT,
    SQL,
    TEXT,
    UNICODE,
    Example,
    Expect,
    Known,
    arguments,
    boundary_examples,
    cursor_of,
    inline_refs,
    iso,
    shown,
)
from tests.helpers.mcp_session import (
    JSON,
    Mirrored,
    connect,
    pages,
    synced_sandbox,
    text_of,
    wait_idle,
)
from tests.helpers.reliability_ledger import Ledger, Scale

# Small on purpose: hostility is in the arguments, not in the size of the data. One page of 100
# holds every test and every bug, and a full sync takes a fraction of a second.
DATASET = DatasetSpec(seed=7, products=2, section_products=1, tests_per_product=20, bugs_per_test=2)
COUNTED = ("products", "features", "tests", "bugs")
# A liveness bound that turns a hung call into a failure with a message; not a speed claim.
CALL_LIMIT_SECONDS = 60.0
AREA = "hostile input"

# What each listed tool is; a tool the server lists but this table lacks fails the suite, so a
# new tool cannot go untested. "sync" tools write the mirror (from an unchanged account, so the
# row counts still stay the same); the others must not write at all.
TOOLS: dict[str, str] = {
    "sync_data": "sync",
    "sync_status": "status",
    "list_products": "query",
    "list_features": "query",
    "list_tests": "query",
    "get_test": "query",
    "list_bugs": "query",
    "get_bug": "query",
    "search": "query",
    "bug_stats": "query",
    "list_testers": "query",
    "get_product": "query",
    "get_feature": "query",
    "query_metrics": "query",
    "get_test_case_results": "query",
    "quality_report": "query",
    "list_changes": "query",
    "triage_bugs": "triage",
    "resolve_conflict": "triage",
    "cancel_change": "triage",
}
WRITES = {"sync", "triage"}  # the tools whose annotations say they are not read-only
SETTLING = {"cancel_change", "resolve_conflict"}  # each settles a conflict once, then refuses

# --- the served mirror ----------------------------------------------------------------------


class CrashLog(logging.Handler):
    """ERROR records of the mirror (not the sandbox): what the safety net logs for a crash."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("testio_mirror.sandbox"):
            self.records.append(record)

    def drain(self) -> list[str]:
        found = [
            f"{r.name}: {r.getMessage()} ({r.exc_info and r.exc_info[1]!r})" for r in self.records
        ]
        self.records.clear()
        return found


@dataclass
class Served:
    """The synced mirror, a client connected to it on a portal thread, and a read-only view of
    its database."""

    mirrored: Mirrored
    portal: BlockingPortal
    client: Client
    tools: dict[str, Tool]
    known: Known
    db: sqlite3.Connection
    crashes: CrashLog
    baseline: dict[str, int]

    @functools.cached_property
    def schemas(self) -> dict[str, JSON]:
        """Each tool's input schema with its ``$ref``s in place, as the strategies read it."""
        return {name: inline_refs(tool.input_schema) for name, tool in self.tools.items()}

    @property
    def token(self) -> str:
        return self.mirrored.sandbox.token

    def call(self, tool: str, args: JSON) -> CallToolResult:
        """The tool's result; an exception out of the client fails the test."""

        async def bounded() -> CallToolResult:
            with anyio.fail_after(CALL_LIMIT_SECONDS):
                return await self.client.call_tool(tool, args)

        try:
            return self.portal.call(bounded)
        except Exception as exc:
            raise AssertionError(
                f"{tool}({shown(args)}) raised instead of answering: {exc!r}"
            ) from exc

    def run(self, job: Callable[[Client], Any]) -> Any:
        return self.portal.call(job, self.client)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for table in COUNTED:  # the module's own table names, nothing from the examples
            (found[table],) = self.db.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        return found


async def _harvest(client: Client) -> Known:
    products = (await client.call_tool("list_products", {})).structured_content or {}
    product_ids = [p["id"] for p in products["products"]]
    tests = await client.call_tool("list_tests", {"limit": 1})
    bugs = await client.call_tool("list_bugs", {"limit": 1})
    test_ids = [t["id"] for t in await pages(client, "list_tests", {"limit": 100}, "tests")]
    bug_rows = await pages(client, "list_bugs", {"limit": 100}, "bugs")
    cursors = [
        (tests.structured_content or {})["next_cursor"],
        (bugs.structured_content or {})["next_cursor"],
        cursor_of(["2026-01-01T00:00:00.000000Z", 2**80]),
        cursor_of([None, True]),
        cursor_of({"x": 1}),
        cursor_of(["0001-01-01T00:00:00.000000Z", -1]),
        "garbage!!",
    ]
    return Known(
        {
            "product_id": [*product_ids, 999],
            "test_id": [*test_ids[:10], 999999],
            "bug_id": [*(b["id"] for b in bug_rows[:10]), 999999],
            "feature_id": sorted({b["feature_id"] for b in bug_rows if b.get("feature_id")}),
            "cursor": [c for c in cursors if c],
            "period": ["1h", "24h", "7d", "30d"],
            "query": ["crash", "checkout freezes", "Recherche avancée", "Ümlaut"],
            "text": ["crash", "crashes", "freezes"],
        }
    )


async def _seed_conflicts(client: Client, sandbox: SandboxServer) -> list[int]:
    """Two triage changes parked as conflicts (a person marked the bugs known first), stored
    through the token flow of TESTIO_MIRROR_WRITES=confirm: what the settling tools act on."""
    bugs = sorted(
        b["id"]
        for b in sandbox.world.snapshot()["bugs"].values()
        if b["status"] == "forwarded" and not b["known"]
    )[:2]
    for bug_id in bugs:
        sandbox.triage_as_person(bug_id, "mark_known")
    asked = {"changes": [{"bug_id": bug_id, "action": "accept"} for bug_id in bugs]}
    needs = (await client.call_tool("triage_bugs", asked)).structured_content or {}
    done = await client.call_tool("triage_bugs", {**asked, "confirm": needs["confirm_token"]})
    changes = (done.structured_content or {})["changes"]
    assert [c["state"] for c in changes] == ["conflict", "conflict"], changes
    return [c["change_id"] for c in changes]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("hostile")
    crashes = CrashLog()
    mirror_logger = logging.getLogger("testio_mirror")
    with contextlib.ExitStack() as stack:
        mirrored = stack.enter_context(synced_sandbox(DATASET, home, include_bugs=True))
        portal = stack.enter_context(start_blocking_portal())
        client = stack.enter_context(portal.wrap_async_context_manager(connect(mirrored.settings)))
        listed = portal.call(client.list_tools)
        conflicts = portal.call(_seed_conflicts, client, mirrored.sandbox)
        known = portal.call(_harvest, client)
        known.by_argument["change_id"] = [*conflicts, 999999]
        known.by_argument["reason"] = [r["key"] for r in mirrored.sandbox.world.reject_reasons()]
        uri = f"file:{mirrored.settings.database_path}?mode=ro"
        db = stack.enter_context(contextlib.closing(sqlite3.connect(uri, uri=True)))
        mirror_logger.addHandler(crashes)
        stack.callback(mirror_logger.removeHandler, crashes)
        served = Served(
            mirrored=mirrored,
            portal=portal,
            client=client,
            tools={t.name: t for t in listed.tools},
            known=known,
            db=db,
            crashes=crashes,
            baseline={},
        )
        served.baseline = served.counts()
        yield served


# --- what an answer must look like ----------------------------------------------------------

# Names that only leak out of a crash: exception classes, internals, source locations.
INTERNALS = (
    "Traceback",
    'File "',
    "sqlite3",
    "aiosqlite",
    "OperationalError",
    "IntegrityError",
    "DatabaseError",
    "ProgrammingError",
    "ValidationError",
    "pydantic_core",
    "OverflowError",
    "RecursionError",
    "TypeError",
    "KeyError",
    "AttributeError",
    "AssertionError",
    "<class '",
    " object at 0x",
    "site-packages",
    "testio_mirror/",
    "unexpectedly",  # the safety net's answer to a crash: clean to read, but still a crash
)


def leaves(value: object) -> int:
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values()) + len(value)
    if isinstance(value, list):
        return sum(leaves(v) for v in value) + 1
    return 1


def assert_clean_error(served: Served, tool: str, args: JSON, text: str, expect: Expect) -> None:
    where = f"{tool}({shown(args)})"
    assert text.strip(), f"{where}: an error without a message"
    for marker in INTERNALS:
        assert marker not in text, f"{where}: {marker!r} in the error: {text[:1500]}"
    assert served.token not in text, f"{where}: the token leaked"
    # A few lines per bad value (an enum's lists its choices), never an echo of a huge input.
    assert len(text) <= 2000 + 400 * leaves(args), f"{where}: a {len(text)}-char error"
    if expect == "allowed":
        # Refused arguments read "invalid arguments: ..." (server/errors.refused_arguments).
        for refusal in ("invalid arguments: ", "validation error"):
            assert refusal not in text, (
                f"{where}: arguments the tool's schema allows were refused: {text[:1500]}"
            )


def assert_answer_fits(served: Served, tool: str, args: JSON, result: CallToolResult) -> None:
    where = f"{tool}({shown(args)})"
    answer = result.structured_content
    assert answer is not None, f"{where}: a result without structured content"
    schema = served.tools[tool].output_schema or {}
    keys = set(answer)
    assert set(schema.get("required", [])) <= keys, f"{where}: missing keys in {sorted(keys)}"
    assert keys <= set(schema.get("properties", {})), f"{where}: undeclared keys {sorted(keys)}"
    served.portal.call(served.client.session.validate_tool_result, tool, result)
    assert served.token not in text_of(result), f"{where}: the token leaked"


def assert_still_serving(served: Served, tool: str, args: JSON) -> None:
    where = f"after {tool}({shown(args)})"
    crashes = served.crashes.drain()
    assert not crashes, f"{where}: the server logged a crash: {crashes}"
    if TOOLS.get(tool) == "sync" and args.get("wait", True) is not True:
        served.run(wait_idle)  # a run that did not wait must end before the mirror is compared
    follow = served.call("list_products", {})
    assert not follow.is_error, f"{where}: list_products failed: {text_of(follow)}"
    products = (follow.structured_content or {}).get("products", [])
    assert len(products) == DATASET.products, where
    # Query tools never write; a sync of an account that did not change leaves the same rows.
    assert served.counts() == served.baseline, f"{where}: the mirror's rows changed"


def assert_intact(served: Served) -> None:
    assert served.db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert served.db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert served.counts() == served.baseline
    truth = served.mirrored.truth
    assert served.baseline["tests"] == len(truth["tests"])
    assert served.baseline["bugs"] == len(truth["bugs"])


def hypothesis_settings(scale: Scale) -> settings:
    return settings(
        max_examples=scale.hypothesis_examples,
        deadline=None,
        derandomize=True,  # the same examples on every run, so CI is reproducible
        database=None,  # and no .hypothesis/ directory in the repository
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# --- the tests ------------------------------------------------------------------------------


def test_every_listed_tool_has_a_strategy(served: Served) -> None:
    assert set(served.tools) == set(TOOLS), "a tool without hostile-input coverage (see TOOLS)"
    for name, tool in served.tools.items():
        read_only = bool(tool.annotations and tool.annotations.read_only_hint)
        assert read_only == (TOOLS[name] not in WRITES), f"{name}: read-only hint disagrees"
        assert tool.output_schema, f"{name} publishes no output schema"
        # Every construct of the input schema has a strategy (raises UnknownSchemaError if not).
        schema, known = served.schemas[name], served.known.for_tool(name)
        assert isinstance(arguments(schema, known), st.SearchStrategy)
        assert boundary_examples(schema, known)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_hostile_arguments_get_a_result_or_a_clean_error(
    served: Served, tool: str, scale: Scale, ledger: Ledger
) -> None:
    assert tool in served.tools, f"the server does not list {tool}"
    schema, known = served.schemas[tool], served.known.for_tool(tool)
    if tool in SETTLING:
        # A conflict of this tool's own, stored just now: the random ids of the tools before
        # (small integers are drawn often) may have settled the module's seeded ones.
        fresh = served.portal.call(_seed_conflicts, served.client, served.mirrored.sandbox)
        known.by_argument["change_id"] = [fresh[0], 999999]
    strategy = arguments(schema, known)
    tally = {"calls": 0, "errors": 0}

    @hypothesis_settings(scale)
    @given(example=strategy)
    def check(example: Example) -> None:
        args = example.args
        served.crashes.drain()  # each example is judged by its own log
        tally["calls"] += 1
        result = served.call(tool, args)
        if result.is_error:
            tally["errors"] += 1
            assert_clean_error(served, tool, args, text_of(result), example.expect)
        else:
            assert example.expect != "refused", (
                f"{tool}({shown(args)}) answered arguments its schema forbids"
            )
            assert_answer_fits(served, tool, args, result)
        assert_still_serving(served, tool, args)

    # The edges of every argument run on every run, whatever the random examples find.
    for edge in boundary_examples(schema, known):
        check = hypothesis_example(example=edge)(check)

    try:
        check()
    finally:
        ledger.record(AREA, trials=tally["calls"])
    if schema.get("properties"):
        # Both paths were exercised: hostile arguments refused, valid ones answered.
        assert 0 < tally["errors"] < tally["calls"], tally
    else:
        # Nothing to get wrong: unknown arguments are ignored, every call answers.
        assert tally["errors"] == 0 < tally["calls"], tally
    assert_intact(served)


def _stamp(item: JSON, column: str) -> datetime | None:
    value = item.get(column)
    return parse_time(value) if value else None


@pytest.mark.parametrize(
    ("tool", "key", "column"),
    [
        ("list_tests", "tests", "end_at"),
        ("list_bugs", "bugs", "reported_at"),
    ],
)
def test_dates_anywhere_in_the_calendar_filter_like_any_other(
    served: Served, tool: str, key: str, column: str, scale: Scale, ledger: Ledger
) -> None:
    """Any date-time the schema allows (year 1 to 9999, any offset) filters by the instant it
    names: the answer is what filtering the unfiltered list by hand gives."""
    everything = served.run(lambda c: pages(c, tool, {"limit": 100}, key))
    stamped = [(item["id"], _stamp(item, column)) for item in everything]
    tally = {"calls": 0, "mismatches": 0}

    @hypothesis_settings(scale)
    @given(moment=MOMENTS, bound=st.sampled_from(["since", "until"]))
    def check(moment: datetime, bound: str) -> None:
        served.crashes.drain()
        tally["calls"] += 1
        args = {bound: iso(moment), "limit": 100}
        result = served.call(tool, args)
        tally["mismatches"] += result.is_error  # counted again below when answered wrong
        assert not result.is_error, f"{tool}({args}): {text_of(result)}"
        got = {item["id"] for item in (result.structured_content or {})[key]}
        if bound == "since":
            expected = {i for i, at in stamped if at is not None and at >= moment}
        else:
            expected = {i for i, at in stamped if at is not None and at < moment}
        tally["mismatches"] += got != expected
        assert got == expected, f"{tool}({args}): {len(got)} ids, expected {len(expected)}"
        assert not served.crashes.drain()

    for moment in EDGE_MOMENTS:  # the ends of the calendar on every run
        for bound in ("since", "until"):
            check = hypothesis_example(moment=moment, bound=bound)(check)
    try:
        check()
    finally:
        ledger.record(AREA, trials=tally["calls"], mismatches=tally["mismatches"])
    assert len(stamped) == len(everything) > 0
    assert_intact(served)


WORDLESS_SUFFIX = " ."  # adds no word: a text filter must answer the same with or without it
JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
).map(json.dumps)


@pytest.mark.parametrize(
    ("tool", "argument", "key"), [("list_bugs", "text", "bugs"), ("search", "query", "hits")]
)
def test_text_is_read_as_words_whatever_it_looks_like(
    served: Served, tool: str, argument: str, key: str, scale: Scale, ledger: Ledger
) -> None:
    """Text that looks like JSON, SQL or FTS syntax is searched for its words: adding a suffix
    without words (which no parser reads as JSON, SQL or FTS) changes nothing."""
    tally = {"calls": 0, "mismatches": 0}
    texts = st.one_of(
        st.sampled_from([*JSON_TEXT, *SQL, *FTS, *UNICODE, *NUMERIC_TEXT]), JSON_LIKE, TEXT
    ).filter(lambda t: 0 < len(t) <= 400)

    @hypothesis_settings(scale)
    @given(text=texts)
    def check(text: str) -> None:
        served.crashes.drain()
        tally["calls"] += 1
        answers = []
        for variant in (text, text + WORDLESS_SUFFIX):
            args = {argument: variant, "limit": 50}
            result = served.call(tool, args)
            assert not result.is_error, f"{tool}({shown(args)}): {text_of(result)}"
            answers.append([hit["id"] for hit in (result.structured_content or {})[key]])
        tally["mismatches"] += answers[0] != answers[1]
        assert answers[0] == answers[1], (
            f"{tool}({argument}={text!r}) found {len(answers[0])}, "
            f"with {WORDLESS_SUFFIX!r} added {len(answers[1])}"
        )
        assert not served.crashes.drain()

    for text in JSON_TEXT:  # on every run, whatever the random texts are
        check = hypothesis_example(text=text)(check)
    try:
        check()
    finally:
        ledger.record(AREA, trials=tally["calls"], mismatches=tally["mismatches"])
    assert_intact(served)
