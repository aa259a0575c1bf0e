"""What an ``sqlite3`` error means for the user: busy, damaged, full, or another problem.

SQLite reports every failure as an exception with a result code; the user needs to know which
of a few situations they are in and what to do. ``store_error`` turns an ``sqlite3.Error`` into
the ``StoreError`` that says so: ``MirrorBusyError`` (another process is writing; try again),
``MirrorDamagedError`` (rebuild with a nuke, or restore), ``DiskFullError`` (free space), or a
plain ``StoreError``. Their messages name the file for the user; ``for_agent`` does not.

Example::

    try:
        await conn.execute(...)
    except sqlite3.Error as exc:
        raise store_error(exc, path) from exc
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from testio_mirror.errors import DiskFullError, MirrorBusyError, MirrorDamagedError, StoreError

# SQLite's primary result codes (the low byte of an extended code).
_BUSY = 5
_LOCKED = 6
_READONLY = 8
_IOERR = 10
_CORRUPT = 11
_FULL = 13
_CANTOPEN = 14
_NOTADB = 26

REBUILD = (
    "run `testio-mirror sync --nuke --yes` to rebuild it from TestIO (the damaged file is "
    "kept next to it as mirror.db.damaged), or restore it from a backup"
)
DAMAGED_FOR_AGENT = (
    f"the mirror's database file is damaged: {REBUILD}, then restart the server; "
    "`testio-mirror status` shows where the file is"
)


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock this statement needs."""
    return _code(exc) in (_BUSY, _LOCKED) or "database is locked" in str(exc)


def is_damaged(exc: sqlite3.Error) -> bool:
    """SQLite found the file malformed, or a row holds bytes no write of ours made."""
    text = str(exc)
    return (
        _code(exc) in (_CORRUPT, _NOTADB)
        or "malformed" in text
        or "not a database" in text
        or text.startswith("Could not decode to UTF-8")
    )


def is_full(exc: sqlite3.Error) -> bool:
    return _code(exc) == _FULL or "database or disk is full" in str(exc)


def busy_error(waited_seconds: float) -> MirrorBusyError:
    message = (
        f"the mirror is busy: another process has been writing to it for {waited_seconds:g} s "
        "and still is; try again shortly (TESTIO_MIRROR_BUSY_TIMEOUT_SECONDS is how long a "
        "write waits)"
    )
    return MirrorBusyError(message)


def damaged_error(path: Path, detail: str) -> MirrorDamagedError:
    return MirrorDamagedError(
        f"the mirror at {path} is damaged ({detail}): {REBUILD}", for_agent=DAMAGED_FOR_AGENT
    )


def store_error(exc: sqlite3.Error, path: Path, *, waited_seconds: float = 0.0) -> StoreError:
    """The ``StoreError`` that says what ``exc``, met on the database at ``path``, means."""
    if is_busy(exc):
        return busy_error(waited_seconds)
    if is_damaged(exc):
        return damaged_error(path, str(exc))
    if is_full(exc):
        return DiskFullError(
            f"the disk is full: the mirror at {path} cannot grow; what was committed is kept. "
            "Free some space and run the sync again",
            for_agent="the disk is full: the mirror cannot grow; what was committed is kept. "
            "Free some space on the mirror's disk and call sync_data again",
        )
    code = _code(exc)
    if code in (_READONLY, _CANTOPEN, _IOERR):
        what = {_READONLY: "is read-only", _CANTOPEN: "cannot be opened"}.get(
            code, "cannot be read or written (a disk I/O error)"
        )
        return StoreError(
            f"the mirror at {path} {what}: {exc}; check the file, its directory and "
            "TESTIO_MIRROR_HOME",
            for_agent=f"the mirror's database file {what}; check the file and its disk "
            "(`testio-mirror status` shows where it is)",
        )
    return StoreError(
        f"cannot use the mirror at {path}: {exc}",
        for_agent="the mirror's database could not be used; the server logged the details "
        "(`testio-mirror status` shows where the file is)",
    )
