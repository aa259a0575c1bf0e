"""Custom report fields in the ``query_metrics`` vocabulary: names made of a pattern and a key.

``custom_field:<key>`` groups bugs by the value of their report's field ``<key>``;
``field_count:<key>``, ``field_sum:``, ``field_mean:``, ``field_min:``, ``field_max:`` are
metrics over its numeric values (``bug_fields.number``: blank and non-numeric values left out).
The vocabulary stays closed: a name matches ``CUSTOM_FIELD_PATTERN`` or ``FIELD_METRIC_PATTERN``
(the key is lowercase letters, digits and ``_``), and ``metrics.py`` refuses a key no live bug
of the mirror carries, listing the known ones. The key is bound as a parameter; the SQL reads
the alias ``{field}`` of its ``bug_fields`` row, which ``metrics_sql`` names (``cf0``, ...).

Example::

    dimension("custom_field:customer_impact")  # a Dimension with field_key "customer_impact"
    metric("field_mean:affected_users").uses   # ("field_sum:affected_users", ...)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from testio_mirror.store.metrics_vocabulary import (
    DIMENSIONS,
    METRICS,
    Aggregate,
    Dimension,
    Metric,
    Partials,
    Value,
)

FIELD_KEY = "[a-z0-9_]{1,64}"
CUSTOM_FIELD_PATTERN = f"^custom_field:{FIELD_KEY}$"
FIELD_METRIC_PATTERN = f"^field_(count|sum|mean|min|max):{FIELD_KEY}$"
CUSTOM_FIELD = Dimension(
    "custom_field:<key>",
    "the value of the custom report field <key> (as text; keys: get_bug's custom_fields); "
    "bugs without the field, or with it left blank, are in the null group",
    "NULLIF({field}.value, '')",
    None,
)

_FIELD_AGGREGATES = {
    "count": Aggregate("bugs", "count({field}.number)"),
    "sum": Aggregate("bugs", "sum({field}.number)"),
    "min": Aggregate("bugs", "min({field}.number)", additive=False),
    "max": Aggregate("bugs", "max({field}.number)", additive=False),
}


def _whole(partials: Partials, name: str) -> int:
    found = partials.get(name)
    return int(found) if isinstance(found, int | float) else 0


def _number(name: str) -> Callable[[Partials], Value]:
    def value(p: Partials) -> Value:
        found = p.get(name)
        return round(float(found), 4) if isinstance(found, int | float) else None

    return value


def _mean(total: str, count: str) -> Callable[[Partials], Value]:
    def value(p: Partials) -> Value:
        found, under = p.get(total), _whole(p, count)
        return round(float(found) / under, 4) if isinstance(found, int | float) and under else None

    return value


_NUMERIC = "numeric values of the custom field <key> (blank and non-numeric values left out)"
# field_<kind>:<key>: (definition, the aggregates' kinds it is made of, denominator)
_FIELD_METRICS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "count": (f"how many bugs in scope hold one of the {_NUMERIC}", ("count",), None),
    "sum": (f"the sum of the {_NUMERIC}", ("sum",), None),
    "mean": (
        f"the mean of the {_NUMERIC}: field_sum / field_count",
        ("sum", "count"),
        "field_count",
    ),
    "min": (f"the smallest of the {_NUMERIC}", ("min",), None),
    "max": (f"the largest of the {_NUMERIC}", ("max",), None),
}


def _field(pattern: str, name: str) -> tuple[str, str] | None:
    """(kind, key) of a custom field name: ``custom_field:<key>`` or ``field_<kind>:<key>``."""
    if not re.fullmatch(pattern, name):
        return None
    head, key = name.split(":", 1)
    return head.removeprefix("field_"), key


def dimension(name: str) -> Dimension | None:
    """The dimension called ``name`` (``custom_field:<key>`` included), None when unknown."""
    if name in DIMENSIONS:
        return DIMENSIONS[name]
    found = _field(CUSTOM_FIELD_PATTERN, name)
    return None if found is None else replace(CUSTOM_FIELD, name=name, field_key=found[1])


def field_aggregate(name: str) -> Aggregate:
    """The aggregate of a field metric called ``name`` (``field_sum:<key>``).

    Raises:
        KeyError: no such aggregate.
    """
    found = _field(f"^field_({'|'.join(_FIELD_AGGREGATES)}):{FIELD_KEY}$", name)
    if found is None:
        raise KeyError(name)
    return replace(_FIELD_AGGREGATES[found[0]], field_key=found[1])


def metric(name: str) -> Metric | None:
    """The metric called ``name`` (``field_mean:<key>`` and the like included), None when
    unknown."""
    if name in METRICS:
        return METRICS[name]
    found = _field(FIELD_METRIC_PATTERN, name)
    if found is None:
        return None
    kind, key = found
    words, parts, denominator = _FIELD_METRICS[kind]
    uses = tuple(f"field_{part}:{key}" for part in parts)
    if kind == "mean":
        compute = _mean(*uses)
    elif kind == "count":
        compute = functools.partial(_whole, name=uses[0])
    else:
        compute = _number(uses[0])
    return Metric(name, words.replace("<key>", key), uses, compute, denominator)


def field_keys(names: Sequence[str]) -> list[str]:
    """The custom field keys ``names`` (dimensions, metrics) read, in first-seen order."""
    keys: dict[str, None] = {}
    for name in names:
        found = _field(CUSTOM_FIELD_PATTERN, name) or _field(FIELD_METRIC_PATTERN, name)
        if found is not None:
            keys[found[1]] = None
    return list(keys)


def field_metric_forms() -> list[Metric]:
    """One metric of each field kind, named ``field_<kind>:<key>`` (docs and the resource)."""
    forms = []
    for kind in _FIELD_METRICS:
        found = metric(f"field_{kind}:key")
        assert found is not None
        forms.append(
            replace(found, name=f"field_{kind}:<key>", description=_FIELD_METRICS[kind][0])
        )
    return forms
