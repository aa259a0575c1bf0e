"""Vetting one incoming JSON-RPC message before the MCP SDK sees it.

The SDK drops, without an answer, a stdio line it cannot validate (the client then waits
forever), and over HTTP it answers such a body with a code that does not say what was wrong.
``vet_message`` checks what both transports receive: JSON text, a single JSON-RPC 2.0 object
(no batch: MCP dropped batches in 2025-06-18), an integer or string id, a string method, object
params, strings of valid Unicode, nesting the SDK's parser accepts. A message it refuses gets a
JSON-RPC error (``Rejection.answer``): -32700 when the text is not JSON, -32602 when only the
params are wrong, -32600 otherwise; the id is the message's own when it has one that can be
echoed, else null.

Example::

    rejection = vet_message(b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}')
    assert rejection is not None and rejection.code == INVALID_REQUEST
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from mcp_types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, jsonrpc_message_adapter
from pydantic import ValidationError

# The SDK's parser refuses nesting of about two hundred levels; MCP messages need a handful, so
# the bound leaves room and keeps the parse and the checks below shallow.
MAX_NESTING: Final = 64
# A string token (escapes included) or one bracket: enough to measure nesting outside strings.
_TOKEN: Final = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
# A JSON escape of a UTF-16 surrogate; a lone one decodes to a string no encoder accepts.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

JsonId = int | float | str | None


@dataclass(frozen=True)
class Rejection:
    """Why a message was refused, as the JSON-RPC error that answers it."""

    code: int
    message: str
    id: JsonId = None

    def answer(self) -> bytes:
        """The error answer as one line of JSON, newline included."""
        body = {
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message},
        }
        return json.dumps(body, allow_nan=False).encode() + b"\n"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _too_deep_pruned(text: str) -> str | None:
    """``text`` with every value nested beyond ``MAX_NESTING`` replaced by ``0``, or None when
    nothing is that deep (so the id of a too-deep message can still be read)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return None
    depth = 0
    cut_from = -1
    kept: list[str] = []
    position = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth == MAX_NESTING + 1 and cut_from < 0:
                cut_from = token.start()
        elif bracket in "]}":
            depth -= 1
            if depth == MAX_NESTING and cut_from >= 0:
                kept.append(text[position:cut_from])
                kept.append("0")
                position = token.end()
                cut_from = -1
    if not kept:
        return None if cut_from < 0 else text[:cut_from] + "0"
    kept.append(text[position:] if cut_from < 0 else text[position:cut_from] + "0")
    return "".join(kept)


def _echoable_id(message: object) -> JsonId:
    """The message's id when it can be written back (so the client can match the error)."""
    if not isinstance(message, dict):
        return None
    value = message.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if isinstance(value, int | str) else None


def _strings(value: object) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _has_lone_surrogate(value: object) -> bool:
    return any(_SURROGATE.search(text) for text in _strings(value))


def _parse(text: str) -> object:
    """Raises ValueError when ``text`` is not JSON (NaN and Infinity are not)."""
    return json.loads(text, parse_constant=_refuse_constant)


def vet_message(raw: bytes | str) -> Rejection | None:
    """None when the SDK may have ``raw`` (one message), else the error that answers it."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    pruned = _too_deep_pruned(text)
    if pruned is not None:
        try:
            shallow = _parse(pruned)
        except ValueError:
            shallow = None
        return Rejection(
            INVALID_REQUEST,
            f"invalid request: JSON nested deeper than {MAX_NESTING} levels",
            _echoable_id(shallow),
        )
    try:
        message = _parse(text)
    except ValueError as exc:
        return Rejection(PARSE_ERROR, f"parse error: not valid JSON ({_first_line(exc)})")
    return _vet_object(message, has_surrogates=_SURROGATE_ESCAPE.search(text) is not None)


def _first_line(exc: ValueError) -> str:
    return str(exc).splitlines()[0][:200]


def _vet_object(message: object, *, has_surrogates: bool) -> Rejection | None:
    if isinstance(message, list):
        return Rejection(
            INVALID_REQUEST,
            "invalid request: JSON-RPC batches are not part of MCP; send one message at a time",
        )
    if not isinstance(message, dict):
        return Rejection(INVALID_REQUEST, "invalid request: a message is a JSON object")
    message_id = _echoable_id(message)
    if "id" in message and (
        isinstance(message["id"], bool) or not isinstance(message["id"], int | str)
    ):
        return Rejection(
            INVALID_REQUEST, "invalid request: the id must be a string or an integer", message_id
        )
    if message.get("jsonrpc") != "2.0":
        return Rejection(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', message_id)
    if "method" in message:
        if not isinstance(message["method"], str):
            return Rejection(
                INVALID_REQUEST, "invalid request: the method must be a string", message_id
            )
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            return Rejection(
                INVALID_PARAMS,
                "invalid params: params must be an object of named arguments",
                message_id,
            )
    elif "id" not in message or not ("result" in message or "error" in message):
        return Rejection(
            INVALID_REQUEST,
            "invalid request: a message needs a method (or, answering, an id and a result)",
            message_id,
        )
    if has_surrogates and _has_lone_surrogate(message):
        in_params = _has_lone_surrogate(message.get("params"))
        return Rejection(
            INVALID_PARAMS if in_params else INVALID_REQUEST,
            "invalid params: a string holds a lone UTF-16 surrogate; send valid Unicode"
            if in_params
            else "invalid request: a string holds a lone UTF-16 surrogate; send valid Unicode",
            message_id,
        )
    try:
        jsonrpc_message_adapter.validate_python(message, by_name=False)
    except ValidationError:
        return Rejection(
            INVALID_REQUEST, "invalid request: not a JSON-RPC 2.0 message MCP accepts", message_id
        )
    return None
