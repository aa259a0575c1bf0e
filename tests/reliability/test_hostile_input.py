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

import base64
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import example as hypothesis_example
from hypothesis import strategies as st
from mcp import Client
from mcp_types import CallToolResult, Tool

from testio_mirror.sandbox import DatasetSpec
from tests.helpers.expected_answers import parse_time
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
}

# --- hostile values -------------------------------------------------------------------------

SQL = [
    "' OR 1=1 --",
    "'; DROP TABLE bugs; --",
    "; DROP TABLE bugs",
    "1; DELETE FROM tests",
    '" OR ""="',
    "x') OR ('1'='1",
    "' UNION SELECT name FROM sqlite_master --",
    "%",
    "_",
    "\\",
    "'",
]
FTS = [
    '"',
    '""',
    '"unbalanced',
    "NEAR(",
    "NEAR(crash freezes, 2)",
    "NEAR/3",
    "*",
    "crash*",
    "AND OR NOT",
    "NOT",
    "crash AND",
    "OR",
    "col:term",
    "title:crash",
    "{title goal}: crash",
    "(",
    ")",
    "((crash)",
    "^crash",
    "+",
    "-crash",
    "a:b:c",
]
UNICODE = [
    "\u202eevil\u202c",
    "مرحبا بالعالم",
    "שלום עולם",
    "🐛💥🔥",
    "👩\u200d👩\u200d👧\u200d👦",
    "e\u0301",
    "\u200b",
    "\ufeff",
    "a\x00b",
    "\x00",
    "\x00" * 10,
    "\uff23\uff52\uff41\uff53\uff48",
    "\u00df \u0130 \u0131 \u01c5",
    "\t\n\r",
    "\u2028\u2029",
    "Recherche avancée",
]
NUMERIC_TEXT = ["0", "-1", "1e309", "0x10", "9" * 40, "NaN", "Infinity"]
# Text that is also JSON: still text to a string argument (the SDK json-decodes some strings).
JSON_TEXT = ["null", "true", "[]", "{}", '["crash"]', '{"crash": 1}', '"crash"']
DATE_TEXT = [
    "yesterday",
    "2026-13-45",
    "2026-02-30T00:00:00Z",
    "31/12/2026",
    "2026-11-01T25:00:00Z",
]
LONG = ["x" * 10_000, "🐛" * 10_000, "crash " * 2_000, "(" * 10_000, "y" * 100_000]
HOSTILE_TEXT = ["", " ", *SQL, *FTS, *UNICODE, *NUMERIC_TEXT, *JSON_TEXT, *DATE_TEXT, *LONG]
LONE_SURROGATE = "\ud800"  # valid in JSON ("\\ud800"), not a Python-encodable string

HOSTILE_SCALARS: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    -(2**63),
    2**63,
    2**64,
    10**30,
    -(10**30),
    1.5,
    -0.0,
    1e308,
    float("nan"),
    float("inf"),
    LONE_SURROGATE,
]
# Keys a tool does not declare; "ctx" is the name of the tools' injected Context parameter.
EXTRA_KEYS = ["ctx", "context", "self", "kwargs", "__class__", "", "x" * 10_000, "limit ", "LIMIT"]

# Readable text (no surrogates), weighted towards the characters that break things.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list("\"'*():^+-%_\\\x00\u202e🐛 ")),
    ),
    max_size=60,
)


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


