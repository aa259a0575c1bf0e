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
_SHOWN = 80  # characters of a refused value an error repeats


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
    parts = [
        _refusal(details, properties, arguments) for details in error.errors(include_url=False)
    ]
    return "invalid arguments: " + "; ".join(dict.fromkeys(parts))


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


def _refusal(details: ErrorDetails, properties: JSON, arguments: JSON) -> str:
    loc = details["loc"]
    if not loc:
        return "the arguments must be a JSON object"
    name = str(loc[0])
    argument: JSON = properties.get(name, {})
    listed = isinstance(arguments.get(name), list)
    target, path, followed = argument, name, True
    for part in loc[1:]:
        fields = _fields(target)
        if isinstance(part, int) and listed:
            target, path = _within(target, [part]), f"{path}[{part}]"
        elif isinstance(part, str) and part in fields:
            target, path = fields[part], f"{path}.{part}"
        else:
            # One value given for a list (schema.OneOrMany), or pydantic naming a union's
            # branch: speak of what was given.
            followed = False
    accepted = _accepted(target)
    if details["type"] == "missing":
        what = target.get("description")
        return f"{path} is required: " + ", ".join(p for p in (what, accepted) if p)
    given = details["input"] if followed else arguments.get(name)
    return f"{path} was {_shown(given)}, expected {accepted or 'another value'}"


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
        most = f"up to {array['maxItems']}" if "maxItems" in array else "any number"
        return f"{_one(array.get('items', {}))}, or a list of {most} of them"
    return " or ".join(_one(c) for c in choices)


def _one(schema: JSON) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
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
        most = f"up to {schema['maxItems']}" if "maxItems" in schema else "any number of"
        return f"a list of {most} items, each {_one(schema.get('items', {}))}"
    return "a value of another type" if kind is None else f"a JSON {kind}"


def _shown(value: object) -> str:
    if isinstance(value, list) and len(value) > 5:
        return f"a list of {len(value)} items"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
