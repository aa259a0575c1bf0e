"""Ids gathered into one column of a row with ``group_concat`` (a test's features, a product's
sections), so they come back with the row in the same statement, and read back here."""

from __future__ import annotations


def ids_from_group_concat(text: str | None) -> list[int]:
    """The ids a ``group_concat`` column holds, ascending; ``[]`` when there are none (NULL)."""
    return sorted(int(part) for part in text.split(",")) if text else []
