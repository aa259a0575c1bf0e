"""The columns of every live bug that ``query_metrics`` groups and counts, held in memory.

SQLite answers a grouped count over a large account by sorting every bug it reads (its GROUP BY
has no hash aggregation): on 300,000 bugs that is 150 to 1,600 ms a query, where the same
counts over numpy arrays take ~15 ms (docs/performance.md, "W7"). So the bugs' metric columns
are kept here as arrays of small integer codes (one per distinct value, 0 for NULL), one segment
per product, and ``store/metrics_engine.py`` groups them.

Exactness: each segment remembers the generation of its product (``bug_generations``, moved by
triggers on every write to bugs and to the tests they read: migration 11). Every query first
reads the generations, then reloads the segments whose generation moved, in that order: a write
committed between the two leaves a segment newer than its generation, which the next query
reloads again, never older.

Example::

    facts = await mirror.bug_facts.current(conn)  # conn: a reader of mirror.db
    facts.columns["severity"], facts.codes["severity"].values
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import numpy as np
import numpy.typing as npt

Codes = npt.NDArray[np.int32]
Times = npt.NDArray[np.datetime64]
NO_PRODUCT = -1  # the generation row of bugs without a product

# Coded columns: read from the bug row, or from its test (LEFT JOIN: NULL without one).
BUG_COLUMNS = (
    "product_id",
    "feature_id",
    "test_id",
    "author",
    "severity",
    "status",
    "auto_accepted",
    "known",
    "reject_reason",
)
TEST_COLUMNS = ("testing_type", "test_status", "test_environment")
CODED = BUG_COLUMNS + TEST_COLUMNS
# Numbers, not codes: the UTC day of reported_at (days since 1970-01-01) and its month (months
# since 1970-01), which the time buckets are made of; NO_TIME for a bug without reported_at.
TIME_COLUMNS = ("reported_day", "reported_month")
NO_TIME = np.iinfo(np.int32).min

# From the index alone (migration 11 widened it for this): the rows hold the raw JSON, and
# reading them costs four times as much. The planner, without statistics, takes another index.
_BUGS_SQL = (
    f"SELECT {', '.join(BUG_COLUMNS)}, reported_at FROM bugs INDEXED BY bugs_for_stats "
    "WHERE deleted_at IS NULL AND product_id {product}"
)
# A bug reads its test's testing type, status and environment title, as the SQL dimensions do
# through ``LEFT JOIN tests t`` (whatever the test's deleted_at).
_TESTS_SQL = (
    "SELECT id, testing_type, status, json_extract(raw, '$.test_environment.title') FROM tests "
    "WHERE id IN (SELECT value FROM json_each(?))"
)


@dataclass
class Coding:
    """The values of one column by code: code 0 is NULL; codes only ever grow. Values that SQL
    groups together (1 and 1.0) share a code, as they share a Python dict key."""

    values: list[Any] = field(default_factory=lambda: [None])
    index: dict[Hashable, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index.setdefault(None, 0)

    def code(self, value: Any) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.values)
            self.values.append(value)
        return found

    def codes_of(self, wanted: Sequence[Any]) -> list[int]:
        """The codes of those of ``wanted`` that some bug holds."""
        return [self.index[value] for value in wanted if value is not None and value in self.index]


@dataclass
class Segment:
    generation: int
    columns: dict[str, Codes]
    reported_at: Times


@dataclass(frozen=True)
class Facts:
    """Every live bug's columns, one row per bug (the segments joined)."""

    columns: dict[str, Codes]
    reported_at: Times  # NaT: no reported_at
    codes: dict[str, Coding]

    @property
    def size(self) -> int:
        return len(self.reported_at)


class BugFacts:
    """The in-memory columns of one mirror's live bugs, reloaded per product as it changes."""

    def __init__(self) -> None:
        self._codes = {name: Coding() for name in CODED}
        self._segments: dict[int, Segment] = {}
        self._facts: Facts | None = None
        self._lock = asyncio.Lock()

    async def current(self, conn: aiosqlite.Connection) -> Facts:
        """The columns as the mirror holds them now (segments of moved products reloaded)."""
        async with self._lock:
            rows = await conn.execute_fetchall("SELECT product_id, generation FROM bug_generations")
            generations = {int(row[0]): int(row[1]) for row in rows}
            stale = [
                product
                for product, generation in generations.items()
                if product not in self._segments or self._segments[product].generation != generation
            ]
            gone = [product for product in self._segments if product not in generations]
            if self._facts is not None and not stale and not gone:
                return self._facts
            for product in gone:
                del self._segments[product]
            for product in stale:
                self._segments[product] = await self._load(conn, product, generations[product])
            self._facts = self._joined()
            return self._facts

    async def _load(self, conn: aiosqlite.Connection, product: int, generation: int) -> Segment:
        chosen = "IS NULL" if product == NO_PRODUCT else f"= {int(product)}"
        bugs = list(await conn.execute_fetchall(_BUGS_SQL.format(product=chosen)))
        by_column = list(zip(*bugs, strict=True)) if bugs else [()] * (len(BUG_COLUMNS) + 1)
        columns = {name: self._coded(name, by_column[at]) for at, name in enumerate(BUG_COLUMNS)}
        test_ids = by_column[BUG_COLUMNS.index("test_id")]
        wanted = json.dumps(sorted({t for t in test_ids if t is not None}))
        tests = {
            row[0]: (row[1], row[2], row[3])
            for row in await conn.execute_fetchall(_TESTS_SQL, (wanted,))
        }
        none = (None, None, None)
        of_test = list(zip(*(tests.get(t, none) for t in test_ids), strict=True)) or [()] * 3
        for at, name in enumerate(TEST_COLUMNS):
            columns[name] = self._coded(name, of_test[at])
        # Stored times are fixed-width UTC text ending in Z (timefmt.to_db); numpy reads them
        # without the Z. NULL becomes NaT, which compares false with every bound, as in SQL.
        reported = np.array(
            ["NaT" if t is None else t[:-1] for t in by_column[len(BUG_COLUMNS)]],
            dtype="datetime64[us]",
        )
        missing = np.isnat(reported)
        for name, unit in zip(TIME_COLUMNS, ("D", "M"), strict=True):
            numbers = reported.astype(f"datetime64[{unit}]").astype(np.int64)
            columns[name] = np.where(missing, NO_TIME, numbers).astype(np.int32)
        return Segment(generation, columns, reported)

    def _coded(self, name: str, values: Sequence[Any]) -> Codes:
        coding = self._codes[name]
        for value in set(values):  # new values get their codes once, not once per bug
            coding.code(value)
        index = coding.index
        return np.fromiter(map(index.__getitem__, values), np.int32, len(values))

    def _joined(self) -> Facts:
        segments = [self._segments[p] for p in sorted(self._segments)]
        columns = {
            name: np.concatenate([s.columns[name] for s in segments])
            if segments
            else np.zeros(0, np.int32)
            for name in CODED + TIME_COLUMNS
        }
        reported = (
            np.concatenate([s.reported_at for s in segments])
            if segments
            else np.zeros(0, "datetime64[us]")
        )
        return Facts(columns, reported, self._codes)
