"""What both sides of the in-memory metrics share (``metrics_engine``: bugs,
``metrics_engine_tests``: tests): group keys made of column codes or time buckets, group numbers
from up to two keys, distinct (group, value) pairs, and the rows a filter keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from testio_mirror.store.bug_facts import TIME_UNITS, Codes, Coding, Table
from testio_mirror.store.sqlite.timefmt import to_db

Ints = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Key = tuple[Any, ...]
Group = dict[str, Any]
KeyCodes = tuple[Ints, int, Callable[[int], Any]]  # codes 0..size-1, size, code -> key value
TIME_DIMENSIONS = TIME_UNITS
DIRECT_GROUPS = 1 << 18  # fewer possible groups: counted in place, without sorting the keys
_EPOCH = date(1970, 1, 1)


class Kept(dict[str, Any]):
    """The kept rows' values of a column (``rows``: a mask or row numbers; None: all), taken
    when first asked for (a query reads a few of the columns; each costs ~1.5 ms per 300,000
    rows)."""

    def __init__(self, columns: dict[str, Codes], rows: Mask | Ints | None) -> None:
        super().__init__()
        self._columns = columns
        self._rows = rows

    def __missing__(self, name: str) -> Any:
        values = self._columns[name]
        found = values if self._rows is None else values[self._rows]
        self[name] = found
        return found


def among(
    keep: Mask, table: Table, codes: dict[str, Coding], column: str, wanted: Sequence[Any] | None
) -> None:
    """Narrow ``keep`` to rows whose ``column`` is one of ``wanted`` (SQL ``IN``); values no
    row holds have no code, and ``isin`` of none keeps nothing."""
    if wanted:
        found = np.array(codes[column].codes_of(wanted), np.int32)
        keep &= np.isin(table.columns[column], found)


def in_period(keep: Mask, table: Table, since: datetime | None, until: datetime | None) -> None:
    """Narrow ``keep`` to rows whose time is in [since, until) (a row without one: never)."""
    if since is not None:
        keep &= table.moments >= _moment(since)
    if until is not None:
        keep &= table.moments < _moment(until)


def _moment(moment: datetime) -> np.datetime64:
    text = to_db(moment)  # the stored form (clamped to datetime's range), less its Z
    assert text is not None
    return np.datetime64(text[:-1], "us")


def coded_key(values: list[Any], codes: Any, known: bool = False) -> KeyCodes:
    """A key read from a coded column: ``values`` by code (code 0: NULL)."""
    if known:  # CASE b.known WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
        return codes, len(values), lambda c: _KNOWN.get(values[c])
    return codes, len(values), values.__getitem__


_KNOWN = {1: "true", 0: "false"}


def time_key(unit: str, cols: dict[str, Any], table: Table) -> KeyCodes:
    """The row's bucket of ``unit`` (``Table.joined`` numbered them: code 0 is the NULL bucket
    of a row without a time); keys as the SQL writes them."""
    first = table.first_bucket[unit]
    written: dict[int, str | None] = {0: None}  # thousands of groups share a few buckets

    def decode(code: int) -> str | None:
        found = written.get(code, _UNWRITTEN)
        if found is _UNWRITTEN:
            found = written[code] = _bucket_text(unit, first + code - 1)
        return found

    return cols[f"{unit}_bucket"], table.buckets[unit], decode


_UNWRITTEN = ""  # no bucket's text is empty


def _bucket_text(unit: str, number: int) -> str:
    if unit in ("day", "week"):
        return (_EPOCH + timedelta(days=number)).isoformat()
    if unit == "month":
        return f"{1970 + number // 12:04d}-{number % 12 + 1:02d}"
    return f"{1970 + number // 4:04d}-Q{number % 4 + 1}"


def _no_key(_: int) -> None:
    return None


def groups_of(keys: Sequence[KeyCodes], size: int) -> tuple[Ints, int, Callable[[int], Key]]:
    """A group number per row (0..count-1), the count, and the key of each group number.

    Two keys' codes make one number (first * size of second + second); when that many groups
    could exist they are counted in place, else the numbers in use are ranked first."""
    if not keys:
        return np.zeros(size, np.int64), 1, lambda _: ()
    first, first_size, first_key = keys[0]
    second, second_size, second_key = (
        keys[1] if len(keys) == 2 else (np.zeros(size, np.int64), 1, _no_key)
    )
    numbers: Ints = first.astype(np.int64) * second_size + second
    width = len(keys)

    def key_of(number: int) -> Key:
        both = (first_key(number // second_size), second_key(number % second_size))
        return both[:width]

    if first_size * second_size <= DIRECT_GROUPS:
        return numbers, first_size * second_size, key_of
    used, group = np.unique(numbers, return_inverse=True)
    return group.astype(np.int64), len(used), lambda at: key_of(int(used[at]))


def distinct_pairs(group: Ints, values: Any, size: int) -> Ints:
    """The distinct (group, value) pairs of non-NULL values (code 0), as numbers in order
    (group * size + value): counted in place when that many could exist, else sorted out."""
    numbers = group * size + values  # int64: the groups' numbers are
    possible = (int(group.max()) + 1) * size if len(group) else 0
    if possible <= DIRECT_GROUPS * 4:
        counted = np.bincount(numbers, minlength=possible)
        counted[::size] = 0  # value code 0: NULL, which no distinct count counts
        found: Ints = np.flatnonzero(counted)
        return found
    return distinct(numbers[values != 0])


def distinct(numbers: Ints) -> Ints:
    """The distinct numbers in order. By sorting: numpy 2's ``unique`` hashes instead, ten
    times slower on a few hundred thousand numbers (155 ms against 16 for 360,000)."""
    ordered = np.sort(numbers)
    if len(ordered) == 0:
        return ordered
    first = np.empty(len(ordered), np.bool_)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    found: Ints = ordered[first]
    return found


def sets_of(pairs: Ints, size: int, values: list[Any]) -> dict[int, frozenset[str]]:
    """Per group, the distinct values of its pairs as text (SQL's group_concat(DISTINCT ...))."""
    found: dict[int, set[str]] = {}
    for pair in pairs.tolist():
        found.setdefault(pair // size, set()).add(str(values[pair % size]))
    return {at: frozenset(members) for at, members in found.items()}


def answered(
    dimensions: Sequence[str],
    aggregates: Sequence[str],
    result: dict[str, Any],
    rows: Ints,
    decode: Callable[[int], Key],
) -> dict[Key, Group]:
    """The groups with a row (with no dimension: the one group, even empty) and their values,
    as SQL's GROUP BY gives them; ``rows``: the count of rows per group number."""
    present = np.flatnonzero(rows) if dimensions else np.zeros(1, np.int64)
    columns = [_at(result[name], present) for name in aggregates]
    return {
        decode(at): dict(zip(aggregates, values, strict=True))
        for at, *values in zip(present.tolist(), *columns, strict=True)
    }


def _at(values: Any, present: Ints) -> list[Any]:
    """An aggregate's values of the groups present, as Python values."""
    if isinstance(values, dict):  # sets: only the groups that have a value
        return [values.get(at, frozenset()) for at in present.tolist()]
    taken: list[Any] = values[present].tolist()
    if values.dtype.kind == "f":  # NaN: a field's sum, min or max over no number (SQL's NULL)
        return [None if value != value else value for value in taken]
    return taken
