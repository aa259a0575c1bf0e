"""The mirror's files: private modes, and no symlink followed (the target left alone)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from testio_mirror.errors import StoreError
from testio_mirror.store.sqlite.files import move_damaged_aside, prepare_files, secure_sidecars


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_prepare_makes_a_private_directory_and_file(tmp_path: Path) -> None:
    path = tmp_path / "home" / "mirror.db"
    prepare_files(path)
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600


@pytest.mark.parametrize(
    "name", ["mirror.db", "mirror.db-wal", "mirror.db-shm", "mirror.db-journal"]
)
def test_a_symlinked_file_is_refused_by_name(tmp_path: Path, name: str) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    os.chmod(target, 0o644)
    (home / name).symlink_to(target)
    with pytest.raises(StoreError, match=f"{name} .*symlink") as caught:
        prepare_files(home / "mirror.db")
    assert str(home) not in caught.value.for_agent
    assert mode(target) == 0o644
    assert target.read_bytes() == b"precious"


def test_a_symlinked_home_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    (tmp_path / "home").symlink_to(real)
    with pytest.raises(StoreError, match="TESTIO_MIRROR_HOME"):
        prepare_files(tmp_path / "home" / "mirror.db")
    assert mode(real) == 0o755


def test_loose_sidecars_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    path.write_bytes(b"")
    wal = tmp_path / "mirror.db-wal"
    wal.write_bytes(b"")
    os.chmod(wal, 0o644)
    secure_sidecars(path)
    assert mode(wal) == 0o600


def test_a_damaged_file_and_its_wal_are_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    path.write_bytes(b"db")
    (tmp_path / "mirror.db-wal").write_bytes(b"wal")
    (tmp_path / "mirror.db-shm").write_bytes(b"shm")
    kept = move_damaged_aside(path)
    assert kept.read_bytes() == b"db"
    assert (tmp_path / "mirror.db.damaged-wal").read_bytes() == b"wal"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mirror.db.damaged",
        "mirror.db.damaged-wal",
    ]
