"""Testers (migration 8): one row per normalised author name, made from the bugs a mirror of
version 7 holds, kept by every bug write, emptied by a nuke; bugs point at their tester."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from testio_mirror.sandbox import SandboxWorld
from testio_mirror.settings import load_settings
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.testers_migration import author_key
from testio_mirror.store.sqlite.timefmt import to_db
from testio_mirror.upstream.models import Bug
from tests.helpers.store_data import STAMP_1, STAMP_2, small_world, write_world

# Spellings of one tester the mirror must count once: case, spacing, decomposed accents.
SPELLINGS = (
    "tester_björn",
    "Tester_Björn",
    "  tester_björn ",
    unicodedata.normalize("NFD", "TESTER_BJÖRN"),
)


def test_the_author_key_folds_case_spacing_and_composition() -> None:
    assert {author_key(name) for name in SPELLINGS} == {"tester_björn"}
    assert author_key("Ana  Lima") == author_key("ana lima") == "ana lima"
    assert author_key("tester_ana") != author_key("tester_anna")
    assert author_key(None) is None
    assert author_key("  \t") is None


async def rows(db: Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with db.reader() as conn:
        return [tuple(row) for row in await conn.execute_fetchall(sql, params)]


async def mirror_of_version_7(path: Path, world: SandboxWorld) -> dict[int, str | None]:
    """A mirror at migration 7 holding ``world``'s bugs, their authors spelled in several ways
    (one bug without an author); returns each bug's author as stored."""
    old = await Database.open(path, target_version=7)
    authors: dict[int, str | None] = {}
    try:
        await write_world(old, world, STAMP_1, before_outbox=True)
        bugs = [Bug.from_wire(raw) for raw in world.snapshot()["bugs"].values()]
        async with old.transaction() as conn:
            for n, bug in enumerate(bugs):
                name = bug.author_name
                if name is not None and author_key(name) == "tester_björn":
                    name = SPELLINGS[n % len(SPELLINGS)]
                authors[bug.id] = None if n == 0 else name
                await conn.execute(
                    "UPDATE bugs SET author = ?, reported_at = ? WHERE id = ?",
                    (authors[bug.id], to_db(bug.reported_at), bug.id),
                )
    finally:
        await old.close()
    return authors


async def test_migration_8_makes_one_tester_per_author(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    world = small_world()
    authors = await mirror_of_version_7(path, world)
    assert len({a for a in authors.values() if a and author_key(a) == "tester_björn"}) > 1
    database = await Database.open(path)
    try:
        testers = await rows(
            database, "SELECT id, key, name, first_seen_at, last_activity_at FROM testers"
        )
        bugs = await rows(database, "SELECT id, tester_id, author, reported_at FROM bugs")
    finally:
        await database.close()
    keys = {author_key(a) for a in authors.values() if a is not None}
    assert sorted(key for _, key, *_ in testers) == sorted(keys)
    by_id = {tester_id: (key, name, first, last) for tester_id, key, name, first, last in testers}
    for tester_id, key, name, first, last in testers:
        mine = [reported for _, tid, _, reported in bugs if tid == tester_id]
        assert author_key(name) == key
        assert first == min(mine)
        assert last == max(mine)
    for bug_id, tester_id, author, _ in bugs:
        if authors[bug_id] is None:
            assert tester_id is None
        else:
            assert by_id[tester_id][0] == author_key(author), bug_id


async def test_bug_writes_keep_one_tester_per_name(tmp_path: Path) -> None:
    settings = load_settings(mirror_home=tmp_path / "home")
    mirror = await Mirror.open(settings, None)
    world = small_world()
    try:
        await write_world(mirror.db, world, STAMP_1)
        before = await rows(mirror.db, "SELECT key, last_activity_at FROM testers ORDER BY key")
        raw = next(iter(world.snapshot()["bugs"].values()))
        variants = []
        for n, name in enumerate(SPELLINGS):
            copy = {**raw, "id": 9_000_000 + n, "author": {"name": name}}
            copy["reported_at"] = f"2027-0{n + 1}-01T00:00:00Z"
            variants.append(Bug.from_wire(copy))
        async with mirror.db.transaction() as conn:
            await write_bugs(conn, variants, STAMP_2)
        after = await rows(mirror.db, "SELECT key, last_activity_at FROM testers ORDER BY key")
        ids = await rows(
            mirror.db, "SELECT DISTINCT tester_id FROM bugs WHERE id >= 9000000 AND id < 9000010"
        )
        # An older report moves nothing back.
        early = Bug.from_wire({**raw, "id": 9_000_100, "reported_at": "2001-01-01T00:00:00Z"})
        async with mirror.db.transaction() as conn:
            await write_bugs(conn, [early], STAMP_2)
        firsts = await rows(mirror.db, "SELECT key, first_seen_at FROM testers ORDER BY key")
        again = await rows(mirror.db, "SELECT key, last_activity_at FROM testers ORDER BY key")
        await mirror.empty()
        emptied = await rows(mirror.db, "SELECT count(*) FROM testers")
    finally:
        await mirror.close()
    assert [key for key, _ in after] == [key for key, _ in before]
    assert "tester_björn" in [key for key, _ in after]
    assert dict(after)["tester_björn"] == "2027-04-01T00:00:00.000000Z"
    assert len(ids) == 1
    assert again == after
    early_key = author_key(early.author_name)
    assert dict(firsts)[early_key] == "2001-01-01T00:00:00.000000Z"
    assert emptied == [(0,)]
