"""Arguments for a tool built from its own input schema: valid values (each argument's real
values from the mirror among them), values at and just beyond each edge, and hostile ones (wrong
types, huge and negative numbers, empty and very long strings, unicode, SQL and FTS5 syntax,
unknown extra keys), each example with what the server must do with it. Used by
``tests/reliability/test_hostile_input.py``; ``inline_refs`` first writes a schema's ``$ref``s
in place, so the strategies see objects (a triage change) as any other argument."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from hypothesis import strategies as st

JSON = dict[str, Any]


def shown(args: JSON) -> str:
    text = repr(args)
    return text if len(text) < 300 else text[:300] + "..."


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
# Texts near what a pattern argument takes (custom report fields: a key, custom_field:<key>,
# field_<kind>:<key>): each allowed or refused as the pattern says.
PATTERN_TEXT = [
    "customer_impact", "affected_users", "planet_size", "a" * 64, "a" * 65, "Customer Impact",
    "custom_field:customer_impact", "custom_field:found_in_release", "custom_field:planet",
    "custom_field:", "custom_field:Bad Key", "custom_field:" + "k" * 64, "custom_field:" + "k" * 65,
    "custom_field:x'); DROP TABLE bugs; --", "field_mean:affected_users", "field_min:build_number",
    "field_count:customer_impact", "field_max:planet", "field_median:affected_users",
    "field_sum:", "field_mean:affected_users\n", "bug_count",
]  # fmt: skip
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
    # Per tool, values that replace the shared ones (a change a tool may settle once).
    by_tool: dict[str, dict[str, list[object]]] = field(default_factory=dict)

    def for_tool(self, tool: str) -> Known:
        return Known({**self.by_argument, **self.by_tool.get(tool, {})})

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
    if kind == "string" and "pattern" in schema:
        allowed = [v for v, fate in pattern_edges(schema) if fate == "allowed"]
        generated = st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda t: len(t) <= schema.get("maxLength", len(t))
        )
        return st.one_of([st.sampled_from(allowed), generated] if allowed else [generated])
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
    if kind == "object":
        properties: dict[str, JSON] = schema.get("properties", {})
        required = set(schema.get("required", []))
        values = {n: valid_value(p, n, known) for n, p in properties.items()}
        return st.fixed_dictionaries(
            {n: v for n, v in values.items() if n in required},
            optional={n: v for n, v in values.items() if n not in required},
        )
    if kind == "array":
        items = valid_value(schema.get("items", {}), argument, known)
        most = schema.get("maxItems")
        fewest = schema.get("minItems", 0)
        lists = [st.lists(items, min_size=fewest, max_size=max(fewest, min(most or 8, 8)))]
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


def pattern_edges(schema: JSON) -> list[tuple[str, Expect]]:
    """Texts near what a pattern string takes, each with its fate by the pattern itself."""
    high = schema.get("maxLength")
    texts = [*PATTERN_TEXT, "", "\x00", LONE_SURROGATE, *JSON_TEXT]
    return [
        (
            t,
            "allowed"
            if re.fullmatch(schema["pattern"], t) and (high is None or len(t) <= high)
            else "refused",
        )
        for t in texts
    ]


def edges(schema: JSON, argument: str) -> list[tuple[object, Expect]]:
    """The values at and just beyond what ``schema`` allows, each with its expected fate."""
    if "anyOf" in schema:
        # A value one branch refuses may be another's (an enum beside a pattern): allowed by any.
        found_any = [e for s in schema["anyOf"] for e in edges(s, argument)]
        allowed = {json.dumps(v) for v, fate in found_any if fate == "allowed"}
        fates: dict[str, tuple[object, Expect]] = {}
        for value, _ in found_any:
            fates[json.dumps(value)] = (
                value,
                "allowed" if json.dumps(value) in allowed else "refused",
            )
        return list(fates.values())
    if "enum" in schema:
        return [(v, "allowed") for v in schema["enum"]] + [("NOT_A_CHOICE", "refused")]
    kind = schema.get("type")
    if kind == "null":
        return [(None, "allowed")]
    if kind == "string" and "pattern" in schema:
        return pattern_edges(schema)
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
    if kind == "object":
        properties = schema.get("properties", {})
        around = {n: typical(properties[n], n, Known()) for n in schema.get("required", [])}
        found: list[tuple[object, Expect]] = [("not an object", "refused")]
        found.append(({}, "refused" if around else "allowed"))
        for name, prop in properties.items():
            found += [({**around, name: value}, fate) for value, fate in edges(prop, name)]
        return found
    if kind == "array":
        items = edges(schema.get("items", {}), argument)
        fewest = schema.get("minItems", 0)
        found = [([], "allowed" if fewest == 0 else "refused"), ({"0": 1}, "refused")]
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
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        return {n: typical(properties[n], n, known) for n in schema.get("required", [])}
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


def inline_refs(schema: JSON) -> JSON:
    """``schema`` with every ``$ref`` to its ``$defs`` written in place (no ``$defs`` left)."""
    definitions: dict[str, JSON] = schema.get("$defs", {})

    def place(value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return place(
                    {
                        **definitions[ref.removeprefix("#/$defs/")],
                        **{k: v for k, v in value.items() if k != "$ref"},
                    }
                )
            return {k: place(v) for k, v in value.items() if k != "$defs"}
        if isinstance(value, list):
            return [place(v) for v in value]
        return value

    placed: JSON = place(schema)
    return placed
