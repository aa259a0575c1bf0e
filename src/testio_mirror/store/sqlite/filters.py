"""Building WHERE clauses from optional filters, with every value bound as a parameter.

Example::

    where = Where()
    where.equal("product_id", product_id)       # skipped when product_id is None
    where.among("status", statuses)             # skipped when empty
    where.since("end_at", since)                # end_at >= since
    where.keyset("end_at", cursor)              # rows after the cursor, newest first
    sql = f"SELECT * FROM tests{where.sql}"     # " WHERE ... AND ..."
    rows = await conn.execute_fetchall(sql, where.params)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from testio_mirror.errors import CursorError
from testio_mirror.store.sqlite.cursor import decode_cursor
from testio_mirror.store.sqlite.timefmt import to_db


def newest(column: str, id_column: str = "id") -> str:
    """`` ORDER BY`` newest first, the order ``Where.keyset`` pages through."""
    return f" ORDER BY {column} DESC, {id_column} DESC"


class Where:
    """Conditions joined with AND; column names are the store's own, values always bound."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def equal(self, column: str, value: Any) -> None:
        if value is not None:
            self.add(f"{column} = ?", value)

    def among(self, column: str, values: Sequence[Any] | None) -> None:
        if values:
            self.add(f"{column} IN ({','.join('?' * len(values))})", *values)

    def since(self, column: str, moment: datetime | None) -> None:
        if moment is not None:
            self.add(f"{column} >= ?", to_db(moment))

    def until(self, column: str, moment: datetime | None) -> None:
        if moment is not None:
            self.add(f"{column} < ?", to_db(moment))

    def keyset(self, column: str, id_column: str, cursor: str | None) -> None:
        """Rows after the cursor in ``ORDER BY column DESC, id DESC`` (the order ``newest()``
        writes; SQLite sorts NULL lowest, so rows without a time come last). Written without
        functions on the column, so the ``(..., column DESC, id DESC)`` indexes serve the order.

        Raises:
            CursorError: a cursor this mirror did not hand out.
        """
        if cursor is None:
            return
        value, last_id = decode_cursor(cursor)
        if value.startswith("@"):  # a scoped cursor (cursor.encode_position): another listing's
            raise CursorError("invalid cursor: pass back the next_cursor of a previous answer")
        if value == "":  # the cursor stopped among the rows without a time
            self.add(f"({column} IS NULL AND {id_column} < ?)", last_id)
        else:
            self.add(
                f"({column} < ? OR {column} IS NULL OR ({column} = ? AND {id_column} < ?))",
                value,
                value,
                last_id,
            )

    @property
    def sql(self) -> str:
        """`` WHERE a AND b``, or nothing without conditions."""
        return f" WHERE {' AND '.join(self.conditions)}" if self.conditions else ""
