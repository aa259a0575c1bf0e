"""Marks of the processes writing to a mirror: how an open tells a clean close from a crash.

A process leaves a mark in ``<database>.writers/`` at its first write: a file of its own it
holds an exclusive ``flock`` on, removed when it closes the database. The kernel drops the lock
of a process that ends, so a mark nobody holds was left by a process that never closed
(killed, crashed, the machine lost power): the next open checks the file (``PRAGMA
quick_check``) before using it, then clears such marks. A process that only reads leaves none.

Example::

    mark = WriterMark(path)
    mark.place()               # before the first write; once per process
    abandoned = abandoned_marks(path)   # at open: non-empty after an unclean close
    clear(abandoned)           # once the file was checked
    mark.remove()              # at a clean close
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from pathlib import Path

from testio_mirror.store.sqlite.files import DIR_MODE, FILE_MODE


def marks_directory(database: Path) -> Path:
    return database.with_name(database.name + ".writers")


class WriterMark:
    """This process's mark; placing it twice is a no-op."""

    def __init__(self, database: Path) -> None:
        self._directory = marks_directory(database)
        self._path: Path | None = None
        self._descriptor: int | None = None

    def place(self) -> None:
        """Leave the mark (held until ``remove`` or the process ends).

        Raises:
            OSError: the directory or the mark cannot be made.
        """
        if self._descriptor is not None:
            return
        with contextlib.suppress(FileExistsError):
            os.mkdir(self._directory, DIR_MODE)
        name = secrets.token_hex(8)
        # Made under a hidden name and renamed once locked, so no open sees it unlocked.
        hidden = self._directory / f".{name}"
        descriptor = os.open(hidden, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            final = self._directory / name
            os.rename(hidden, final)
        except BaseException:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise
        self._descriptor, self._path = descriptor, final

    def remove(self) -> None:
        """Clear the mark: this process closed the database cleanly."""
        descriptor, path = self._descriptor, self._path
        self._descriptor = self._path = None
        if descriptor is None or path is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(descriptor)


def abandoned_marks(database: Path) -> list[Path]:
    """Marks no live process holds: each was left by a process that never closed the mirror."""
    directory = marks_directory(database)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[Path] = []
    for name in names:
        if name.startswith("."):
            continue
        path = directory / name
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile (its process closed), or not a mark
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its process is alive
        finally:
            os.close(descriptor)
        found.append(path)
    return found


def clear(marks: list[Path]) -> None:
    """Remove abandoned marks once the file they warn about was checked."""
    for path in marks:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
