"""Reading TestIO's answers: JSON decoding, the documented shape, the reason of a refusal.

Bodies are decoded with orjson, which reads pages of bugs faster than ``json``; a body it cannot
read (not UTF-8, say) goes through httpx's own decoding. orjson reads integers beyond 64 bits as
floats: TestIO's ids and counts are far below that.

Example::

    body = json_of(response, "GET", "products", scrub)
    items = member(body, "products", list, "GET", "products")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from testio_mirror.upstream.errors import BadResponseError

Scrub = Callable[[str], str]  # text with the token cut out


def decode_json(response: httpx.Response) -> Any:
    """The response's JSON.

    Raises:
        json.JSONDecodeError, UnicodeDecodeError: the body is not JSON.
    """
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.json()


def json_of(response: httpx.Response, method: str, path: str, scrub: Scrub) -> Any:
    """The JSON of a successful answer.

    Raises:
        BadResponseError: the body is not JSON (a proxy's page, a wrong base URL).
    """
    try:
        return decode_json(response)
    except (json.JSONDecodeError, UnicodeDecodeError):
        kind = response.headers.get("content-type", "no content type")
        raise BadResponseError(
            f"{method} {path}: the answer is not JSON ({kind}, "
            f"starting {scrub(response.text)[:80]!r}); is "
            "TESTIO_CUSTOMER_API_BASE_URL right?",
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


def error_text(response: httpx.Response, scrub: Scrub) -> str:
    """The reason a refusal gives, scrubbed and cut to 200 characters."""
    # Scrub before cutting: a token cut in half by the limit would no longer be found.
    try:
        body = decode_json(response)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return scrub(response.text)[:200] or "no reason given"
    if isinstance(body, dict):
        for key in ("error", "message", "errors"):
            if key in body:
                return scrub(str(body[key]))[:200]
    return scrub(str(body))[:200]


def _shape(body: Any) -> str:
    if isinstance(body, dict):
        return "an object with keys " + ", ".join(sorted(body)[:5])
    return type(body).__name__
