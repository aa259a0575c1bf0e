"""Writer marks: held while a process writes, abandoned when it dies, gone after a clean close."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testio_mirror.store.sqlite.writer_marks import WriterMark, abandoned_marks, clear

PLACE_AND_DIE = """
import os, sys
from pathlib import Path
from testio_mirror.store.sqlite.writer_marks import WriterMark
WriterMark(Path(sys.argv[1])).place()
os._exit(0)  # no clean close
"""


def test_a_live_mark_is_not_abandoned_and_a_removed_one_is_gone(tmp_path: Path) -> None:
    database = tmp_path / "mirror.db"
    mark = WriterMark(database)
    mark.place()
    mark.place()  # once per process
    assert len(list((tmp_path / "mirror.db.writers").iterdir())) == 1
    assert abandoned_marks(database) == []
    mark.remove()
    assert list((tmp_path / "mirror.db.writers").iterdir()) == []


def test_the_mark_of_a_process_that_never_closed_is_abandoned(tmp_path: Path) -> None:
    database = tmp_path / "mirror.db"
    subprocess.run([sys.executable, "-c", PLACE_AND_DIE, str(database)], check=True, timeout=60)
    found = abandoned_marks(database)
    assert len(found) == 1
    clear(found)
    assert abandoned_marks(database) == []


def test_no_directory_means_no_mark(tmp_path: Path) -> None:
    assert abandoned_marks(tmp_path / "mirror.db") == []
