"""Writing entities: change detection, upserts that leave unchanged rows alone, tombstones.

Rows are classified before they are written: new ids are inserted, rows whose ``content_hash``
differs (or that were tombstoned and came back) are updated with ``INSERT ... ON CONFLICT DO
UPDATE``, and unchanged rows only get their ``fetched_at`` moved. The counts come back as
``WriteStats``, which sync reports per phase.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import aiosqlite
import orjson

# SQLite's default limit on host parameters is 32766; stay far below it per statement.
_CHUNK = 500
# Parameters in one multi-row INSERT: SQLite before 3.32 allowed only 999.
_MAX_PARAMETERS = 30_000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
# Rows in one multi-row INSERT: larger statements save little and cost memory to compile.
_ROWS_PER_STATEMENT = 64


@dataclass
class WriteStats:
    """What one write did."""

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def canonical_json(value: Any) -> str:
    """The one text form of a JSON value: what is stored as ``raw`` and what is hashed.

    Keys sorted, no spaces, UTF-8 as is. orjson writes it four times faster than ``json`` (a
    sync serialises every object it stores); values orjson refuses (integers beyond 64 bits)
    fall back to ``json``. Both write the same text for strings, integers, booleans, nulls and
    plain floats; tiny floats in exponent form differ (``1e-7`` and ``1e-07``), which at worst
    makes a row stored by an older version look changed once."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(*parts: Any) -> str:
    """A short, stable digest of JSON-able parts."""
    return hash_canonical(*(canonical_json(part) for part in parts))


def hash_canonical(*texts: str) -> str:
    """``content_hash`` of parts already in canonical form: a row's ``raw`` is serialised once
    and hashed from that text. The canonical text of a list is its items' texts joined by
    commas inside brackets, so both functions give the same digest for the same parts."""
    digest = hashlib.sha256(("[" + ",".join(texts) + "]").encode("utf-8"))
    return digest.hexdigest()[:32]


def chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def insert_rows(
    conn: aiosqlite.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict: str = "",
    verb: str = "INSERT",
) -> None:
    """Insert ``rows`` (values in ``columns`` order) with one multi-row ``VALUES`` statement per
    chunk.

    ``executemany`` would hand the GIL back and forth around every row (SQLite runs without it,
    binding needs it); each time the event loop's thread is busy, the writer thread then waits
    for the switch interval: next to a busy thread, 10,000 bug rows took 10 to 60 times longer
    than alone. One statement is one hand-off. (Rows as one JSON array unpacked by
    ``json_each`` also work, but SQLite spends longer parsing the JSON than binding the
    values.) ``table``, ``columns``, ``conflict`` and ``verb`` are the store's own constants,
    never user input.
    """
    if not rows:
        return
    names = ", ".join(columns)
    row_marks = "(" + ",".join("?" * len(columns)) + ")"
    start = 0
    for size in _statement_sizes(len(rows), max(1, _MAX_PARAMETERS // len(columns))):
        part = rows[start : start + size]
        start += size
        await conn.execute(
            f"{verb} INTO {table} ({names}) VALUES {','.join([row_marks] * size)} {conflict}",
            [value for row in part for value in row],
        )


def _statement_sizes(count: int, most: int) -> list[int]:
    """Rows per statement for ``count`` rows: full statements of ``_ROWS_PER_STATEMENT`` (at
    most ``most``), then what is left rounded down to a multiple of eight, then the last few.
    Each size is its own SQL text, which SQLite compiles and Python's statement cache keeps
    (128 per connection): at most 15 sizes keep that memory small and bounded, and at most
    three statements per call keep the round trips few."""
    top = max(1, min(most, _ROWS_PER_STATEMENT))
    sizes = [top] * (count // top)
    rest = count % top
    for size in (rest - rest % 8, rest % 8):
        if size:
            sizes.append(size)
    return sizes


async def upsert(
    conn: aiosqlite.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    fetched_at: str,
    *,
    updates: Mapping[str, str] | None = None,
) -> tuple[WriteStats, list[int]]:
    """Write ``rows`` (tuples in ``columns`` order; ``id`` first, ``content_hash`` included,
    ``fetched_at`` and ``changed_at`` added here) and return the stats and the ids written.
    ``updates``: the SQL a changed row's column takes instead of ``excluded.<column>`` (a
    column that keeps its value unless another changes).

    ``table``, ``columns`` and ``updates`` are the store's own constants, never user input.
    """
    stats = WriteStats(fetched=len(rows))
    if not rows:
        return stats, []
    hash_at = list(columns).index("content_hash")
    known: dict[int, tuple[str, str | None]] = {}
    for part in chunks([row[0] for row in rows]):
        marks = ",".join("?" * len(part))
        query = f"SELECT id, content_hash, deleted_at FROM {table} WHERE id IN ({marks})"
        for found in await conn.execute_fetchall(query, tuple(part)):
            known[found[0]] = (found[1], found[2])
    writes: list[tuple[Any, ...]] = []
    touched: list[int] = []
    for row in rows:
        old = known.get(row[0])
        if old is None:
            stats.inserted += 1
        elif old[0] != row[hash_at] or old[1] is not None:
            stats.updated += 1
        else:
            stats.unchanged += 1
            touched.append(row[0])
            continue
        writes.append((*row, fetched_at, fetched_at))
    if writes:
        names = [*columns, "fetched_at", "changed_at"]
        special = updates or {}
        assignments = ", ".join(
            f"{name} = {special.get(name, f'excluded.{name}')}" for name in names[1:]
        )
        await insert_rows(
            conn,
            table,
            names,
            writes,
            conflict=f"ON CONFLICT (id) DO UPDATE SET {assignments}, deleted_at = NULL",
        )
    for part in chunks(touched):
        marks = ",".join("?" * len(part))
        await conn.execute(
            f"UPDATE {table} SET fetched_at = ? WHERE id IN ({marks})",
            (fetched_at, *part),
        )
    return stats, [row[0] for row in writes]


async def tombstone(
    conn: aiosqlite.Connection, table: str, ids: Sequence[int], deleted_at: str
) -> int:
    """Mark these rows as deleted (TestIO said they are gone); rows already marked keep their
    mark. Returns how many rows were marked."""
    cursor = await conn.execute(
        f"UPDATE {table} SET deleted_at = ? "
        "WHERE deleted_at IS NULL AND id IN (SELECT value FROM json_each(?))",
        (deleted_at, json.dumps(list(ids))),
    )
    return cursor.rowcount


async def tombstone_missing(
    conn: aiosqlite.Connection,
    table: str,
    present_ids: Sequence[int],
    deleted_at: str,
    scope: tuple[str, Sequence[int]] | None = None,
) -> int:
    """Mark rows not in ``present_ids`` as deleted, within ``scope`` (a column and the values it
    may hold; None: the whole table). Returns how many rows were marked."""
    where = "deleted_at IS NULL AND id NOT IN (SELECT value FROM json_each(?))"
    params: list[Any] = [deleted_at, json.dumps(list(present_ids))]
    if scope is not None:
        column, values = scope
        if not values:
            return 0
        where += f" AND {column} IN ({','.join('?' * len(values))})"
        params.extend(values)
    cursor = await conn.execute(
        f"UPDATE {table} SET deleted_at = ? WHERE {where}",
        params,
    )
    return cursor.rowcount


async def record_users(
    conn: aiosqlite.Connection, users: Iterable[tuple[str, str]], seen_at: str
) -> None:
    """Remember people seen in the data: ``(name, role)`` with role ``tester`` or ``customer``."""
    unique = sorted({(name, role) for name, role in users if name})
    if unique:
        await insert_rows(
            conn,
            "users",
            ("name", "role", "first_seen_at", "last_seen_at"),
            [(name, role, seen_at, seen_at) for name, role in unique],
            conflict="ON CONFLICT (name, role) DO UPDATE SET last_seen_at = excluded.last_seen_at "
            "WHERE users.last_seen_at < excluded.last_seen_at",
        )


async def mark_collection_fetched(conn: aiosqlite.Connection, key: str, fetched_at: str) -> None:
    await conn.execute(
        "INSERT INTO collection_fetches (key, fetched_at) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET fetched_at = excluded.fetched_at",
        (key, fetched_at),
    )
