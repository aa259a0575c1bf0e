"""The mirror's SQLite file: connections, pragmas, transactions, and what goes wrong with them.

One ``Database`` per process. It keeps one writer connection (every write runs in a
``BEGIN IMMEDIATE`` transaction, one at a time in this process) and a few reader connections,
so a query never waits behind a long sync: in WAL mode readers see the last committed state
while a write is in progress, and take no write lock. Opening writes nothing to a mirror that
is up to date: WAL mode is set only on a file not in it yet, migrations run only when the file
lacks some.

Another process writing: a write waits for its lock up to ``busy_timeout_seconds`` (retrying
with growing pauses, and logging once that it waits), then raises ``MirrorBusyError``. A
damaged file: any SQLite error saying so raises ``MirrorDamagedError``, and so does every later
use of this ``Database`` (a damaged file is never half used). After an unclean close (a writer
that never closed: ``writer_marks.py``) the file is checked with ``PRAGMA quick_check`` before
it is used. A full disk raises ``DiskFullError``; the transaction is rolled back, and what was
committed stays. The files are made private and never reached through a symlink
(``files.py``).

A task may set ``COMMIT_GUARD`` (a context variable, so only its own writes and those of the
tasks it starts are guarded): a sync sets it to "do I still hold the sync lock?", and a guard
that raises rolls the transaction back instead of committing it.

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
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Self

import aiosqlite

from testio_mirror.errors import MirrorDamagedError, StoreError
from testio_mirror.store.sqlite.failures import busy_error, damaged_error, is_busy, store_error
from testio_mirror.store.sqlite.files import move_damaged_aside, prepare_files, secure_sidecars
from testio_mirror.store.sqlite.migrations import LATEST_VERSION, MIGRATIONS, migrate, user_version
from testio_mirror.store.sqlite.writer_marks import WriterMark, abandoned_marks, clear

logger = logging.getLogger("testio_mirror.store")

# Called before each commit of a write transaction by the task that set it; raising refuses it.
COMMIT_GUARD: ContextVar[Callable[[], None] | None] = ContextVar("commit_guard", default=None)

BUSY_TIMEOUT_SECONDS = 10.0
READERS = 2
# A write asks SQLite to wait this long for the lock at a time, and retries (asyncio sleeps in
# between, so the event loop goes on) until its busy timeout: it can say once that it waits.
_LOCK_WAIT_MS = 100
_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 1.0

PRAGMAS = (
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)


class Database:
    """The mirror's SQLite database: a writer connection and a pool of readers."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        readers: int,
        busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = path
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._busy_timeout = busy_timeout_seconds
        # Readers open on first use, up to ``readers``: a CLI sync rarely reads, and each
        # connection costs a thread and an open.
        self._max_readers = readers
        self._reader_count = 0
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._closed = False
        self._damaged: MirrorDamagedError | None = None
        self._mark = WriterMark(path)
        self._wrote = False

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        readers: int = READERS,
        target_version: int | None = None,
        busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS,
        rebuild_if_damaged: bool = False,
    ) -> Self:
        """Open (creating if needed) and migrate the database at ``path``.

        ``target_version`` stops migrating at that version (for tests of migrations).
        ``rebuild_if_damaged``: the caller is about to empty the mirror (a nuke), so a damaged
        file is checked for, moved aside (``mirror.db.damaged``) and replaced by a new one.

        Raises:
            MirrorBusyError: another process kept writing while the file had to be migrated.
            MirrorDamagedError: the file is damaged.
            DiskFullError: the file could not be migrated on a full disk.
            StoreError: the file or its directory cannot be used (a symlink, say).
        """
        prepare_files(path)
        database: Self | None = None
        try:
            writer = await _connect(path, busy_timeout_seconds)
            database = cls(path, writer, readers, busy_timeout_seconds)
            await database._check_after_unclean_close(always=rebuild_if_damaged)
            await database._migrate(target_version)
            secure_sidecars(path)  # the -wal and -shm SQLite made
        except BaseException as exc:
            if database is not None:
                await database.close()
            error = exc
            if isinstance(exc, sqlite3.Error):
                error = store_error(exc, path, waited_seconds=busy_timeout_seconds)
            if not (rebuild_if_damaged and isinstance(error, MirrorDamagedError)):
                if error is exc:
                    raise
                raise error from exc
        else:
            return database
        try:
            move_damaged_aside(path)
        except OSError as exc:
            raise StoreError(
                f"the mirror at {path} is damaged and cannot be moved aside: "
                f"{exc.strerror}; move it away by hand and sync again",
                for_agent="the mirror's file is damaged and cannot be moved aside",
            ) from None
        return await cls.open(
            path,
            readers=readers,
            target_version=target_version,
            busy_timeout_seconds=busy_timeout_seconds,
        )

    async def _check_after_unclean_close(self, *, always: bool) -> None:
        """``PRAGMA quick_check`` when a writer never closed the file (or ``always``)."""
        abandoned = abandoned_marks(self.path)
        if not abandoned and not always:
            return
        if abandoned:
            logger.info("the mirror was not closed cleanly last time; checking it")
        try:
            rows = list(await self._writer.execute_fetchall("PRAGMA quick_check"))
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc  # so damaged that the check itself fails
        found = [str(row[0]) for row in rows]
        if found != ["ok"]:
            raise self._mark_damaged(damaged_error(self.path, "; ".join(found[:3])))
        clear(abandoned)

    async def _migrate(self, target_version: int | None) -> None:
        found = await user_version(self._writer)
        if found > LATEST_VERSION:
            raise StoreError(
                f"the mirror at {self.path} has schema version {found}, newer than this "
                f"testio-mirror knows ({LATEST_VERSION}): upgrade testio-mirror, or point "
                "TESTIO_MIRROR_HOME at another directory",
                for_agent=f"the mirror was made by a newer testio-mirror (schema version "
                f"{found}): upgrade testio-mirror",
            )
        wanted = MIGRATIONS if target_version is None else MIGRATIONS[:target_version]
        journal = list(await self._writer.execute_fetchall("PRAGMA journal_mode"))
        if found >= len(wanted) and str(journal[0][0]).lower() == "wal":
            return  # up to date: nothing to write
        await self._wait_for_lock(lambda: self._writer.execute("PRAGMA journal_mode = WAL"))
        await migrate(self._writer, wanted, begin=self._begin_immediate)

    async def close(self) -> None:
        """Close every connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            if self._wrote and self._damaged is None:
                with contextlib.suppress(sqlite3.Error):
                    # Fold the WAL back into the file so a closed mirror is one tidy file; not
                    # waiting for another process's readers or writer (it folds it later).
                    await self._writer.execute("PRAGMA busy_timeout = 0")
                    await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._writer.close()
        for reader in self._all_readers:
            await reader.close()
        if self._damaged is None:
            self._mark.remove()  # a clean close; a damaged file keeps its mark

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` write transaction: committed on exit, rolled back on error.

        Raises:
            MirrorBusyError, MirrorDamagedError, DiskFullError, StoreError: what SQLite met,
                said for the user (``failures.py``).
            Whatever the task's ``COMMIT_GUARD`` raises (nothing is committed then).
        """
        self._refuse_if_unusable()
        async with self._write_lock:
            try:
                await self._begin_immediate()
                yield self._writer
                guard = COMMIT_GUARD.get()
                if guard is not None:
                    guard()
                await self._writer.commit()
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    # Shielded: a cancelled BEGIN still ran in the worker thread and must be
                    # undone, or every later write fails inside a forgotten transaction.
                    await asyncio.shield(self._writer.rollback())
                if isinstance(exc, sqlite3.Error):
                    raise self._translated(exc) from exc
                raise

    async def vacuum(self) -> None:
        """Rebuild the file without its free pages (after a nuke the rows are gone but the file
        keeps its size) and fold the WAL back, so the file shrinks. The checkpoint waits for
        readers up to the busy timeout; if some still read, the file shrinks at a later one.

        Raises:
            MirrorBusyError, MirrorDamagedError, DiskFullError, StoreError: as ``transaction``.
        """
        self._refuse_if_unusable()
        async with self._write_lock:
            try:
                self._place_mark()
                await self._wait_for_lock(lambda: self._writer.execute("VACUUM"))
            except sqlite3.Error as exc:
                raise self._translated(exc) from exc
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read-only connection from the pool; never waits behind a write transaction.

        Raises:
            MirrorDamagedError, StoreError: what SQLite met, said for the user.
        """
        self._refuse_if_unusable()
        connection = await self._take_reader()
        try:
            yield connection
        except sqlite3.Error as exc:
            raise self._translated(exc) from exc
        finally:
            self._readers.put_nowait(connection)

    async def _take_reader(self) -> aiosqlite.Connection:
        if self._readers.empty() and self._reader_count < self._max_readers:
            self._reader_count += 1  # counted before the await: no two callers open one slot
            try:
                connection = await _connect(self.path, self._busy_timeout, query_only=True)
            except BaseException as exc:
                self._reader_count -= 1
                if isinstance(exc, sqlite3.Error):
                    raise self._translated(exc) from exc
                raise
            if self._closed:
                # close() ran while this reader was being opened (a sibling query failed, say:
                # gather does not stop the others): close it now, or its thread keeps the
                # process alive at exit.
                await connection.close()
                self._refuse_if_unusable()
            self._all_readers.append(connection)
            return connection
        return await self._readers.get()

    async def schema_version(self) -> int:
        async with self.reader() as conn:
            return await user_version(conn)

    def _refuse_if_unusable(self) -> None:
        if self._damaged is not None:
            raise self._damaged
        if self._closed:
            raise StoreError(
                f"the mirror at {self.path} is closed", for_agent="the mirror is closed"
            )

    def _translated(self, exc: sqlite3.Error) -> StoreError:
        error = store_error(exc, self.path, waited_seconds=self._busy_timeout)
        if isinstance(error, MirrorDamagedError):
            return self._mark_damaged(error)
        return error

    def _mark_damaged(self, error: MirrorDamagedError) -> MirrorDamagedError:
        """From now on every use says the file is damaged: it is never half used."""
        if self._damaged is None:
            self._damaged = error
        return self._damaged

    def _place_mark(self) -> None:
        if not self._wrote:
            try:
                self._mark.place()
            except OSError as exc:
                # Without its mark a crash goes unchecked at the next open; the write can go on.
                logger.warning("cannot mark the mirror as being written: %s", exc.strerror)
            self._wrote = True

    async def _begin_immediate(self) -> None:
        self._place_mark()
        await self._wait_for_lock(lambda: self._writer.execute("BEGIN IMMEDIATE"))

    async def _wait_for_lock(self, statement: Callable[[], Awaitable[object]]) -> None:
        """Run a statement that takes the write lock, waiting for another process's write up
        to the busy timeout (saying so once).

        Raises:
            MirrorBusyError: the other process still writes at the timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = _FIRST_PAUSE
        said = False
        while True:
            try:
                await statement()
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            if time.monotonic() >= deadline:
                raise busy_error(self._busy_timeout)
            if not said:
                logger.warning(
                    "the mirror is busy: another process is writing to it; waiting (up to %g s)",
                    self._busy_timeout,
                )
                said = True
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, _LONGEST_PAUSE)


async def _connect(
    path: Path, busy_timeout_seconds: float, query_only: bool = False
) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        connection.row_factory = aiosqlite.Row
        # A reader waits for SQLite's own short locks (a WAL being recovered) up to the busy
        # timeout; the writer waits briefly per try and retries itself (``_wait_for_lock``).
        wait_ms = int(busy_timeout_seconds * 1000) if query_only else _LOCK_WAIT_MS
        await connection.execute(f"PRAGMA busy_timeout = {wait_ms}")
        for pragma in PRAGMAS:
            await connection.execute(pragma)
        if query_only:
            await connection.execute("PRAGMA query_only = ON")
    except BaseException:
        # An unclosed aiosqlite connection keeps its thread, and the process, alive.
        await connection.close()
        raise
    return connection
