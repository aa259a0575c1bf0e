"""The columns of every live bug and test that ``query_metrics`` groups and counts, in memory.

SQLite answers a grouped count over a large account by sorting every row it reads (its GROUP BY
has no hash aggregation): on 300,000 bugs that is 150 to 1,600 ms a query, where the same
counts over numpy arrays take ~15 ms (docs/performance.md, "W7"). So the metric columns of bugs
and tests (and the tests' features, the bugs' platforms and custom report fields) are kept here
as arrays of small integer codes (one per distinct value, 0 for NULL), one segment per product,
and ``store/metrics_engine.py`` groups them.

Exactness: each segment remembers the generation of its product (``bug_generations``, moved by
triggers on every write to the tables read here: migration 11). Every query first
reads the generations, then reloads the segments whose generation moved, in that order: a write
committed between the two leaves a segment newer than its generation, which the next query
reloads again, never older.

Example::

    facts = await mirror.bug_facts.current(conn)  # conn: a reader of mirror.db
    facts.bugs.columns["severity"], facts.codes["severity"].values
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

# Coded columns of a bug: read from the bug row, or from its test (LEFT JOIN: NULL without one).
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
# Numbers, not codes: the UTC day of a row's time (days since 1970-01-01; a bug's reported_at, a
# test's end_at) and its month (months since 1970-01), which the time buckets are made of;
# NO_TIME for a row without one.
TIME_COLUMNS = ("day", "month")
TIME_UNITS = ("day", "week", "month", "quarter")
NO_TIME = np.iinfo(np.int32).min

# From the index alone (migration 11 widened it for this): the rows hold the raw JSON, and
# reading them costs four times as much. The planner, without statistics, takes another index.
_BUGS_SQL = (
    f"SELECT {', '.join(BUG_COLUMNS)}, reported_at, id FROM bugs INDEXED BY bugs_for_stats "
    "WHERE deleted_at IS NULL AND product_id {product}"
)
_ENVIRONMENT = "json_extract(raw, '$.test_environment.title')"
# A bug reads its test's testing type, status and environment title, as the SQL dimensions do
# through ``LEFT JOIN tests t`` (whatever the test's deleted_at).
_TESTS_OF_BUGS_SQL = (
    f"SELECT id, testing_type, status, {_ENVIRONMENT} FROM tests "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
# The live tests of a product, for the test side; created and submitted: whether someone is named.
_TESTS_SQL = (
    f"SELECT product_id, id, testing_type, status, {_ENVIRONMENT}, created_by IS NOT NULL, "
    "submitted_by IS NOT NULL, end_at FROM tests WHERE deleted_at IS NULL AND product_id {product}"
)
# A live bug's platforms (bug_platforms) and custom report fields (bug_fields): rows of their own,
# read by the bug they belong to.
_PLATFORMS_SQL = (
    "SELECT bp.bug_id, bp.os, bp.browser, bp.category FROM bug_platforms bp "
    "JOIN bugs b ON b.id = bp.bug_id WHERE b.deleted_at IS NULL AND b.product_id {product}"
)
_FIELDS_SQL = (
    "SELECT bf.bug_id, bf.key, bf.value, bf.number FROM bug_fields bf "
    "JOIN bugs b ON b.id = bf.bug_id WHERE b.deleted_at IS NULL AND b.product_id {product}"
)
PLATFORM_COLUMNS = ("os", "browser", "category")
DETAIL_CODED = (*PLATFORM_COLUMNS, "field_key", "field_value")
_TEST_FEATURES_SQL = (
    "SELECT tf.test_id, tf.feature_id FROM test_features tf JOIN tests t ON t.id = tf.test_id "
    "WHERE t.deleted_at IS NULL AND t.product_id {product}"
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


@dataclass(frozen=True)
class Table:
    """Rows of one kind (bugs, or tests), a column each: codes, and the time numbers; once
    joined, the time buckets too (``joined``)."""

    columns: dict[str, Codes]
    moments: Times  # a bug's reported_at, a test's end_at; NaT: none
    # Per time unit, the number (days, weeks as their Monday's day, months, quarters since
    # 1970) of bucket code 1; column "<unit>_bucket" holds each row's code, 0 without a time.
    first_bucket: dict[str, int] = field(default_factory=dict)
    buckets: dict[str, int] = field(default_factory=dict)  # unit -> how many codes

    @property
    def size(self) -> int:
        return len(self.moments)

    def part(self, names: Sequence[str], start: int, stop: int) -> Table:
        """Rows ``start`` to ``stop`` of ``names`` (views of this table's arrays)."""
        return Table({n: self.columns[n][start:stop] for n in names}, self.moments[start:stop])

    @staticmethod
    def joined(tables: Sequence[Table], names: Sequence[str]) -> Table:
        """The tables one after another, with every row's time bucket of every unit."""
        if tables:
            columns = {n: np.concatenate([t.columns[n] for t in tables]) for n in names}
            moments = np.concatenate([t.moments for t in tables])
        else:
            columns = {n: np.zeros(0, np.int32) for n in names}
            moments = np.zeros(0, "datetime64[us]")
        first_bucket, buckets = {}, {}
        missing = columns["day"] == NO_TIME
        for unit in TIME_UNITS:
            numbers = columns["day" if unit in ("day", "week") else "month"].astype(np.int64)
            if unit == "week":  # back to the Monday: 1970-01-01 was a Thursday
                numbers = numbers - (numbers + 3) % 7
            elif unit == "quarter":
                numbers = numbers // 3
            first = int(numbers[~missing].min()) if not missing.all() else 0
            codes = np.where(missing, 0, numbers - first + 1).astype(np.int32)
            columns[f"{unit}_bucket"] = codes
            first_bucket[unit], buckets[unit] = first, int(codes.max(initial=0)) + 1
        return Table(columns, moments, first_bucket, buckets)


@dataclass(frozen=True)
class Segment:
    """One product's live bugs and tests, as loaded at ``generation``."""

    generation: int
    bugs: Table
    tests: Table
    # (test, feature) pairs of its tests: ``test_row`` a row of ``tests``, ``feature_id`` a code
    features: dict[str, Codes]
    # its bugs' platforms (bug_row, os, browser, category) and fields (bug_row, field_key,
    # field_value codes; number, NaN when not a number): ``bug_row`` a row of ``bugs``
    platforms: dict[str, Any]
    fields: dict[str, Any]


@dataclass(frozen=True)
class Facts:
    """Every live bug and test (the segments joined) and the values behind their codes."""

    bugs: Table
    tests: Table
    test_features: dict[str, Codes]  # test_row (a row of tests), feature_id (a code)
    codes: dict[str, Coding]
    platforms: dict[str, Any]  # bug_row (a row of bugs), os, browser, category (codes)
    fields: dict[str, Any]  # bug_row, field_key, field_value (codes), number (float, NaN)


class BugFacts:
    """The in-memory columns of one mirror's live bugs and tests, reloaded per product as it
    changes (a lock: one reload at a time, and a query waiting for it reads its result)."""

    def __init__(self) -> None:
        self._codes = {name: Coding() for name in (*CODED, *DETAIL_CODED)}
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
        rows = list(await conn.execute_fetchall(_TESTS_SQL.format(product=chosen)))
        by_column = list(zip(*rows, strict=True)) if rows else [()] * 8
        # What the product's bugs read of their tests: mostly these same tests.
        of_tests = {row[1]: (row[2], row[3], row[4]) for row in rows}
        bugs, bug_ids = await self._load_bugs(conn, chosen, of_tests)
        platforms, fields = await self._load_details(conn, chosen, bug_ids)
        columns = {
            name: self._coded(name, by_column[at])
            for at, name in enumerate(("product_id", "test_id", *TEST_COLUMNS))
        }
        for at, name in ((5, "created"), (6, "submitted")):
            columns[name] = np.array(by_column[at], np.int32)
        tests = _with_times(columns, by_column[7])
        row_of = {test_id: at for at, test_id in enumerate(by_column[1])}
        pairs = [
            (row_of[row[0]], row[1])
            for row in await conn.execute_fetchall(_TEST_FEATURES_SQL.format(product=chosen))
        ]
        test_rows, feature_ids = zip(*pairs, strict=True) if pairs else ((), ())
        features = {
            "test_row": np.array(test_rows, np.int32),
            "feature_id": self._coded("feature_id", feature_ids),
        }
        return Segment(generation, bugs, tests, features, platforms, fields)

    async def _load_bugs(
        self,
        conn: aiosqlite.Connection,
        chosen: str,
        of_tests: dict[int, tuple[Any, Any, Any]],
    ) -> tuple[Table, Sequence[int]]:
        """The product's bugs; ``of_tests``: the testing type, status and environment of its
        live tests by id (a bug's test that is not among them is read here)."""
        bugs = list(await conn.execute_fetchall(_BUGS_SQL.format(product=chosen)))
        by_column = list(zip(*bugs, strict=True)) if bugs else [()] * (len(BUG_COLUMNS) + 2)
        columns = {name: self._coded(name, by_column[at]) for at, name in enumerate(BUG_COLUMNS)}
        test_ids = by_column[BUG_COLUMNS.index("test_id")]
        tests = dict(of_tests)
        others = sorted({t for t in test_ids if t is not None and t not in tests})
        if others:  # a tombstoned test, or one of another product
            for row in await conn.execute_fetchall(_TESTS_OF_BUGS_SQL, (json.dumps(others),)):
                tests[row[0]] = (row[1], row[2], row[3])
        none = (None, None, None)
        of_test = list(zip(*(tests.get(t, none) for t in test_ids), strict=True)) or [()] * 3
        for at, name in enumerate(TEST_COLUMNS):
            columns[name] = self._coded(name, of_test[at])
        return _with_times(columns, by_column[len(BUG_COLUMNS)]), by_column[-1]

    async def _load_details(
        self, conn: aiosqlite.Connection, chosen: str, bug_ids: Sequence[int]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        row_of = {bug_id: at for at, bug_id in enumerate(bug_ids)}
        rows = list(await conn.execute_fetchall(_PLATFORMS_SQL.format(product=chosen)))
        by_column = list(zip(*rows, strict=True)) if rows else [()] * 4
        platforms: dict[str, Any] = {
            "bug_row": np.array([row_of[b] for b in by_column[0]], np.int32),
            **{n: self._coded(n, by_column[1 + at]) for at, n in enumerate(PLATFORM_COLUMNS)},
        }
        rows = list(await conn.execute_fetchall(_FIELDS_SQL.format(product=chosen)))
        by_column = list(zip(*rows, strict=True)) if rows else [()] * 4
        fields: dict[str, Any] = {
            "bug_row": np.array([row_of[b] for b in by_column[0]], np.int32),
            "field_key": self._coded("field_key", by_column[1]),
            "field_value": self._coded("field_value", by_column[2]),
            "number": np.array([np.nan if n is None else n for n in by_column[3]], np.float64),
        }
        return platforms, fields

    def _coded(self, name: str, values: Sequence[Any]) -> Codes:
        coding = self._codes[name]
        for value in set(values):  # new values get their codes once, not once per row
            coding.code(value)
        index = coding.index
        return np.fromiter(map(index.__getitem__, values), np.int32, len(values))

    def _joined(self) -> Facts:
        products = sorted(self._segments)
        segments = [self._segments[p] for p in products]
        bug_names = [*CODED, *TIME_COLUMNS]
        bugs = Table.joined([s.bugs for s in segments], bug_names)
        test_names = ["product_id", "test_id", *TEST_COLUMNS, "created", "submitted", *TIME_COLUMNS]
        tests = Table.joined([s.tests for s in segments], test_names)
        # Each segment now reads its rows from the joined arrays (views, not copies), so the
        # columns are held once; the next join copies them out of these views.
        at_bug = at_test = 0
        for product, segment in zip(products, segments, strict=True):
            self._segments[product] = Segment(
                segment.generation,
                bugs.part(bug_names, at_bug, at_bug + segment.bugs.size),
                tests.part(test_names, at_test, at_test + segment.tests.size),
                segment.features,
                segment.platforms,
                segment.fields,
            )
            at_bug += segment.bugs.size
            at_test += segment.tests.size
        offset = 0
        rows, features = [], []
        for segment in segments:  # a pair's test row counts from the first segment's first test
            rows.append(segment.features["test_row"] + offset)
            features.append(segment.features["feature_id"])
            offset += segment.tests.size
        pairs = {
            "test_row": np.concatenate(rows) if rows else np.zeros(0, np.int32),
            "feature_id": np.concatenate(features) if features else np.zeros(0, np.int32),
        }
        sizes = [s.bugs.size for s in segments]
        return Facts(
            bugs,
            tests,
            pairs,
            self._codes,
            _stacked([s.platforms for s in segments], sizes, ["bug_row", *PLATFORM_COLUMNS]),
            _stacked(
                [s.fields for s in segments],
                sizes,
                ["bug_row", "field_key", "field_value", "number"],
            ),
        )


def _stacked(
    parts: Sequence[dict[str, Any]], sizes: Sequence[int], names: Sequence[str]
) -> dict[str, Any]:
    """Rows of a bug's own kind (platforms, fields) one segment after another, ``bug_row``
    counted from the first segment's first bug."""
    if not parts:
        return {name: np.zeros(0, np.float64 if name == "number" else np.int32) for name in names}
    offsets = np.cumsum([0, *sizes[:-1]])
    return {
        name: np.concatenate(
            [
                part[name] + offset if name == "bug_row" else part[name]
                for part, offset in zip(parts, offsets, strict=True)
            ]
        )
        for name in names
    }


def _with_times(columns: dict[str, Codes], times: Sequence[str | None]) -> Table:
    """A table of ``columns`` and the times of its rows, with their day and month numbers.

    Stored times are fixed-width UTC text ending in Z (timefmt.to_db); numpy reads them without
    the Z. NULL becomes NaT, which compares false with every bound, as in SQL."""
    moments = np.array(["NaT" if t is None else t[:-1] for t in times], dtype="datetime64[us]")
    missing = np.isnat(moments)
    for name, unit in zip(TIME_COLUMNS, ("D", "M"), strict=True):
        numbers = moments.astype(f"datetime64[{unit}]").astype(np.int64)
        columns[name] = np.where(missing, NO_TIME, numbers).astype(np.int32)
    return Table(columns, moments)
