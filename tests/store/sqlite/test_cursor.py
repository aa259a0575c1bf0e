"""Keyset cursors: one the mirror did not hand out is refused by every listing."""

from __future__ import annotations

from typing import cast

import pytest

from testio_mirror.errors import CursorError
from testio_mirror.store.sqlite.cursor import decode_position, encode_cursor, encode_position
from tests.helpers.seeded_mirror import Seeded


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "",
        encode_cursor("2026-11-01T00:00:00.000000Z", 5)[:-3],
        encode_cursor("2026-11-01T00:00:00.000000Z", cast(int, "x")),
        encode_cursor(cast(str, {"a": 1}), 5),
    ],
)
async def test_a_bad_cursor_raises(seeded: Seeded, cursor: str) -> None:
    with pytest.raises(CursorError):
        await seeded.mirror.tests.list_tests(cursor=cursor)
    with pytest.raises(CursorError):
        await seeded.mirror.bugs.list_bugs(cursor=cursor)


def test_a_scoped_position_comes_back_only_in_its_scope() -> None:
    cursor = encode_position("stats:test", 40)
    assert decode_position(cursor, "stats:test") == 40
    for other in ("stats:month", "search", "products"):
        with pytest.raises(CursorError):
            decode_position(cursor, other)
    with pytest.raises(CursorError):  # a keyset cursor is no position
        decode_position(encode_cursor("2026-11-01T00:00:00.000000Z", 5), "search")


async def test_a_scoped_cursor_is_no_keyset_cursor(seeded: Seeded) -> None:
    with pytest.raises(CursorError):
        await seeded.mirror.bugs.list_bugs(cursor=encode_position("products", 101))
