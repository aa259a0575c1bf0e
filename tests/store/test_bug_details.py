"""Bugs' platforms and custom report fields (migration 10): the rows ``write_bugs`` keeps, the
same rows migration 10 derives from a mirror of the previous version, odd shapes and values
(numbers, blanks, JSON5, duplicates), replacement on a rewrite, and a nuke emptying them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.sandbox import SandboxWorld
from testio_mirror.settings import load_settings
from testio_mirror.store.bug_details import field_number, field_rows, platform_rows
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.sqlite.bug_details_migration import BUG_DETAILS
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.migrations import LATEST_VERSION, MIGRATIONS
from testio_mirror.upstream.models import Bug
from tests.helpers.store_data import STAMP_1, STAMP_2, small_world, write_world

PREVIOUS = MIGRATIONS.index(BUG_DETAILS)  # the version just before migration 10
JSON = dict[str, Any]

# Texts a tester may type, and whether each is a number (JSON's grammar, finite).
VALUES: dict[str, float | None] = {
    "12": 12.0, "-3.5": -3.5, "1e3": 1000.0, "0": 0.0, "-0": 0.0, "0.25": 0.25,
    "12345678901234567890": 12345678901234567890.0, "2E-2": 0.02,
    "": None, " 12": None, "12 ": None, "+1": None, ".5": None, "5.": None, "-.5": None,
    "0x1F": None, "Infinity": None, "NaN": None, "-Infinity": None, "1e999": None,
    "007": None, "-01": None, "1_000": None, "١٢": None, "12abc": None, "1.2.3": None,
    "1e": None, "--1": None, "high": None, "1,5": None,
}  # fmt: skip


def test_field_numbers_follow_the_json_grammar() -> None:
    for text, number in VALUES.items():
        assert field_number(text) == number, text
    assert field_number(None) is None


def odd_bug(bug_id: int, test_id: int) -> JSON:
    """A bug of odd shapes: every value of VALUES, a key twice, a keyless entry, names that
    are not strings, a device without browsers, one with a broken browser list."""
    data: list[Any] = [{"key": f"v{n}", "value": text} for n, text in enumerate(VALUES)]
    data += [
        {"key": "v0", "value": "999"},  # a key sent twice: the first value stays
        {"value": "no key"},
        {"key": 5, "value": "7"},
        "not an entry",
        {"key": "numeric", "value": 42},  # not a string: value and number NULL
    ]
    devices: list[Any] = [
        {
            "category": {"name": "Desktop"},
            "vendor": {"name": "Dell"},
            "devices": {"name": "XPS 13"},
            "operating_system": {"id": 11, "name": "Windows", "version": "11"},
            "browsers": [{"name": "Chrome"}, {"name": 3}, "Edge", {"name": "Firefox"}],
        },
        {
            "category": {"name": "Smartphone"},
            "operating_system": {"id": 21, "name": "Android"},
            "browsers": [],
        },
        {"category": "Tablet", "operating_system": {"name": ["iPadOS"]}, "browsers": "Safari"},
        "not a device",
    ]
    return {
        "id": bug_id,
        "title": "odd",
        "test": {"id": test_id},
        "devices": devices,
        "report": {"custom_report_configuration_id": 8123, "content": {"data": data}},
    }


async def details(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], JSON]:
    async with db.reader() as conn:
        platforms = [
            tuple(r)
            for r in await conn.execute_fetchall(
                "SELECT * FROM bug_platforms ORDER BY bug_id, position"
            )
        ]
        fields = [
            tuple(r)
            for r in await conn.execute_fetchall("SELECT * FROM bug_fields ORDER BY bug_id, key")
        ]
        configurations = {
            r[0]: r[1]
            for r in await conn.execute_fetchall("SELECT id, report_configuration_id FROM bugs")
        }
    return platforms, fields, configurations


def derived(raws: list[JSON]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    platforms = sorted(row for raw in raws for row in platform_rows(raw["id"], raw))
    fields = sorted(
        (row for raw in raws for row in field_rows(raw["id"], raw)), key=lambda r: (r[0], r[1])
    )
    return platforms, fields


def test_odd_shapes_give_the_rows_the_docs_say() -> None:
    raw = odd_bug(1, 2)
    assert platform_rows(1, raw) == [
        (1, 0, "Desktop", "Dell", "XPS 13", "Windows", "11", "Chrome"),
        (1, 1, "Desktop", "Dell", "XPS 13", "Windows", "11", "Firefox"),
        (1, 2, "Smartphone", None, None, "Android", None, None),
        (1, 3, None, None, None, None, None, None),
    ]
    fields = {row[1]: row[2:] for row in field_rows(1, raw)}
    assert fields["v0"] == ("12", 12.0)
    assert fields["numeric"] == (None, None)
    assert "5" not in fields
    assert len(fields) == len(VALUES) + 1
    assert platform_rows(1, {"devices": None}) == []
    assert field_rows(1, {"report": None}) == []


async def test_writes_and_migration_10_give_the_same_rows(tmp_path: Path) -> None:
    """A mirror at the previous version (bugs with their raw JSON, the odd one included) is
    migrated; its rows are the ones write_bugs gives the same bugs in a fresh mirror."""
    world = small_world()
    raws = list(world.snapshot()["bugs"].values())
    some_test = raws[0]["test"]["id"]
    odd = odd_bug(99_000_001, some_test)

    old_path = tmp_path / "old" / "mirror.db"
    old = await Database.open(old_path, target_version=PREVIOUS)
    try:
        await write_world(old, world, STAMP_1, before_outbox=True)
        async with old.transaction() as conn:
            await conn.execute(
                "INSERT INTO bugs (id, test_id, raw, content_hash, fetched_at, changed_at) "
                "VALUES (?, ?, ?, 'x', ?, ?)",
                (odd["id"], some_test, json.dumps(odd), STAMP_1, STAMP_1),
            )
    finally:
        await old.close()
    migrated = await Database.open(old_path)
    try:
        assert await migrated.schema_version() == LATEST_VERSION
        from_migration = await details(migrated)
    finally:
        await migrated.close()

    fresh = await Database.open(tmp_path / "new" / "mirror.db")
    try:
        await write_world(fresh, world, STAMP_1)
        async with fresh.transaction() as conn:
            await write_bugs(conn, [Bug.from_wire(odd)], STAMP_1)
        from_writes = await details(fresh)
    finally:
        await fresh.close()

    platforms, fields = derived([*raws, odd])
    assert from_writes[0] == platforms
    assert from_writes[1] == fields
    assert from_migration[0] == from_writes[0]
    assert from_migration[1] == from_writes[1]
    assert from_migration[2] == from_writes[2]
    numbers = {row[1]: row[3] for row in fields if row[0] == odd["id"]}
    for n, number in enumerate(VALUES.values()):
        assert numbers[f"v{n}"] == number, list(VALUES)[n]
    # The sandbox gives every third product a report, and some bugs a second device.
    assert any(configuration is not None for configuration in from_writes[2].values())
    assert any(configuration is None for configuration in from_writes[2].values())
    assert any(row[1] > 0 for row in platforms if row[0] != odd["id"])
    assert {row[1] for row in fields} >= {"affected_users", "customer_impact"}


@pytest.fixture
async def mirror(tmp_path: Path) -> Any:
    found = await Mirror.open(load_settings(mirror_home=tmp_path / "home"), None)
    yield found
    await found.close()


async def test_a_rewrite_replaces_the_rows_and_a_nuke_empties_them(
    mirror: Mirror, world: SandboxWorld
) -> None:
    await write_world(mirror.db, world, STAMP_1)
    raw = next(b for b in world.snapshot()["bugs"].values() if b.get("report"))
    changed = {
        **raw,
        "devices": [{"operating_system": {"name": "iOS"}, "browsers": [{"name": "Safari"}]}],
        "report": {"custom_report_configuration_id": 1, "content": {"data": [
            {"key": "affected_users", "value": "7"}
        ]}},
    }  # fmt: skip
    async with mirror.db.transaction() as conn:
        await write_bugs(conn, [Bug.from_wire(changed)], STAMP_2)
    platforms, fields, configurations = await details(mirror.db)
    assert [row for row in platforms if row[0] == raw["id"]] == [
        (raw["id"], 0, None, None, None, "iOS", None, "Safari")
    ]
    assert [row for row in fields if row[0] == raw["id"]] == [
        (raw["id"], "affected_users", "7", 7.0)
    ]
    assert configurations[raw["id"]] == 1
    others = [row for row in fields if row[0] != raw["id"]]
    assert others, "the other bugs keep theirs"
    await mirror.empty()
    assert (await details(mirror.db))[:2] == ([], [])
