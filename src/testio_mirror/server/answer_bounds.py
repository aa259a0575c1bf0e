"""Keeping a tool's answer under its byte ceiling (``TESTIO_MAX_ANSWER_BYTES``).

An agent's context is finite, and one answer should never fill it. A list answer keeps as many
items from the start of its list as fit, and its ``next_cursor`` goes on right after the last one
kept, so paging loses and repeats nothing; a single answer (one bug, one test) keeps every field
and has its longest texts cut, each ending in "…". Either way ``truncated`` is true and ``hint``
says what was cut and how to get the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

# Texts this short are never cut: titles, names, statuses stay whole.
SHORTEST_CUT = 100
_NEVER_CUT = frozenset({"hint", "next_cursor", "query"})
_MAX_STEPS = 500  # each step shortens one text; a bound, not an expectation
ELLIPSIS = "…"


def fit(
    data: dict[str, Any],
    max_bytes: int,
    *,
    list_field: str | None,
    cursors: Sequence[str] | None,
    advice: str = "",
) -> bytes:
    """Cut ``data`` (an answer's JSON object, changed in place) to at most ``max_bytes`` bytes of
    compact JSON, and give that JSON. ``list_field`` names the answer's list, ``cursors[i]`` is
    the cursor right after its item ``i`` (None when the list has no cursor), ``advice`` a
    clause ending the hint ("or a smaller limit").

    When even the first item alone, its texts cut, cannot fit (a ceiling far below any answer),
    the answer comes back as small as it got."""
    data["truncated"] = True
    items = data.get(list_field) if list_field else None
    hint = ""
    if isinstance(items, list) and items and list_field is not None:
        kept = _items_that_fit(data, list_field, items, max_bytes, cursors, advice)
        while True:
            hint = _keep(data, list_field, items, kept, cursors, advice, max_bytes)
            raw = orjson.dumps(data)
            if len(raw) <= max_bytes or kept == 1:
                break
            kept -= 1
        if len(raw) <= max_bytes:
            return raw
    before = data.get("hint")
    texts = f"long texts were cut (ending in {ELLIPSIS}) to stay under {max_bytes} bytes"
    data["hint"] = f"{hint}; {texts}" if hint else texts  # in place first: it counts too
    raw, cut = _shorten_texts(data, max_bytes)
    if not cut:
        data["hint"] = before
        raw = orjson.dumps(data)
    return raw


def _keep(
    data: dict[str, Any],
    list_field: str,
    items: list[Any],
    kept: int,
    cursors: Sequence[str] | None,
    advice: str,
    max_bytes: int,
) -> str:
    """Keep the first ``kept`` items; the hint it sets (empty when every item is kept)."""
    data[list_field] = items[:kept]
    if kept == len(items):
        return ""
    shown = f"cut to the first {kept} of {len(items)} {list_field} to stay under {max_bytes} bytes"
    if cursors:
        data["next_cursor"] = cursors[kept - 1]
        hint = f"{shown}: call again with cursor set to next_cursor for the rest"
    else:
        hint = shown
    hint += f" ({advice})" if advice else ""
    data["hint"] = hint
    return hint


def _items_that_fit(
    data: dict[str, Any],
    list_field: str,
    items: list[Any],
    max_bytes: int,
    cursors: Sequence[str] | None,
    advice: str,
) -> int:
    """How many items from the start fit beside the rest of the answer (at least one): summed
    from each item's size, without dumping the answer once per candidate."""
    _keep(data, list_field, items, 1, cursors, advice, max_bytes)
    data[list_field] = []
    budget = max_bytes - len(orjson.dumps(data))
    used = 0
    kept = 0
    for item in items:
        size = len(orjson.dumps(item)) + (1 if kept else 0)  # the comma between items
        if used + size > budget:
            break
        used += size
        kept += 1
    return max(kept, 1)


def _shorten_texts(data: dict[str, Any], max_bytes: int) -> tuple[bytes, bool]:
    """Cut the longest texts (and lists of plain values, such as steps) until the answer fits;
    its JSON and whether anything was cut."""
    raw = orjson.dumps(data)
    cut = False
    for _ in range(_MAX_STEPS):
        if len(raw) <= max_bytes:
            break
        longest = _longest(data)
        if longest is None:
            break
        container, key, value, size = longest
        # Drop about the share of the value that the excess is, plus the ellipsis' few bytes.
        share = (len(raw) - max_bytes + 8) / size
        drop = max(1, math.ceil(len(value) * share))
        if isinstance(value, str):
            container[key] = value[: max(SHORTEST_CUT, len(value) - drop)].rstrip() + ELLIPSIS
        else:
            container[key] = value[: max(1, len(value) - drop)]
        cut = True
        raw = orjson.dumps(data)
    return raw, cut


def _longest(node: Any) -> tuple[Any, Any, Any, int] | None:
    """(container, key, value, size in bytes) of the largest value that can still be cut."""
    best: tuple[Any, Any, Any, int] | None = None

    def consider(container: Any, key: Any, value: Any) -> None:
        nonlocal best
        cuttable = (isinstance(value, str) and len(value) > SHORTEST_CUT + 1) or (
            isinstance(value, list)
            and len(value) > 1
            and not any(isinstance(v, dict | list) for v in value)
        )
        if cuttable:
            size = len(orjson.dumps(value))
            if best is None or size > best[3]:
                best = (container, key, value, size)
        elif isinstance(value, dict | list):
            walk(value)

    def walk(container: Any) -> None:
        if isinstance(container, dict):
            for key, value in container.items():
                if key not in _NEVER_CUT:
                    consider(container, key, value)
        else:
            for index, value in enumerate(container):
                consider(container, index, value)

    walk(node)
    return best
