"""The mirror's files on disk: made private, never reached through a symlink.

The data directory is made (or tightened to) 0700 and the database file 0600 before SQLite
touches it. Nothing is opened or changed through a symlink: the home, ``mirror.db`` and the
files SQLite keeps next to it (``-wal``, ``-shm``, ``-journal``) are checked with ``lstat`` and
opened with ``O_NOFOLLOW``, so a symlink placed there is refused with an error naming it, and
its target is neither read, written nor chmod-ed. A mode is changed only right after
``lstat`` shows a regular file.

Example::

    prepare_files(path)      # before the first connection
    secure_sidecars(path)    # after it: SQLite made -wal and -shm
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

from testio_mirror.errors import StoreError

logger = logging.getLogger("testio_mirror.store")

DIR_MODE = 0o700
FILE_MODE = 0o600
SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")
DAMAGED_SUFFIX = ".damaged"


def prepare_files(path: Path) -> None:
    """Make the data directory 0700 and the database file 0600 before SQLite opens it.

    Raises:
        StoreError: the directory or file cannot be created, is not ours to change, or is a
            symlink.
    """
    directory = path.parent
    try:
        directory.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
        _refuse_symlink(directory, "TESTIO_MIRROR_HOME")
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(descriptor, DIR_MODE)
        finally:
            os.close(descriptor)
        _refuse_symlink(path, "the mirror's database file")
        _private_file(path, create=True)
        secure_sidecars(path)
    except StoreError:
        raise
    except OSError as exc:
        raise StoreError(
            f"cannot prepare the mirror at {path}: {exc.strerror}; check TESTIO_MIRROR_HOME",
            for_agent="the mirror's directory cannot be used; check TESTIO_MIRROR_HOME",
        ) from None


def secure_sidecars(path: Path) -> None:
    """Refuse a symlinked ``-wal``, ``-shm`` or ``-journal`` next to ``path`` and make the ones
    there 0600 (SQLite creates them with the database file's mode; this keeps a looser one that
    was there before from staying loose).

    Raises:
        StoreError: one of them is a symlink or not a regular file.
    """
    for suffix in SIDECAR_SUFFIXES:
        sidecar = path.with_name(path.name + suffix)
        _refuse_symlink(sidecar, "a file SQLite keeps next to the mirror")
        try:
            _private_file(sidecar, create=False)
        except FileNotFoundError:
            continue  # SQLite removes them as it goes


def move_damaged_aside(path: Path) -> Path:
    """Rename a damaged database (and its WAL) to ``mirror.db.damaged`` (replacing an older
    one), so a new file can be made in its place; returns the new name of the damaged file.

    Raises:
        OSError: the files cannot be renamed.
    """
    kept = path.with_name(path.name + DAMAGED_SUFFIX)
    os.replace(path, kept)
    wal = path.with_name(path.name + "-wal")
    if os.path.lexists(wal):
        os.replace(wal, kept.with_name(kept.name + "-wal"))
    for suffix in ("-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        if os.path.lexists(sidecar):
            os.unlink(sidecar)  # an index of the old WAL, or a journal SQLite would replay
    logger.warning("the damaged mirror file was moved to %s; a new one is made", kept)
    return kept


def _refuse_symlink(path: Path, what: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise StoreError(
            f"{path} ({what}) is a symlink: testio-mirror does not follow symlinks in its home; "
            "replace it with the file itself, or point TESTIO_MIRROR_HOME at the directory "
            "that holds it",
            for_agent=f"a file of the mirror ({path.name}) is a symlink, which testio-mirror "
            "refuses; replace it with the file itself (`testio-mirror status` names it)",
        )


def _private_file(path: Path, *, create: bool) -> None:
    """Make ``path`` 0600 (creating it when ``create``), refusing a symlink or a non-file.

    The mode is changed by name right after ``lstat`` shows a regular file, never through a
    descriptor of our own: closing any descriptor of a file SQLite has open in this process
    drops SQLite's POSIX locks on it, and another process would then reset the shared WAL
    index under this one's feet.
    """
    if create:
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE))
        except FileExistsError:
            pass  # there already: checked below
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a dangling symlink
                _refuse_symlink(path, "the mirror's database file")
            raise
    found = os.lstat(path)
    if stat.S_ISLNK(found.st_mode):
        _refuse_symlink(path, "a file of the mirror")
    if not stat.S_ISREG(found.st_mode):
        raise StoreError(
            f"{path} is not a regular file; move it away or point TESTIO_MIRROR_HOME elsewhere",
            for_agent=f"a file of the mirror ({path.name}) is not a regular file; move it away",
        )
    if stat.S_IMODE(found.st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)
