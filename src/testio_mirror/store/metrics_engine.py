"""The bug side of ``query_metrics`` over the in-memory columns (``store/bug_facts.py``).

It answers what ``metrics_sql.grouped_sql`` answers over bugs, group for group and value for
value (tests/store/test_metrics_engine.py holds the two to each other on random queries), for
every dimension and aggregate listed here; a query naming another (platforms, custom report
fields) is answered by SQL. The steps: a mask of the bugs the filter keeps; a group number per
bug from the dimensions' codes; counts per group with ``numpy.bincount``; distinct counts over
the unique (group, value) pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from testio_mirror.store.bug_facts import NO_TIME, Codes, Facts
from testio_mirror.store.metrics_sql import MetricsFilter
from testio_mirror.store.metrics_vocabulary import SEVERITY_WEIGHTS
from testio_mirror.store.sqlite.timefmt import to_db

Ints = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Key = tuple[Any, ...]
Group = dict[str, Any]

# Dimension name -> the coded column its key is.
CODED_DIMENSIONS = {
    "product": "product_id",
    "feature": "feature_id",
    "test": "test_id",
    "tester": "author",
    "severity": "severity",
    "status": "status",
    "testing_type": "testing_type",
    "test_status": "test_status",
    "rejection_reason": "reject_reason",
    "test_environment": "test_environment",
    "known": "known",
}
TIME_DIMENSIONS = ("day", "week", "month", "quarter")
_DIRECT_GROUPS = 1 << 18  # fewer possible groups: counted in place, without sorting the keys
_EPOCH = date(1970, 1, 1)


def supports(dimensions: Sequence[str], aggregates: Sequence[str]) -> bool:
    """Whether the columns answer these (else SQL does)."""
    return all(d in CODED_DIMENSIONS or d in TIME_DIMENSIONS for d in dimensions) and all(
        a in _AGGREGATES for a in aggregates
    )


def grouped(
    facts: Facts, dimensions: Sequence[str], aggregates: Sequence[str], chosen: MetricsFilter
) -> dict[Key, Group]:
    """Every group with a bug (with no dimension: the one group, even empty) and its
    aggregates, as ``grouped_sql("bugs", ...)`` would give them."""
    keep = _kept(facts, chosen)
    size = int(np.count_nonzero(keep))
    cols = _Kept(facts.columns, None if size == facts.size else keep)
    keys = [_key_codes(facts, name, cols, keep) for name in dimensions]
    group, count, decode = _groups(keys, size)
    result = {name: _AGGREGATES[name](facts, cols, group, count) for name in aggregates}
    bugs = result["bugs"] if "bugs" in result else np.bincount(group, minlength=count)
    present = np.flatnonzero(bugs) if dimensions else np.zeros(1, np.int64)
    columns = [_at(result[name], present) for name in aggregates]
    return {
        decode(at): dict(zip(aggregates, values, strict=True))
        for at, *values in zip(present.tolist(), *columns, strict=True)
    }


class _Kept(dict[str, Any]):
    """The kept bugs' values of a column, masked when first asked for (a query reads a few of
    the columns; masking each costs ~1.5 ms per 300,000 bugs)."""

    def __init__(self, columns: dict[str, Codes], keep: Mask | None) -> None:
        super().__init__()
        self._columns = columns
        self._keep = keep

    def __missing__(self, name: str) -> Codes:
        values = self._columns[name]
        found = values if self._keep is None else values[self._keep]
        self[name] = found
        return found


def _at(values: Any, present: Ints) -> list[Any]:
    """An aggregate's values of the groups present, as Python values."""
    if isinstance(values, dict):  # sets: only the groups that have a value
        return [values.get(at, frozenset()) for at in present.tolist()]
    taken: list[Any] = values[present].tolist()
    return taken


def _kept(facts: Facts, chosen: MetricsFilter) -> Mask:
    """The bugs ``chosen`` keeps (the conditions of ``grouped_sql``'s bug query)."""
    keep: Mask = np.ones(facts.size, np.bool_)
    wanted: list[tuple[str, Sequence[Any] | None]] = [
        ("product_id", chosen.product_ids),
        ("feature_id", chosen.feature_ids),
        ("test_id", chosen.test_ids),
        ("testing_type", chosen.testing_types),
        ("severity", chosen.severities),
        ("status", chosen.statuses),
        ("author", chosen.testers),
        ("known", None if chosen.known is None else [int(chosen.known)]),
    ]
    for column, values in wanted:
        if values:  # values no bug holds have no code: isin of none keeps nothing
            codes = np.array(facts.codes[column].codes_of(values), np.int32)
            keep &= np.isin(facts.columns[column], codes)
    if chosen.since is not None:
        keep &= facts.reported_at >= _moment(chosen.since)
    if chosen.until is not None:
        keep &= facts.reported_at < _moment(chosen.until)
    return keep


def _moment(moment: datetime) -> np.datetime64:
    text = to_db(moment)  # the stored form (clamped to datetime's range), less its Z
    assert text is not None
    return np.datetime64(text[:-1], "us")


KeyCodes = tuple[Ints, int, Callable[[int], Any]]  # codes 0..size-1, size, code -> key value


def _key_codes(facts: Facts, name: str, cols: dict[str, Any], keep: Mask) -> KeyCodes:
    if name not in CODED_DIMENSIONS:
        return _time_codes(name, cols)
    column = CODED_DIMENSIONS[name]
    values = facts.codes[column].values
    if name == "known":  # CASE b.known WHEN 1 THEN 'true' WHEN 0 THEN 'false' END
        return cols[column], len(values), lambda c: _KNOWN.get(values[c])
    return cols[column], len(values), values.__getitem__


