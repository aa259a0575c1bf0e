"""The mirror's SQLite file: connections, pragmas, transactions, file modes.

One ``Database`` per process. It keeps one writer connection (every write runs in a
``BEGIN IMMEDIATE`` transaction, one at a time in this process; other processes wait on SQLite's
busy timeout) and a few reader connections, so a query never waits behind a long sync: in WAL mode
readers see the last committed state while a write is in progress. Every connection gets the same
pragmas. Opening applies pending migrations.

The data directory is made (or tightened to) 0700 and the database file 0600 before SQLite
touches it; SQLite gives its ``-wal`` and ``-shm`` files the database file's mode.

Example::

    db = await Database.open(settings.database_path)
    async with db.transaction() as conn:
        await conn.execute("INSERT ...")
    async with db.reader() as conn:
        rows = await conn.execute_fetchall("SELECT ...")
    await db.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Self

import aiosqlite

from testio_mirror.errors import StoreError
from testio_mirror.store.sqlite.migrations import LATEST_VERSION, MIGRATIONS, migrate, user_version

BUSY_TIMEOUT_MS = 10_000
READERS = 2
DIR_MODE = 0o700
FILE_MODE = 0o600

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys = ON",
)


class Database:
    """The mirror's SQLite database: a writer connection and a pool of readers."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, readers: int) -> None:
        self.path = path
        self._writer = writer
        self._write_lock = asyncio.Lock()
        # Readers open on first use, up to ``readers``: a CLI sync rarely reads, and each
        # connection costs a thread and an open.
        self._max_readers = readers
        self._reader_count = 0
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, *, readers: int = READERS, target_version: int | None = None
    ) -> Self:
        """Open (creating if needed) and migrate the database at ``path``.

        ``target_version`` stops migrating at that version (for tests of migrations).

        Raises:
            StoreError: the file or its directory cannot be used.
        """
        prepare_files(path)
        opened: list[aiosqlite.Connection] = []
        try:
            writer = await _connect(path)
            opened.append(writer)
            found = await user_version(writer)
            if found > LATEST_VERSION:
                raise StoreError(
                    f"the mirror at {path} has schema version {found}, newer than this "
                    f"testio-mirror knows ({LATEST_VERSION}): upgrade testio-mirror, or point "
                    "TESTIO_MIRROR_HOME at another directory"
                )
            await migrate(
                writer, MIGRATIONS if target_version is None else MIGRATIONS[:target_version]
            )
        except (sqlite3.Error, OSError, StoreError) as exc:
            for connection in opened:
                await connection.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"cannot open the mirror at {path}: {exc}; if the file is damaged, move it "
                "away and sync again"
            ) from exc
        return cls(path, writer, readers)

    async def close(self) -> None:
        """Close every connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            with contextlib.suppress(sqlite3.Error):
                # Fold the WAL back into the file so a closed mirror is one tidy file.
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._writer.close()
        for reader in self._all_readers:
            await reader.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` write transaction: committed on exit, rolled back on error."""
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                yield self._writer
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    # Shielded: a cancelled BEGIN still ran in the worker thread and must be
                    # undone, or every later write fails inside a forgotten transaction.
                    await asyncio.shield(self._writer.rollback())
                raise
            else:
                await self._writer.commit()

    async def vacuum(self) -> None:
        """Rebuild the file without its free pages (after a nuke the rows are gone but the file
        keeps its size) and fold the WAL back, so the file shrinks. The checkpoint waits for
        readers up to the busy timeout; if some still read, the file shrinks at a later one."""
        async with self._write_lock:
            await self._writer.execute("VACUUM")
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read-only connection from the pool; never waits behind a write transaction."""
        connection = await self._take_reader()
        try:
            yield connection
        finally:
            self._readers.put_nowait(connection)

    async def _take_reader(self) -> aiosqlite.Connection:
        if self._closed:
            raise StoreError(f"the mirror at {self.path} is closed")
        if self._readers.empty() and self._reader_count < self._max_readers:
            self._reader_count += 1  # counted before the await: no two callers open one slot
            try:
                connection = await _connect(self.path, query_only=True)
            except BaseException as exc:
                self._reader_count -= 1
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot read the mirror at {self.path}: {exc}") from exc
                raise
            self._all_readers.append(connection)
            return connection
        return await self._readers.get()

    async def schema_version(self) -> int:
        async with self.reader() as conn:
            return await user_version(conn)


def prepare_files(path: Path) -> None:
    """Make the data directory 0700 and the database file 0600 before SQLite opens it.

    Raises:
        StoreError: the directory or file cannot be created or is not ours to change.
    """
    directory = path.parent
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(directory, DIR_MODE)
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
        os.close(descriptor)
        os.chmod(path, FILE_MODE)
        for suffix in ("-wal", "-shm"):
            sidecar = path.with_name(path.name + suffix)
            if sidecar.exists():
                os.chmod(sidecar, FILE_MODE)
    except OSError as exc:
        raise StoreError(
            f"cannot prepare the mirror at {path}: {exc.strerror}; check TESTIO_MIRROR_HOME"
        ) from None


async def _connect(path: Path, query_only: bool = False) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        connection.row_factory = aiosqlite.Row
        for pragma in PRAGMAS:
            await _execute_waiting(connection, pragma)
        if query_only:
            await connection.execute("PRAGMA query_only = ON")
    except BaseException:
        # An unclosed aiosqlite connection keeps its thread, and the process, alive.
        await connection.close()
        raise
    return connection


async def _execute_waiting(connection: aiosqlite.Connection, sql: str) -> None:
    """``PRAGMA journal_mode`` fails at once on a locked file instead of honouring the busy
    timeout (another process may be creating the same new file): retry until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await connection.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.01)
