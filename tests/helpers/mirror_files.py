"""The mirror's files on disk: their permission bits and SQLite's ``-wal``/``-shm`` sidecars."""

from __future__ import annotations

import stat
from pathlib import Path


def mode(path: Path) -> int:
    """The permission bits of ``path`` (``0o600`` and the like)."""
    return stat.S_IMODE(path.stat().st_mode)


def sidecars(database: Path) -> list[Path]:
    """The ``-wal`` and ``-shm`` files of ``database`` that exist now."""
    found = [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
    return [path for path in found if path.exists()]
