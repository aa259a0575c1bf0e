"""Turning what goes wrong inside a tool into a message an agent can act on.

Known failures become ``ToolError`` with a next step (which tool lists valid ids, what to retry);
anything else is logged with its traceback and answered with a short, generic message, so no
internal detail (and never the token) reaches the client. Arguments the tool's schema refuses
never reach the tool: ``ArgumentExplainingServer`` answers them with what was given and what is
accepted, read from the schema (``refused_arguments``), instead of pydantic's report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from testio_mirror.errors import CursorError, MirrorError, OfflineError, StoreError
from testio_mirror.sync.lock import SyncLockBusyError
from testio_mirror.upstream.errors import AuthError, NotFoundError, UpstreamError

logger = logging.getLogger("testio_mirror.server")


@contextlib.contextmanager
def tool_errors(tool: str, *, not_found_hint: str = "") -> Iterator[None]:
    """Raise ``ToolError`` with a next step for every failure inside the block."""
    try:
        yield
    except ToolError:
        raise
    except NotFoundError as exc:
        raise ToolError(f"{_short(exc)}. {not_found_hint}".strip()) from None
    except CursorError as exc:
        raise ToolError(f"{exc}; or leave cursor out to start from the first page") from None
    except OfflineError as exc:
        raise ToolError(f"{exc}: set TESTIO_CUSTOMER_API_TOKEN and restart the server") from None
    except AuthError as exc:
        raise ToolError(f"{exc}; the mirror can still be queried") from None
    except SyncLockBusyError as exc:
        raise ToolError(f"{exc}; sync_status shows its progress") from None
    except UpstreamError as exc:
        raise ToolError(
            f"TestIO could not answer and the mirror has no copy: {exc}. Try again later, or "
            "call sync_status to see the upstream health"
        ) from None
    except StoreError as exc:
        # The message names the file (the user's machine); the agent reads what to do.
        logger.warning("tool %s: %s", tool, exc)
        raise ToolError(exc.for_agent) from None
    except (MirrorError, ValueError) as exc:
        raise ToolError(str(exc)) from None
    except Exception:
        logger.exception("tool %s failed", tool)
        raise ToolError(
            f"{tool} failed unexpectedly; the server logged the details. Other tools still work."
        ) from None


def _short(exc: UpstreamError) -> str:
    # "GET exploratory_tests/9: not found (HTTP 404)" -> what the agent asked for, plainly.
    return str(exc).split(":", 1)[0].replace("GET ", "").rstrip() + " was not found in TestIO"


LifespanT = TypeVar("LifespanT")
JSON = Mapping[str, Any]
_SHOWN = 80  # characters of a refused value (or of a pattern) an error repeats
_VALUES_SHOWN = 20  # values of an enum an error lists; the rest are counted
_SUBJECTS_SHOWN = 5  # refused items named before one expectation; the rest are counted


class ArgumentExplainingServer(MCPServer[LifespanT], Generic[LifespanT]):
    """An ``MCPServer`` whose answer to arguments its tools' schemas refuse says, per argument,
    what was given and what is accepted. The SDK reports them as pydantic prints a
    ``ValidationError`` (error codes, the model's name, a link per error), which an agent
    reads poorly.

    Example::

        server = ArgumentExplainingServer("testio-mirror", lifespan=lifespan)
    """

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        context: Context[LifespanT, Any] | None = None,
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            # The SDK raises argument validation failures as ToolError from the ValidationError;
            # a failure inside a tool arrives from a ToolError (server.errors.tool_errors).
            refused = exc.__cause__
            if not isinstance(refused, ValidationError):
                raise
            schemas = {tool.name: tool.input_schema for tool in await self.list_tools()}
            message = refused_arguments(refused, schemas.get(name, {}), arguments)
            raise ToolError(f"Error executing tool {name}: {message}") from refused


def refused_arguments(error: ValidationError, schema: JSON, arguments: JSON) -> str:
    """One line naming every refused argument, what it was and what ``schema`` (the tool's
    input schema) accepts: ``invalid arguments: limit was 0, expected an integer from 1 to
    100``; inside an object, the path to the field (``changes[0].action was ...``).
    ``arguments`` are the ones given."""
    properties: JSON = _inline_refs(schema, schema.get("$defs", {})).get("properties", {})
    # Items refused for the same reason (metrics[0], metrics[1]) share one expectation: said
    # once, it keeps a long list of bad items from repeating a long enum.
    subjects: dict[str, list[str]] = {}
    for details in error.errors(include_url=False):
        subject, expectation = _refusal(details, properties, arguments)
        alike = subjects.setdefault(expectation, [])
        if subject not in alike:
            alike.append(subject)
    parts = [_subjects(alike) + expectation for expectation, alike in subjects.items()]
    return "invalid arguments: " + "; ".join(parts)


def _subjects(subjects: list[str]) -> str:
    shown = ", ".join(subjects[:_SUBJECTS_SHOWN])
    more = len(subjects) - _SUBJECTS_SHOWN
    return f"{shown} and {more} more like them" if more > 0 else shown


def _inline_refs(value: Any, definitions: JSON) -> Any:
    """``value`` with each ``{"$ref": "#/$defs/X"}`` replaced by the definition of X."""
    if isinstance(value, Mapping):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.removeprefix("#/$defs/") in definitions:
            return _inline_refs(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {k: _inline_refs(v, definitions) for k, v in value.items() if k != "$defs"}
    if isinstance(value, list):
        return [_inline_refs(v, definitions) for v in value]
    return value


def _refusal(details: ErrorDetails, properties: JSON, arguments: JSON) -> tuple[str, str]:
    """What was refused (``limit was 0 (a number)``) and what is expected instead
    (``, expected an integer from 1 to 100``): the message is the two joined."""
    loc = details["loc"]
    if not loc:
        return "the arguments must be a JSON object", ""
    name = str(loc[0])
    argument: JSON = properties.get(name, {})
    listed = isinstance(arguments.get(name), list)
    target, path = argument, name
    for part in loc[1:]:
        fields = _fields(target)
        if isinstance(part, int) and listed:
            target, path = _within(target, [part]), f"{path}[{part}]"
        elif isinstance(part, str) and part in fields:
            target, path = fields[part], f"{path}.{part}"
        # Else one value given for a list (schema.OneOrMany: its index is pydantic's), or
        # pydantic naming a union's branch: the value refused is still the one at ``path``.
    accepted = _accepted(target)
    if details["type"] == "missing":
        what = target.get("description")
        known = ", ".join(p for p in (what, accepted) if p)
        return f"{path} is required", f": {known}" if known else ""
    given = details["input"]
    return f"{path} was {_shown(given, target)}", f", expected {accepted or 'another value'}"


def _fields(schema: JSON) -> JSON:
    """The properties of an object ``schema`` accepts (of its object branch); else none."""
    for choice in _choices(schema):
        if choice.get("type") == "object":
            found: JSON = choice.get("properties", {})
            return found
    return {}


def _within(schema: JSON, indexes: Sequence[int]) -> JSON:
    """The schema of an item of a list argument (``status[0]``)."""
    for _ in indexes:
        arrays = [c for c in _choices(schema) if c.get("type") == "array"]
        schema = arrays[0].get("items", {}) if arrays else {}
    return schema


def _choices(schema: JSON) -> list[JSON]:
    choices: list[JSON] = schema.get("anyOf", [schema])
    return [c for c in choices if c.get("type") != "null"]


def _accepted(schema: JSON) -> str:
    choices = _choices(schema)
    arrays = [c for c in choices if c.get("type") == "array"]
    if len(choices) == 2 and len(arrays) == 1 and arrays[0].get("items") in choices:
        array = arrays[0]  # one value or a list of them (schema.OneOrMany)
        return f"{_one(array.get('items', {}))}, or a list of {_how_many(array)} of them"
    return _either(choices)


def _either(choices: Sequence[JSON]) -> str:
    # Branches that read the same (two patterns too rich to show) are said once.
    return " or ".join(dict.fromkeys(_one(c) for c in choices))


def _how_many(array: JSON) -> str:
    low, high = array.get("minItems", 0), array.get("maxItems")
    if high is not None:
        return f"{low} to {high}" if low else f"up to {high}"
    return f"at least {low}" if low else "any number"


def _one(schema: JSON) -> str:
    if "anyOf" in schema:  # the items of a list may be a union (an enum or a pattern)
        return _either(_choices(schema))
    if "enum" in schema:
        values = [str(v) for v in schema["enum"]]
        more = len(values) - _VALUES_SHOWN
        cut = f" (and {more} more in the tool's schema)" if more > 0 else ""
        return "one of " + ", ".join(values[:_VALUES_SHOWN]) + cut
    kind = schema.get("type")
    if kind in ("integer", "number"):
        noun = "an integer" if kind == "integer" else "a number"
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"{noun} from {low} to {high}"
        if low is not None:
            return f"{noun} of at least {low}"
        return f"{noun} of at most {high}" if high is not None else noun
    if kind == "string":
        if schema.get("format") == "date-time":
            return "an ISO 8601 date or date-time (2026-11-01 or 2026-11-01T09:30:00Z)"
        if "pattern" in schema:
            pattern = str(schema["pattern"])
            return _pattern_in_words(pattern) or f"text matching {_cut(pattern)}"
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if high is not None:
            return (
                f"text of {low} to {high} characters"
                if low
                else f"text of at most {high} characters"
            )
        return f"text of at least {low} characters" if low else "text"
    if kind == "boolean":
        return "true or false"
    if kind == "object":
        required = schema.get("required", [])
        keys = [k if k in required else f"{k}?" for k in schema.get("properties", {})]
        return "an object {" + ", ".join(keys) + "}"
    if kind == "array":
        return f"a list of {_how_many(schema)} items, each {_one(schema.get('items', {}))}"
    return "a value of another type" if kind is None else f"a JSON {kind}"


# A pattern made only of literal text, alternatives and runs of a character class reads as a
# template: ^field_(count|sum):[a-z_]{1,64}$ as field_<count|sum>:<1 to 64 of [a-z_]>.
_LITERAL = re.compile(r"[A-Za-z0-9_:/ -]+|\\[.:/_-]")
_ALTERNATIVES = re.compile(r"\(([A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)*)\)")
_RUN = re.compile(r"\[([^\]\\]+)\](?:\{(\d+)(,(\d*))?\}|(\+))")


def _pattern_in_words(pattern: str) -> str | None:
    """``pattern`` as a template (see above); None when it uses anything else."""
    if not (pattern.startswith("^") and pattern.endswith("$")):
        return None  # a pattern that matches anywhere in the text is no template
    body, at, words = pattern[1:-1], 0, []
    while at < len(body):
        if found := _LITERAL.match(body, at):
            words.append(found.group().replace("\\", ""))
        elif found := _ALTERNATIVES.match(body, at):
            words.append(f"<{found.group(1)}>")
        elif found := _RUN.match(body, at):
            words.append(f"<{_run_length(found)} of [{found.group(1)}]>")
        else:
            return None
        at = found.end()
    return "".join(words) or None


def _run_length(run: re.Match[str]) -> str:
    low, comma, high = run.group(2), run.group(3), run.group(4)
    if run.group(5):  # +
        return "1 or more"
    if not comma:
        return low
    return f"{low} to {high}" if high else f"at least {low}"


def _shown(value: object, schema: JSON) -> str:
    """A refused value as JSON, cut to a bound; with its kind when ``schema`` takes no value of
    that kind (``5 (a number)`` where a list of names is expected), the kind being the mistake."""
    if isinstance(value, list) and len(value) > 5:
        return f"a list of {len(value)} items"
    text = _cut(json.dumps(value, ensure_ascii=False, default=str))
    kind, json_types = _kind(value)
    if not kind or json_types & _types(schema):
        return text
    return f"{text} ({kind})"


def _kind(value: object) -> tuple[str, set[str]]:
    """What ``value`` is, in words and as the JSON schema types that take it."""
    # bool before int: JSON's true is no number, Python's True is an int.
    if isinstance(value, bool):
        return "a boolean", {"boolean"}
    if isinstance(value, int):
        return "a number", {"integer", "number"}
    if isinstance(value, float):
        return "a number", {"number"}
    if isinstance(value, str):
        return "a string", {"string"}
    if isinstance(value, list):
        return ("a list" if value else "an empty list"), {"array"}
    if isinstance(value, Mapping):
        return "an object", {"object"}
    return "", set()  # null says what it is


def _types(schema: JSON) -> set[str]:
    """The JSON types ``schema`` takes, through its anyOf (nested, as a list's items are)."""
    found: set[str] = set()
    for choice in _choices(schema):
        if "anyOf" in choice:
            found |= _types(choice)
        elif isinstance(choice.get("type"), str):
            found.add(choice["type"])
    return found


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
