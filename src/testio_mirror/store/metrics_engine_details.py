"""A bug's platforms and custom report fields in the in-memory metrics (``metrics_engine``), as
``grouped_sql`` reads them from ``bug_platforms`` and ``bug_fields``.

- Platforms: SQL joins each bug to the distinct values its platform rows hold of the columns
  asked for (``SELECT DISTINCT bug_id, os, ...``; a bug without one: one row of NULLs), so a bug
  is in each of its groups once. Here: the kept bugs' platform rows, their distinct (bug,
  values) combinations, and a row of NULLs for each kept bug with none.
- Fields: a bug holds at most one row per key, so a field is a column of the bug: its value
  (``NULLIF(value, '')``, the group key of ``custom_field:<key>``) and its number (the
  ``field_<kind>:<key>`` aggregates, over the bugs whose value is a number).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from testio_mirror.store.bug_facts import Facts
from testio_mirror.store.metrics_columns import Ints, Mask, distinct

# Dimension name -> the bug_platforms column it reads.
PLATFORM_DIMENSIONS = {"platform": "os", "browser": "browser", "device_category": "category"}
FIELD_DIMENSION = "custom_field:"
FIELD_KINDS = ("count", "sum", "min", "max")


def field_of(name: str) -> tuple[str, str] | None:
    """(kind, key) of a field aggregate ``field_<kind>:<key>``, ("value", key) of a dimension
    ``custom_field:<key>``, else None."""
    if name.startswith(FIELD_DIMENSION):
        return "value", name.removeprefix(FIELD_DIMENSION)
    head, _, key = name.partition(":")
    kind = head.removeprefix("field_")
    if head.startswith("field_") and kind in FIELD_KINDS and key:
        return kind, key
    return None


def value_column(key: str) -> str:
    return f"field:{key}:value"


def number_column(key: str) -> str:
    return f"field:{key}:number"


def with_fields(facts: Facts, keys: Sequence[str]) -> dict[str, Any]:
    """The bug columns, plus each key's value codes (0: no value, or "") and numbers (NaN)."""
    columns: dict[str, Any] = dict(facts.bugs.columns)
    fields = facts.fields
    values = facts.codes["field_value"]
    blank = values.index.get("", -1)
    for key in keys:
        code = facts.codes["field_key"].index.get(key, -1)
        mine = fields["field_key"] == code
        rows = fields["bug_row"][mine]
        value = np.zeros(facts.bugs.size, np.int32)
        found = fields["field_value"][mine]
        value[rows] = np.where(found == blank, 0, found)  # NULLIF(value, '')
        number = np.full(facts.bugs.size, np.nan)
        number[rows] = fields["number"][mine]
        columns[value_column(key)] = value
        columns[number_column(key)] = number
    return columns


def platform_rows(facts: Facts, keep: Mask, wanted: Sequence[str]) -> tuple[Ints, dict[str, Any]]:
    """The rows a platform grouping counts: the bug of each row, and each platform column of
    ``wanted`` (bug_platforms' names) per row."""
    platforms = facts.platforms
    held = keep[platforms["bug_row"]]
    bug_rows = platforms["bug_row"][held].astype(np.int64)
    sizes = [len(facts.codes[column].values) for column in wanted]
    numbers = bug_rows
    for column, size in zip(wanted, sizes, strict=True):
        numbers = numbers * size + platforms[column][held]
    combinations = distinct(numbers)  # one row per bug and combination of the values asked
    values: dict[str, Any] = {}
    rest = combinations
    for column, size in reversed(list(zip(wanted, sizes, strict=True))):
        values[column] = (rest % size).astype(np.int32)
        rest = rest // size
    covered = np.zeros(facts.bugs.size, np.bool_)
    covered[rest] = True
    alone = np.flatnonzero(keep & ~covered)  # kept bugs without a platform row: NULLs
    rows = np.concatenate([rest, alone])
    for column in wanted:
        values[column] = np.concatenate([values[column], np.zeros(len(alone), np.int32)])
    return rows, values


def field_aggregate(kind: str, numbers: Any, group: Ints, count: int) -> Any:
    """count, sum, min or max of the numbers per group (NaN where a group has none: SQL's
    NULL, except count's 0)."""
    held = ~np.isnan(numbers)
    groups, values = group[held], numbers[held]
    counted = np.bincount(groups, minlength=count)
    if kind == "count":
        return counted
    if kind == "sum":
        found = np.bincount(groups, weights=values, minlength=count).astype(np.float64)
    else:
        found = np.full(count, np.inf if kind == "min" else -np.inf)
        (np.minimum if kind == "min" else np.maximum).at(found, groups, values)
    return np.where(counted > 0, found, np.nan)
