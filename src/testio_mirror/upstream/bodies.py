"""Reading TestIO's answers: JSON decoding and the documented shape.

No text of an answer goes into an error: a body that is not JSON is named by its kind (an HTML
page, plain text ...), a wrong shape by the type found. A server may echo anything, the token
included and in any form, and no scrubbing can know every form.

Bodies are decoded with orjson, which reads pages of bugs faster than ``json``; a body it cannot
read (not UTF-8, say) goes through httpx's own decoding. orjson reads integers beyond 64 bits as
floats: TestIO's ids and counts are far below that.

Example::

    body = json_of(response, "GET", "products")
    items = member(body, "products", list, "GET", "products")
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson

from testio_mirror.upstream.errors import BadResponseError

_KINDS = (
    ("text/html", "an HTML page"),
    ("text/plain", "plain text"),
    ("application/json", "broken JSON"),
    ("text/", "text"),
)


def body_kind(response: httpx.Response) -> str:
    """What an unreadable body is, in our words, from its content type."""
    kind = response.headers.get("content-type", "").strip().lower()
    if not kind:
        return "a body without a content type"
    for prefix, name in _KINDS:
        if kind.startswith(prefix):
            return name
    return "a body of another type"


def decode_json(response: httpx.Response) -> Any:
    """The response's JSON.

    Raises:
        json.JSONDecodeError, UnicodeDecodeError: the body is not JSON.
    """
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.json()


def json_of(response: httpx.Response, method: str, path: str) -> Any:
    """The JSON of a successful answer.

    Raises:
        BadResponseError: the body is not JSON (a proxy's page, a wrong base URL).
    """
    try:
        return decode_json(response)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadResponseError(
            f"{method} {path}: the answer is not JSON ({body_kind(response)}, HTTP "
            f"{response.status_code}); is TESTIO_CUSTOMER_API_BASE_URL right?",
            method=method,
            path=path,
            status=response.status_code,
        ) from None


def member(body: Any, key: str, kind: type, method: str, path: str) -> Any:
    """``body[key]`` when body is an object holding a ``kind`` there.

    Raises:
        BadResponseError: it is not.
    """
    if not isinstance(body, dict) or not isinstance(body.get(key), kind):
        raise BadResponseError(
            f"{method} {path}: expected an object with {kind.__name__} {key!r}, got {_shape(body)}",
            method=method,
            path=path,
        )
    return body[key]


def _shape(body: Any) -> str:
    # Not the keys found: they are the server's text.
    if isinstance(body, dict):
        return "an object without it"
    return type(body).__name__
