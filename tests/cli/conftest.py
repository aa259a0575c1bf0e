"""Fixtures of the command-line tests: child processes stopped through their handles, a home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.command_line import Children


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    workdir = tmp_path / "cwd"  # no stray .env file is read from here
    workdir.mkdir()
    spawned = Children(workdir)
    try:
        yield spawned
    finally:
        spawned.stop_all()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"
