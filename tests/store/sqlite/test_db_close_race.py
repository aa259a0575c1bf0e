"""A reader opened while the database closes is closed too: its aiosqlite thread would otherwise
keep the process alive at exit (``testio-mirror status`` hung so on a damaged mirror, where one
query of a gather failed and the mirror was closed under its siblings)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from testio_mirror.errors import StoreError
from testio_mirror.store.sqlite.db import Database


def connection_threads() -> int:
    # aiosqlite runs each connection on a thread of its own: the live threads, compared with
    # their number before the database was opened.
    return threading.active_count()


async def test_a_reader_opened_during_close_is_closed_and_refused(tmp_path: Path) -> None:
    before = connection_threads()
    database = await Database.open(tmp_path / "home" / "mirror.db")
    query = asyncio.create_task(database.schema_version())
    await asyncio.sleep(0)  # the query starts opening its reader
    await database.close()
    with pytest.raises(StoreError, match="closed"):
        await query
    for _ in range(50):  # a closed connection's thread ends a moment after close() returns
        if connection_threads() <= before:
            break
        await asyncio.sleep(0.02)
    assert connection_threads() <= before, "a connection's thread outlived the database"
