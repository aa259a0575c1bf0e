"""Scanning for secrets: any window of a token, or of a form a server could alter it into.

Any ``WINDOW`` consecutive characters of a token count as a leak (a cut-off token still leaks),
and so does its base64 form; ``altered_fragments`` adds the forms a leaky upstream echoes
(upper- and lower-cased, reversed).

Example::

    needles = fragments(API_TOKEN) + fragments(HTTP_TOKEN)
    assert leaks_of(stderr, needles) == []
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from pathlib import Path

WINDOW = 10


def _windows(text: str) -> set[str]:
    return {text[i : i + WINDOW] for i in range(len(text) - WINDOW + 1)}


def fragments(secret: str) -> list[bytes]:
    """Every window of ``secret``, and its base64 form (as in a cursor or a Basic header)."""
    pieces = _windows(secret)
    encoded = base64.b64encode(secret.encode()).decode().rstrip("=")
    pieces.add(encoded[:-2])
    return sorted(p.encode() for p in pieces)


def altered_fragments(secret: str) -> list[bytes]:
    """``fragments`` of ``secret`` and of its upper-cased, lower-cased and reversed forms; any
    window of its base64 form too."""
    pieces = {p.decode() for p in fragments(secret)}
    for form in (secret.upper(), secret.lower(), secret[::-1]):
        pieces |= _windows(form)
    pieces |= _windows(base64.b64encode(secret.encode()).decode().rstrip("="))
    return sorted(p.encode() for p in pieces)


def leaks_of(data: str | bytes, needles: list[bytes]) -> list[str]:
    """The ``needles`` found in ``data``."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return [needle.decode() for needle in needles if needle in raw]


def table_leaks(
    database: Path, needles: list[bytes]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """``needles`` in any value of any row of any table (FTS shadow tables, sync_events,
    listing_state ... included), and how many rows each table had."""
    found: dict[str, list[str]] = {}
    rows_seen: dict[str, int] = {}
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608
            rows_seen[table] = len(rows)
            for row in rows:
                for value in row:
                    text = value if isinstance(value, bytes) else str(value).encode()
                    if hits := leaks_of(text, needles):
                        found.setdefault(table, []).extend(hits)
    return found, rows_seen
