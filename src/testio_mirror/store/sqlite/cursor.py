"""Opaque keyset cursors: the sort value and id of the last item of a page."""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from testio_mirror.errors import CursorError


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
