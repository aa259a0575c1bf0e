"""Opaque cursors: the sort value and id of the last item of a page (keyset), or a scope and a
position (an id or an offset) for listings ordered otherwise."""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from testio_mirror.errors import CursorError
from testio_mirror.store.records import Answer, Page


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_HasId)


def encode_cursor(sort_value: Any, item_id: int) -> str:
    text = json.dumps([sort_value, item_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    """Raises CursorError when ``cursor`` is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort_value, item_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise CursorError(
            "invalid cursor: pass back the next_cursor of a previous answer"
        ) from None
    if (
        isinstance(item_id, bool)
        or not isinstance(item_id, int)
        or not -(2**63) <= item_id < 2**63
        or not isinstance(sort_value, str)
    ):
        raise CursorError("invalid cursor: pass back the next_cursor of a previous answer")
    return sort_value, item_id


def next_cursor(rows: Sequence[sqlite3.Row], limit: int, sort_column: str) -> str | None:
    """The cursor after a page of ``limit`` rows, when the query found one row more."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last[sort_column] or "", last["id"])


def cursors_after(rows: Sequence[sqlite3.Row], sort_column: str) -> list[str]:
    """The cursor that goes on right after each of ``rows``: an answer cut short to fit its size
    limit hands out the one after its last item kept."""
    return [encode_cursor(row[sort_column] or "", row["id"]) for row in rows]


# Scopes start with "@", which no sort value (an ISO 8601 time, or "") does: a keyset cursor
# passed where a scoped one is expected (or the other way round) is refused, not misread.
def encode_position(scope: str, position: int) -> str:
    """A cursor naming ``scope`` (what is listed, e.g. ``@stats:test``) and a position in it."""
    return encode_cursor(f"@{scope}", position)


def decode_position(cursor: str, scope: str) -> int:
    """The position a cursor of ``encode_position(scope, ...)`` holds.

    Raises:
        CursorError: ``cursor`` is not one of ours, or was handed out for another listing.
    """
    value, position = decode_cursor(cursor)
    if value != f"@{scope}" or position < 0:
        raise CursorError(
            "invalid cursor: it belongs to another listing; pass back the next_cursor of the "
            "previous answer to the same call"
        )
    return position


def id_page(answer: Answer[list[R]], limit: int, scope: str) -> Page[R]:
    """A page of records listed by id from ``limit + 1`` of them: the cursor after each is its
    id (``encode_position(scope, id)``), the next page's listing starts after it."""
    items = answer.value[:limit]
    cursors = [encode_position(scope, item.id) for item in items]
    more = len(answer.value) > limit
    return Page(
        items=items,
        next_cursor=cursors[-1] if more else None,
        freshness=answer.freshness,
        cursors=cursors,
    )
