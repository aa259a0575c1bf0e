"""``Mirror.empty``, the first step of a nuke: every mirrored entity goes, the file shrinks."""

from __future__ import annotations

from testio_mirror.store.sqlite.db import Database
from tests.helpers.seeded_mirror import Seeded


def file_size(db: Database) -> int:
    wal = db.path.with_name(db.path.name + "-wal")
    return db.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def test_emptying_the_mirror_gives_its_space_back(seeded: Seeded) -> None:
    mirror = seeded.mirror
    before = file_size(mirror.db)
    assert (await mirror.sync_state.counts())["bugs"] > 0
    await mirror.empty()
    after = file_size(mirror.db)
    assert set((await mirror.sync_state.counts()).values()) == {0}
    assert before > 1_000_000
    assert after < before / 5, (before, after)