_KNOWN = {1: "true", 0: "false"}


def _time_codes(unit: str, cols: dict[str, Any]) -> KeyCodes:
    """Buckets as numbers (days since 1970, or months, or quarters), offset so the first is 1;
    0 is the NULL bucket of a bug without reported_at."""
    numbers = cols["reported_day" if unit in ("day", "week") else "reported_month"]
    missing = numbers == NO_TIME
    numbers = numbers.astype(np.int64)
    if unit == "week":  # back to the Monday: 1970-01-01 was a Thursday
        numbers = numbers - (numbers + 3) % 7
    elif unit == "quarter":
        numbers = numbers // 3
    if missing.all():
        return np.zeros(len(numbers), np.int64), 1, lambda _: None
    first = int(numbers[~missing].min())
    codes: Ints = np.where(missing, 0, numbers - first + 1)

    def decode(code: int) -> str | None:
        if code == 0:
            return None
        number = first + code - 1
        if unit in ("day", "week"):
            return (_EPOCH + timedelta(days=number)).isoformat()
        if unit == "month":
            return f"{1970 + number // 12:04d}-{number % 12 + 1:02d}"
        return f"{1970 + number // 4:04d}-Q{number % 4 + 1}"

    return codes, int(codes.max()) + 1, decode


def _no_second(size: int) -> KeyCodes:
    return np.zeros(size, np.int64), 1, _no_key


def _no_key(_: int) -> None:
    return None


def _groups(keys: Sequence[KeyCodes], size: int) -> tuple[Ints, int, Callable[[int], Key]]:
    """A group number per bug (0..count-1), the count, and the key of each group number.

    Two keys' codes make one number (first * size of second + second); when that many groups
    could exist they are counted in place, else the numbers in use are ranked first."""
    if not keys:
        return np.zeros(size, np.int64), 1, lambda _: ()
    first, first_size, first_key = keys[0]
    second, second_size, second_key = keys[1] if len(keys) == 2 else _no_second(size)
    numbers: Ints = first.astype(np.int64) * second_size + second
    width = len(keys)

    def key_of(number: int) -> Key:
        both = (first_key(number // second_size), second_key(number % second_size))
        return both[:width]

    if first_size * second_size <= _DIRECT_GROUPS:
        return numbers, first_size * second_size, key_of
    used, group = np.unique(numbers, return_inverse=True)
    return group.astype(np.int64), len(used), lambda at: key_of(int(used[at]))


def _coded(facts: Facts, column: str, value: Any) -> int:
    return facts.codes[column].index.get(value, -1)  # -1: no bug holds it


def _where(cols: dict[str, Any], group: Ints, count: int, condition: Mask) -> Ints:
    return np.bincount(group[condition], minlength=count)


def _status(name: str) -> Callable[[Facts, dict[str, Any], Ints, int], Ints]:
    def counted(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
        return _where(cols, group, count, cols["status"] == _coded(facts, "status", name))

    return counted


def _bugs(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    return np.bincount(group, minlength=count)


def _auto_accepted(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    accepted = cols["status"] == _coded(facts, "status", "accepted")
    automatic = cols["auto_accepted"] == _coded(facts, "auto_accepted", 1)
    return _where(cols, group, count, accepted & automatic)


def _critical(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    return _where(cols, group, count, cols["severity"] == _coded(facts, "severity", "critical"))


def _severity_points(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    weights = np.array(
        [
            SEVERITY_WEIGHTS.get(v, 0) if isinstance(v, str) else 0
            for v in facts.codes["severity"].values
        ],
        np.float64,
    )
    points = np.bincount(group, weights=weights[cols["severity"]], minlength=count)
    return np.rint(points).astype(np.int64)


def _pairs(cols: dict[str, Any], group: Ints, column: str, facts: Facts) -> tuple[Ints, int]:
    """The distinct (group, value) pairs of a column's non-NULL values, as numbers in order
    (group * size + value): marked in place when that many could exist, else sorted out."""
    values = cols[column].astype(np.int64)
    size = len(facts.codes[column].values)
    held = values != 0
    numbers = group[held] * size + values[held]
    possible = (int(group.max()) + 1) * size if len(group) else 0
    if possible <= _DIRECT_GROUPS * 4:
        seen = np.zeros(possible, np.bool_)
        seen[numbers] = True
        return np.flatnonzero(seen), size
    return np.unique(numbers), size


def _testers(facts: Facts, cols: dict[str, Any], group: Ints, count: int) -> Ints:
    pairs, size = _pairs(cols, group, "author", facts)
    return np.bincount(pairs // size, minlength=count)


def _bug_features(
    facts: Facts, cols: dict[str, Any], group: Ints, count: int
) -> dict[int, frozenset[str]]:
    pairs, size = _pairs(cols, group, "feature_id", facts)
    values = facts.codes["feature_id"].values
    found: dict[int, set[str]] = {}
    for pair in pairs.tolist():
        found.setdefault(pair // size, set()).add(str(values[pair % size]))
    return {at: frozenset(features) for at, features in found.items()}


_AGGREGATES: dict[str, Callable[[Facts, dict[str, Any], Ints, int], Any]] = {
    "bugs": _bugs,
    "accepted": _status("accepted"),
    "rejected": _status("rejected"),
    "forwarded": _status("forwarded"),
    "auto_accepted": _auto_accepted,
    "critical": _critical,
    "severity_points": _severity_points,
    "testers": _testers,
    "bug_features": _bug_features,
}
