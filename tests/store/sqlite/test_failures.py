"""What an sqlite3 error means for the user: each kind becomes its own StoreError, whose
answer for an agent names neither the file nor SQLite's words."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from testio_mirror.errors import DiskFullError, MirrorBusyError, MirrorDamagedError, StoreError
from testio_mirror.store.sqlite.failures import store_error

PATH = Path("/home/someone/.testio-mirror/mirror.db")


@pytest.mark.parametrize(
    ("error", "kind", "exit_code"),
    [
        (sqlite3.OperationalError("database is locked"), MirrorBusyError, 4),
        (sqlite3.DatabaseError("database disk image is malformed"), MirrorDamagedError, 6),
        (sqlite3.DatabaseError("file is not a database"), MirrorDamagedError, 6),
        (
            sqlite3.OperationalError("Could not decode to UTF-8 column 'content_hash'"),
            MirrorDamagedError,
            6,
        ),
        (sqlite3.OperationalError("database or disk is full"), DiskFullError, 7),
        (sqlite3.OperationalError("no such table: x"), StoreError, 1),
    ],
)
def test_each_kind_of_failure_says_what_to_do(
    error: sqlite3.Error, kind: type[StoreError], exit_code: int
) -> None:
    found = store_error(error, PATH, waited_seconds=10)
    assert type(found) is kind
    assert found.exit_code == exit_code
    assert str(PATH) not in found.for_agent
    assert str(error) not in found.for_agent


def test_the_user_reads_the_path_of_a_damaged_file() -> None:
    found = store_error(sqlite3.DatabaseError("database disk image is malformed"), PATH)
    assert str(PATH) in str(found)
    assert "--nuke" in str(found)
    assert "--nuke" in found.for_agent
