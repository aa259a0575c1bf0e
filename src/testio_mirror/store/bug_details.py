"""A bug's platforms (``devices``) and custom report fields (``report``), as rows of their own.

``write_bug_details`` runs inside ``write_bugs``' transaction: the rows of every bug written
(new or changed) are replaced by the ones its raw JSON gives now. They are exactly the rows
migration 10 derives in SQL from a mirror's existing bugs (``sqlite/bug_details_migration.py``
says what each column holds); the tests hold the two to each other.

Example::

    platform_rows(7, {"devices": [{"operating_system": {"name": "iOS"}, "browsers": []}]})
    # [(7, 0, None, None, None, "iOS", None, None)]
    field_number("12")   # 12.0; field_number("") is None; field_number("1e999") is None
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from testio_mirror.store.metrics_buckets import MetricsQueryError
from testio_mirror.store.sqlite.upsert import chunks, insert_rows

PLATFORM_COLUMNS = (
    "bug_id",
    "position",
    "category",
    "vendor",
    "device",
    "os",
    "os_version",
    "browser",
)
FIELD_COLUMNS = ("bug_id", "key", "value", "number")
# JSON's number grammar, ASCII digits only (``\d`` would take other scripts' digits).
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _text(value: Any, *path: str) -> str | None:
    """The string at ``path`` inside nested objects, None when anything on the way is not."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None


def field_number(value: str | None) -> float | None:
    """``value`` as a number when it is exactly a finite JSON number, else None."""
    if value is None or not _NUMBER.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def report_configuration_id(raw: Mapping[str, Any]) -> int | None:
    """The bug's ``report.custom_report_configuration_id``, when it is an integer."""
    report = raw.get("report")
    found = report.get("custom_report_configuration_id") if isinstance(report, Mapping) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def platform_rows(bug_id: int, raw: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """One row per device and browser of ``raw["devices"]`` (a device without one: one row)."""
    devices = raw.get("devices")
    if not isinstance(devices, list):
        return []
    rows: list[tuple[Any, ...]] = []
    for device in devices:
        if not isinstance(device, Mapping):
            continue
        listed = device.get("browsers")
        names = [_text(b, "name") for b in listed] if isinstance(listed, list) else []
        browsers: list[str | None] = [name for name in names if name is not None] or [None]
        for browser in browsers:
            rows.append(
                (
                    bug_id,
                    len(rows),
                    _text(device, "category", "name"),
                    _text(device, "vendor", "name"),
                    _text(device, "devices", "name"),
                    _text(device, "operating_system", "name"),
                    _text(device, "operating_system", "version"),
                    browser,
                )
            )
    return rows


def field_rows(bug_id: int, raw: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """One row per key of the custom report (the first value of a key sent twice)."""
    report = raw.get("report")
    content = report.get("content") if isinstance(report, Mapping) else None
    data = content.get("data") if isinstance(content, Mapping) else None
    if not isinstance(data, list):
        return []
    rows: dict[str, tuple[Any, ...]] = {}
    for entry in data:
        key = _text(entry, "key")
        if key is None or key in rows:
            continue
        value = _text(entry, "value")
        rows[key] = (bug_id, key, value, field_number(value))
    return list(rows.values())


async def write_bug_details(
    conn: aiosqlite.Connection, raws: Mapping[int, Mapping[str, Any]], written: Sequence[int]
) -> None:
    """Replace the platforms and fields of the bugs ``written`` (ids, their raw in ``raws``);
    a bug whose row did not change keeps the rows its unchanged raw gave."""
    if not written:
        return
    for part in chunks(list(written)):
        marks = ",".join("?" * len(part))
        await conn.execute(f"DELETE FROM bug_platforms WHERE bug_id IN ({marks})", tuple(part))
        await conn.execute(f"DELETE FROM bug_fields WHERE bug_id IN ({marks})", tuple(part))
    platforms = [row for bug_id in written for row in platform_rows(bug_id, raws[bug_id])]
    fields = [row for bug_id in written for row in field_rows(bug_id, raws[bug_id])]
    await insert_rows(conn, "bug_platforms", PLATFORM_COLUMNS, platforms)
    await insert_rows(conn, "bug_fields", FIELD_COLUMNS, fields)


async def known_field_keys(conn: aiosqlite.Connection) -> list[str]:
    """The custom field keys the mirror's live bugs carry, sorted."""
    rows = await conn.execute_fetchall(
        "SELECT DISTINCT f.key FROM bug_fields f JOIN bugs b ON b.id = f.bug_id "
        "WHERE b.deleted_at IS NULL ORDER BY f.key"
    )
    return [row[0] for row in rows]


async def check_field_keys(conn: aiosqlite.Connection, keys: Sequence[str]) -> None:
    """Refuse a custom field no live bug of the mirror carries, naming the ones it holds.

    Raises:
        MetricsQueryError: a key no live bug has.
    """
    for key in keys:
        # One probe of bug_fields_by_key per key; every key (a scan) only for the message.
        found = await conn.execute_fetchall(
            "SELECT EXISTS (SELECT 1 FROM bug_fields f JOIN bugs b ON b.id = f.bug_id "
            "WHERE f.key = ? AND b.deleted_at IS NULL)",
            (key,),
        )
        if not next(iter(found))[0]:
            known = await known_field_keys(conn)
            raise MetricsQueryError(
                f"no bug in the mirror has the custom field {key!r}; known keys: "
                f"{', '.join(known) or 'none (no bug has a custom report)'}"
            )