def cursor_of(value: object) -> str:
    """A well-formed base64 cursor around any JSON value (not one the mirror handed out)."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


SCALARS = st.one_of(st.sampled_from(HOSTILE_SCALARS), st.sampled_from(HOSTILE_TEXT), TEXT)
HOSTILE: st.SearchStrategy[object] = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.sampled_from(HOSTILE_TEXT),
    TEXT,
    st.integers(),
    st.floats(),
    st.lists(SCALARS, max_size=5),
    # Longer than any list argument may be (built in one go: drawing 600 items is slow).
    st.tuples(st.integers(), st.integers(201, 600)).map(lambda p: [p[0] + i for i in range(p[1])]),
    st.dictionaries(st.text(max_size=10), SCALARS, max_size=4),
    st.just({"$gt": 0}),
    st.integers(1, 50).map(nested),
)

# --- valid values ---------------------------------------------------------------------------

OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
# The ends of the calendar, where a conversion to UTC leaves datetime's range or years lose
# their leading zeros.
EDGE_MOMENTS = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
    datetime(1, 1, 1, 3, tzinfo=timezone(timedelta(hours=23, minutes=59))),
    datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
    datetime(9999, 12, 31, 12, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
]
MOMENTS: st.SearchStrategy[datetime] = st.one_of(
    st.sampled_from(EDGE_MOMENTS),
    st.datetimes(timezones=OFFSETS),
    st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1), timezones=OFFSETS),
)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


DATE_TIMES: st.SearchStrategy[object] = st.one_of(
    MOMENTS.map(iso),
    st.sampled_from(["2026-11-01", "2026-11-01T00:00:00", "2026-11-01T00:00:00.123456+05:30"]),
)


@dataclass
class Known:
    """Real values from the mirror, so valid examples also reach rows that exist."""

    by_argument: dict[str, list[object]] = field(default_factory=dict)

    def values(self, argument: str) -> list[object]:
        singular = argument.removesuffix("s")
        return self.by_argument.get(argument) or self.by_argument.get(singular) or []


Expect = Literal["allowed", "refused", "either"]


@dataclass(frozen=True)
class Example:
    """Arguments, and what the server must do with them: ``allowed`` by the tool's schema (so
    never refused as invalid arguments), ``refused`` by it (so an error), or ``either``."""

    args: JSON
    expect: Expect

    def __repr__(self) -> str:
        return f"Example({shown(self.args)}, {self.expect!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints a failing example so: short, not 100k chars


class UnknownSchemaError(AssertionError):
    """A schema construct these strategies do not cover: extend them, do not skip the tool."""


def valid_value(schema: JSON, argument: str, known: Known) -> st.SearchStrategy[object]:
    """Values ``schema`` allows (so the server must not refuse them as invalid arguments)."""
    if "anyOf" in schema:
        return st.one_of([valid_value(s, argument, known) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    real = known.values(argument)
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        edges = [v for v in (low, high) if v is not None]
        choices: list[st.SearchStrategy[object]] = [st.integers(low, high)]
        if edges:
            choices.append(st.sampled_from(edges))
        if real:
            choices.append(st.sampled_from(real))
        return st.one_of(choices)
    if kind == "string":
        if schema.get("format") == "date-time":
            return DATE_TIMES
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        fits = [t for t in HOSTILE_TEXT if low <= len(t) and (high is None or len(t) <= high)]
        words = st.lists(st.sampled_from([*FTS, *SQL, "crash", "checkout", "freezes"]), max_size=6)
        choices = [
            st.text(alphabet=st.characters(codec="utf-8"), min_size=low, max_size=80),
            st.sampled_from(fits),
            words.map(" ".join).filter(lambda t: low <= len(t) <= (high or len(t))),
        ]
        if real:
            choices.append(st.sampled_from(real))
        if high is None:  # only unbounded strings take the very long ones
            choices.append(st.sampled_from(LONG))
        return st.one_of(choices)
    if kind == "array":
        items = valid_value(schema.get("items", {}), argument, known)
        most = schema.get("maxItems")
        lists = [st.lists(items, max_size=min(most or 8, 8))]
        if most is not None:
            lists.append(items.map(lambda v: [v] * most))  # exactly at the limit
        return st.one_of(lists)
    raise UnknownSchemaError(f"no strategy for {argument}: {schema}")


@st.composite
def _with_extras(draw: st.DrawFn, base: st.SearchStrategy[JSON], declared: set[str]) -> JSON:
    args = dict(draw(base))
    keys = st.one_of(st.sampled_from(EXTRA_KEYS), st.text(max_size=20))
    for key in draw(st.lists(keys.filter(lambda k: k not in declared), min_size=1, max_size=3)):
        args[key] = draw(HOSTILE)
    return args


@st.composite
def _one_bad(draw: st.DrawFn, base: st.SearchStrategy[JSON], declared: list[str]) -> JSON:
    args = dict(draw(base))
    if declared:
        args[draw(st.sampled_from(declared))] = draw(HOSTILE)
    return args


def arguments(schema: JSON, known: Known) -> st.SearchStrategy[Example]:
    """Arguments for a tool's input schema, each with what the server must do with them."""
    properties: dict[str, JSON] = schema.get("properties", {})
    required = set(schema.get("required", []))
    valid = {name: valid_value(s, name, known) for name, s in properties.items()}
    any_value = {name: st.one_of(v, HOSTILE) for name, v in valid.items()}
    valid_args = st.fixed_dictionaries(
        {n: v for n, v in valid.items() if n in required},
        optional={n: v for n, v in valid.items() if n not in required},
    )
    chaos = st.fixed_dictionaries(
        {n: v for n, v in any_value.items() if n in required},
        optional={n: v for n, v in any_value.items() if n not in required},
    )
    # Extra keys are allowed by the schema (no additionalProperties: false) and must be ignored.
    allowed = st.one_of(valid_args, _with_extras(valid_args, set(properties)))
    hostile = [_one_bad(valid_args, sorted(properties)), chaos]
    if required:
        hostile.append(st.just({}))  # a required argument missing
    return st.one_of(
        allowed.map(lambda a: Example(a, "allowed")),
        st.one_of(hostile).map(lambda a: Example(a, "either")),
    )


