"""Fixtures of the store tests: an empty database, the small sandbox account, and a mirror
seeded with a larger one (copied per test from one file per module)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from testio_mirror.sandbox import SandboxWorld
from testio_mirror.settings import load_settings
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.sqlite.db import Database
from tests.helpers.outbox_data import OutboxMirror, TickingClock
from tests.helpers.seeded_mirror import JSON, PRODUCT_TTL, SPEC, FakeClock, Seeded, Statement, seed
from tests.helpers.store_data import open_database, small_world, write_world


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path)
    yield database
    await database.close()


@pytest.fixture
def world() -> SandboxWorld:
    return small_world()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, JSON]:
    """One seeded mirror file per module; every test gets its own copy."""
    world = SandboxWorld(SPEC)
    home = tmp_path_factory.mktemp("template") / "home"
    asyncio.run(seed(home, world))
    return home, world.snapshot()


@pytest.fixture
async def seeded(template: tuple[Path, JSON], tmp_path: Path) -> AsyncIterator[Seeded]:
    """An offline mirror holding the whole account."""
    home = tmp_path / "home"
    shutil.copytree(template[0], home)
    settings = load_settings(mirror_home=home, product_ttl_seconds=PRODUCT_TTL)
    clock = FakeClock()
    mirror = await Mirror.open(settings, None, clock=clock)
    try:
        yield Seeded(mirror, clock, template[1])
    finally:
        await mirror.close()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[Statement]:
    """Every statement the mirror's connections read with, as run (SQL and parameters)."""
    seen: list[Statement] = []
    execute = aiosqlite.Connection.execute_fetchall

    async def recording(self: aiosqlite.Connection, sql: str, parameters: Any = None) -> Any:
        seen.append((sql, parameters))
        return await execute(self, sql, parameters)

    monkeypatch.setattr(aiosqlite.Connection, "execute_fetchall", recording)
    return seen


@pytest.fixture
async def outbox_mirror(tmp_path: Path) -> AsyncIterator[OutboxMirror]:
    """An offline mirror holding the small account, its clock moved on by every stamp."""
    world = small_world()
    mirror = await Mirror.open(
        load_settings(mirror_home=tmp_path / "home"), None, clock=TickingClock()
    )
    try:
        await write_world(mirror.db, world, mirror.policy.stamp())
        yield OutboxMirror(mirror, world.snapshot())
    finally:
        await mirror.close()
