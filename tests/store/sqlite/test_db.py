"""The database: pragmas of every connection, read-only readers, transactions (a cancelled one
leaves the writer free), WAL readers that do not wait behind a write, two processes on one file,
and the errors of files it cannot use."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from testio_mirror.errors import MirrorBusyError, MirrorDamagedError, StoreError
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.migrations import LATEST_VERSION
from tests.helpers.store_data import close_stray_connections, open_database

PENDING = "INSERT INTO collection_fetches (key, fetched_at) VALUES (?, '2026-01-01')"


async def pragma(conn: aiosqlite.Connection, name: str) -> object:
    rows = list(await conn.execute_fetchall(f"PRAGMA {name}"))
    return rows[0][0]


async def keys(db: Database) -> list[str]:
    async with db.reader() as conn:
        rows = await conn.execute_fetchall("SELECT key FROM collection_fetches ORDER BY key")
    return [row[0] for row in rows]


async def test_readers_open_on_first_use_and_never_beyond_the_pool(db: Database) -> None:
    assert db._all_readers == []  # a database that is only written to opens no reader
    seen: set[int] = set()

    async def read() -> None:
        async with db.reader() as conn:
            seen.add(id(conn))
            await conn.execute_fetchall("SELECT count(*) FROM sqlite_master")
            await asyncio.sleep(0.01)

    await asyncio.gather(*(read() for _ in range(8)))
    assert len(db._all_readers) == len(seen) == 2


async def test_every_connection_has_the_pragmas(db: Database) -> None:
    async with db.reader(), db.reader():  # both readers of the pool, opened on first use
        connections = [db._writer, *db._all_readers]
    assert len(connections) == 3
    for conn in connections:
        assert await pragma(conn, "journal_mode") == "wal"
        assert await pragma(conn, "synchronous") == 1
        busy = await pragma(conn, "busy_timeout")
        assert isinstance(busy, int)
        assert busy > 0
        assert await pragma(conn, "foreign_keys") == 1
    assert await pragma(db._writer, "query_only") == 0
    for reader in db._all_readers:
        assert await pragma(reader, "query_only") == 1


async def test_pragmas_seen_through_the_public_context_managers(db: Database) -> None:
    async with db.transaction() as conn:
        assert await pragma(conn, "foreign_keys") == 1
        # The writer waits briefly per try and retries itself up to the mirror's busy timeout.
        assert await pragma(conn, "busy_timeout") == 100
    async with db.reader() as conn:
        assert await pragma(conn, "journal_mode") == "wal"
        assert await pragma(conn, "synchronous") == 1
    assert await db.schema_version() == LATEST_VERSION


async def test_a_reader_cannot_write(db: Database) -> None:
    async with db.reader() as first, db.reader() as second:  # each reader of the pool
        for conn in (first, second):
            with pytest.raises(sqlite3.OperationalError):
                await conn.execute(PENDING, ("nope",))
    assert await keys(db) == []


async def test_a_failed_transaction_rolls_back(db: Database) -> None:
    async def failing_write() -> None:
        async with db.transaction() as conn:
            await conn.execute(PENDING, ("rolled-back",))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_write()
    assert await keys(db) == []
    # The writer is usable again, outside any transaction.
    async with db.transaction() as conn:
        await conn.execute(PENDING, ("kept",))
    assert await keys(db) == ["kept"]


async def test_a_reader_is_not_blocked_by_an_open_write(db: Database) -> None:
    inserted = asyncio.Event()
    release = asyncio.Event()

    async def write() -> None:
        async with db.transaction() as conn:
            await conn.execute(PENDING, ("uncommitted",))
            inserted.set()
            await release.wait()

    task = asyncio.create_task(write())
    try:
        await asyncio.wait_for(inserted.wait(), timeout=5)
        # The write transaction is open (and holds the write lock) while the reader runs.
        seen = await asyncio.wait_for(keys(db), timeout=2)
        assert seen == []
        assert not task.done()
    finally:
        release.set()
        await asyncio.wait_for(task, timeout=5)
    assert await keys(db) == ["uncommitted"]


async def test_two_databases_on_one_file_write_in_turn(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    first = await Database.open(path)
    second = await Database.open(path)
    try:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_file() -> None:
            async with first.transaction() as conn:
                await conn.execute(PENDING, ("first",))
                holding.set()
                await release.wait()

        async def write_second() -> None:
            async with second.transaction() as conn:
                await conn.execute(PENDING, ("second",))

        holder = asyncio.create_task(hold_the_file())
        await asyncio.wait_for(holding.wait(), timeout=5)
        waiter = asyncio.create_task(write_second())
        await asyncio.sleep(0.2)
        assert not waiter.done()  # BEGIN IMMEDIATE waits on the busy timeout, not an error
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), timeout=8)
        assert await keys(first) == ["first", "second"]
        assert await keys(second) == ["first", "second"]
    finally:
        await first.close()
        await second.close()


async def test_close_is_idempotent(tmp_path: Path) -> None:
    database = await open_database(tmp_path)
    async with database.transaction() as conn:
        await conn.execute(PENDING, ("x",))
    await database.close()
    await database.close()
    wal = database.path.with_name(database.path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    reopened = await Database.open(database.path)
    try:
        assert await keys(reopened) == ["x"]
    finally:
        await reopened.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="upgrade") as caught:
        await Database.open(path)
    assert str(LATEST_VERSION + 1) in str(caught.value)
    with sqlite3.connect(path) as raw:
        # Nothing was migrated or changed.
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 1
        assert raw.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    raw.close()


async def test_a_directory_that_cannot_be_made_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="TESTIO_MIRROR_HOME"):
        await Database.open(blocker / "home" / "mirror.db")


async def test_a_damaged_file_is_a_store_error(tmp_path: Path) -> None:
    # Open's own message says the file is damaged and how to rebuild it.
    path = tmp_path / "home" / "mirror.db"
    path.parent.mkdir()
    path.write_bytes(b"this is not an SQLite database, " * 100)
    try:
        with pytest.raises(MirrorDamagedError, match=r"damaged.*--nuke"):
            await Database.open(path)
    finally:
        await close_stray_connections()


async def test_open_waits_while_another_process_writes_a_new_file(tmp_path: Path) -> None:
    # Another process is creating the file (still in rollback-journal mode) and holds its write
    # lock for a moment: open must wait on the busy timeout like every other write does.
    path = tmp_path / "home" / "mirror.db"
    path.parent.mkdir()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("CREATE TABLE elsewhere (x)")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO elsewhere VALUES (1)")
        opening = asyncio.create_task(Database.open(path))
        await asyncio.sleep(0.3)
        other.execute("COMMIT")
        database = await asyncio.wait_for(opening, timeout=8)
        try:
            assert await database.schema_version() == LATEST_VERSION
        finally:
            await database.close()
    finally:
        other.close()
        await close_stray_connections()


async def test_a_sync_cancelled_when_serving_stops_leaves_the_mirror_writable(
    tmp_path: Path,
) -> None:
    """Closing stdio (or stopping HTTP) cancels a running sync wherever it waits, BEGIN IMMEDIATE
    included. The writer must not stay inside that transaction: ``serve`` closed mid-sync logged
    "could not record the end of sync ...: cannot start a transaction within a transaction"."""
    db = await Database.open(tmp_path / "mirror.db")
    try:

        async def write() -> None:
            async with db.transaction():
                await asyncio.sleep(60)

        task = asyncio.create_task(write())
        await asyncio.sleep(0)  # the task now awaits its BEGIN IMMEDIATE
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
    finally:
        await db.close()


async def test_an_up_to_date_mirror_opens_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    await (await Database.open(path)).close()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        database = await Database.open(path, busy_timeout_seconds=30)
        try:
            assert await database.schema_version() == LATEST_VERSION
            assert database._wrote is False
        finally:
            await database.close()
    finally:
        other.close()


async def test_a_write_behind_another_process_raises_busy_at_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    database = await Database.open(path, busy_timeout_seconds=0.3)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(MirrorBusyError, match="another process"):
            async with database.transaction() as conn:
                await conn.execute(PENDING, ("never",))
        other.execute("ROLLBACK")
        async with database.transaction() as conn:  # free again: the write goes through
            await conn.execute(PENDING, ("later",))
        assert await keys(database) == ["later"]
    finally:
        other.close()
        await database.close()


async def test_a_damaged_file_found_while_reading_refuses_every_later_use(tmp_path: Path) -> None:
    database = await open_database(tmp_path)
    try:
        with pytest.raises(MirrorDamagedError):
            async with database.reader():
                raise sqlite3.DatabaseError("database disk image is malformed")
        with pytest.raises(MirrorDamagedError):
            async with database.transaction() as conn:
                await conn.execute(PENDING, ("never",))
    finally:
        await database.close()


async def test_an_unclean_close_is_checked_at_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    await (await Database.open(path)).close()
    marks = path.with_name("mirror.db.writers")
    marks.mkdir(exist_ok=True)
    (marks / "left-by-a-dead-process").write_bytes(b"")  # nobody holds its lock
    with sqlite3.connect(path) as raw:
        # Damage quick_check finds: a table's root page pointing past the end of the file.
        raw.execute("PRAGMA writable_schema = ON")
        raw.execute("UPDATE sqlite_master SET rootpage = 999999 WHERE name = 'collection_fetches'")
    raw.close()
    try:
        with pytest.raises(MirrorDamagedError):
            await Database.open(path)
    finally:
        await close_stray_connections()
    assert (marks / "left-by-a-dead-process").exists()  # checked again next time


async def test_a_clean_close_leaves_no_mark(tmp_path: Path) -> None:
    database = await open_database(tmp_path)
    async with database.transaction() as conn:
        await conn.execute(PENDING, ("x",))
    marks = database.path.with_name("mirror.db.writers")
    assert [p.name for p in marks.iterdir()] != []
    await database.close()
    assert list(marks.iterdir()) == []


async def test_a_nuke_moves_a_damaged_file_aside(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    path.parent.mkdir()
    path.write_bytes(b"this is not an SQLite database, " * 100)
    database = await Database.open(path, rebuild_if_damaged=True)
    try:
        assert await database.schema_version() == LATEST_VERSION
    finally:
        await database.close()
    assert path.with_name("mirror.db.damaged").read_bytes().startswith(b"this is not")
