"""Features in the store: the ones a product no longer lists are tombstoned."""

from __future__ import annotations

import pytest

from testio_mirror.errors import CursorError
from testio_mirror.sandbox import SandboxWorld
from testio_mirror.store.features import write_features
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import WriteStats
from tests.helpers.seeded_mirror import Seeded, ids_of
from tests.helpers.store_data import STAMP_1, STAMP_2, column_by_id, features_of, write_world


async def test_vanished_features_are_tombstoned(db: Database, world: SandboxWorld) -> None:
    await write_world(db, world)
    features = features_of(world, 101)
    async with db.transaction() as conn:
        stats = await write_features(conn, 101, features[1:], STAMP_2)
        marks = await column_by_id(conn, "features", "deleted_at")
        fetched = await column_by_id(conn, "products", "features_fetched_at")
    assert stats == WriteStats(fetched=len(features) - 1, unchanged=len(features) - 1, deleted=1)
    assert marks.pop(features[0].id) == STAMP_2
    assert set(marks.values()) == {None}  # product 102's features are out of scope
    assert fetched == {101: STAMP_2, 102: STAMP_1}


async def test_features_are_paged_by_id(seeded: Seeded) -> None:
    expected = sorted(seeded.snap["features"][101])
    found = await ids_of(lambda **kw: seeded.mirror.features.page_features(101, limit=2, **kw))
    assert found == expected
    assert len(expected) > 2
    first = await seeded.mirror.features.page_features(101, limit=3)
    after_first = await seeded.mirror.features.page_features(101, limit=3, cursor=first.cursors[0])
    assert [f.id for f in after_first.items] == expected[1:4]
    with pytest.raises(CursorError):  # another product's cursor
        await seeded.mirror.features.page_features(102, limit=3, cursor=first.cursors[0])