def edges(schema: JSON, argument: str) -> list[tuple[object, Expect]]:
    """The values at and just beyond what ``schema`` allows, each with its expected fate."""
    if "anyOf" in schema:
        return [e for s in schema["anyOf"] for e in edges(s, argument)]
    if "enum" in schema:
        return [(v, "allowed") for v in schema["enum"]] + [("NOT_A_CHOICE", "refused")]
    kind = schema.get("type")
    if kind == "null":
        return [(None, "allowed")]
    if kind == "boolean":
        return [(True, "allowed"), (False, "allowed"), ([True], "refused")]
    if kind == "integer":
        found: list[tuple[object, Expect]] = [
            (2**64, "refused"),
            (10**30, "refused"),
            (-(10**30), "refused"),
            (1.5, "refused"),
        ]
        if "minimum" in schema:
            found += [(schema["minimum"], "allowed"), (schema["minimum"] - 1, "refused")]
        if "maximum" in schema:
            found += [(schema["maximum"], "allowed"), (schema["maximum"] + 1, "refused")]
        return found
    if kind == "string":
        if schema.get("format") == "date-time":
            dates: list[tuple[object, Expect]] = [(iso(m), "allowed") for m in EDGE_MOMENTS]
            return dates + [(t, "refused") for t in DATE_TEXT]
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        found = [(LONE_SURROGATE, "refused"), ("\x00", "allowed" if low <= 1 else "refused")]
        found.append(("", "allowed" if low == 0 else "refused"))
        found += [(t, "allowed") for t in JSON_TEXT if low <= len(t)]
        if high is None:
            found.append((LONG[-1], "allowed"))
        else:
            found += [("\u00e9" * high, "allowed"), ("x" * (high + 1), "refused")]
        return found
    if kind == "array":
        items = edges(schema.get("items", {}), argument)
        found = [([], "allowed"), ({"0": 1}, "refused")]
        found += [([value], fate) for value, fate in items]
        if "maxItems" in schema:
            most = schema["maxItems"]
            good = next(value for value, fate in items if fate == "allowed")
            found += [([good] * most, "allowed"), ([good] * (most + 1), "refused")]
        return found
    raise UnknownSchemaError(f"no edges for {argument}: {schema}")


def typical(schema: JSON, argument: str, known: Known) -> object:
    """One ordinary valid value, to fill the other arguments around an edge."""
    if "anyOf" in schema:
        branches = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return typical(branches[0], argument, known)
    real = known.values(argument)
    if schema.get("type") == "array":
        return [typical(schema.get("items", {}), argument, known)]
    if schema.get("format") == "date-time":
        return "2026-11-01T00:00:00Z"
    if real:
        return real[0]
    for value, fate in edges(schema, argument):
        if fate == "allowed" and value is not None:
            return value
    raise UnknownSchemaError(f"no typical value for {argument}: {schema}")


def boundary_examples(schema: JSON, known: Known) -> list[Example]:
    """Every argument at each of its edges, with the required ones ordinary and every boolean
    switch on around it (switches open the longer paths: bugs, forced refetch); an unknown
    argument; nothing at all."""
    properties: dict[str, JSON] = schema.get("properties", {})
    required = {n: typical(properties[n], n, known) for n in schema.get("required", [])}
    base = {**required, **{n: True for n, p in properties.items() if p.get("type") == "boolean"}}
    found = [Example({**base, "ctx": "not a context"}, "allowed")]
    found.append(Example({}, "refused" if required else "allowed"))
    for name, prop in properties.items():
        found += [Example({**base, name: value}, fate) for value, fate in edges(prop, name)]
    return found


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


def shown(args: JSON) -> str:
    text = repr(args)
    return text if len(text) < 300 else text[:300] + "..."


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
        known = portal.call(_harvest, client)
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
        assert read_only == (TOOLS[name] != "sync"), f"{name}: read-only hint disagrees"
        assert tool.output_schema, f"{name} publishes no output schema"
        # Every construct of the input schema has a strategy (raises UnknownSchemaError if not).
        assert isinstance(arguments(tool.input_schema, served.known), st.SearchStrategy)
        assert boundary_examples(tool.input_schema, served.known)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_hostile_arguments_get_a_result_or_a_clean_error(
    served: Served, tool: str, scale: Scale, ledger: Ledger
) -> None:
    assert tool in served.tools, f"the server does not list {tool}"
    strategy = arguments(served.tools[tool].input_schema, served.known)
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
    for edge in boundary_examples(served.tools[tool].input_schema, served.known):
        check = hypothesis_example(example=edge)(check)

    try:
        check()
    finally:
        ledger.record(AREA, trials=tally["calls"])
    if served.tools[tool].input_schema.get("properties"):
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
