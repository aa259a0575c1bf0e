"""Keyset cursors: one the mirror did not hand out is refused by every listing."""

from __future__ import annotations

from typing import cast

import pytest

from testio_mirror.errors import CursorError
from testio_mirror.store.sqlite.cursor import encode_cursor
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
