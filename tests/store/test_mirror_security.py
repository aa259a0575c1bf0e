"""What the mirror leaves on disk: a private directory and files, and never the API token."""

from __future__ import annotations

from pathlib import Path

import pytest

from testio_mirror.settings import Settings, load_settings
from testio_mirror.store.mirror import Mirror
from tests.helpers.mirror_files import mode, sidecars
from tests.helpers.store_data import small_world, write_world

TOKEN = "tok-SECRET-123"


def settings_for(home: Path) -> Settings:
    return load_settings(customer_api_token=TOKEN, mirror_home=home)


@pytest.mark.parametrize("existing", [False, True])
async def test_the_data_directory_and_files_are_private(tmp_path: Path, existing: bool) -> None:
    home = tmp_path / "home"
    if existing:
        # A directory and file made earlier with the usual, too open, modes.
        home.mkdir(mode=0o755)
        home.chmod(0o755)
        (home / "mirror.db").touch()
        (home / "mirror.db").chmod(0o644)
    settings = settings_for(home)
    assert settings.database_path == home / "mirror.db"
    mirror = await Mirror.open(settings, client=None)
    try:
        await write_world(mirror.db, small_world())
        assert mode(home) == 0o700
        assert mode(settings.database_path) == 0o600
        wal = sidecars(settings.database_path)
        assert wal, "a WAL database that was written has its -wal file while open"
        for path in wal:
            assert mode(path) == 0o600, path.name
    finally:
        await mirror.close()
    assert mode(home) == 0o700
    assert mode(settings.database_path) == 0o600
    for path in sidecars(settings.database_path):
        assert mode(path) == 0o600, path.name


async def token_hits(mirror: Mirror) -> tuple[list[str], int]:
    """Where the token shows in any column of any table (FTS shadow tables included), and how
    many text values were scanned."""
    async with mirror.db.reader() as conn:
        tables = await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
        hits: list[str] = []
        scanned = 0
        for (table,) in tables:
            for row in await conn.execute_fetchall(f'SELECT * FROM "{table}"'):  # noqa: S608
                for value in row:
                    if isinstance(value, str):
                        scanned += 1
                    text = value if isinstance(value, bytes) else str(value).encode()
                    if TOKEN.encode() in text:
                        hits.append(table)
    return hits, scanned


def file_hits(settings: Settings) -> list[str]:
    files = [settings.database_path, *sidecars(settings.database_path)]
    return [path.name for path in files if TOKEN.encode() in path.read_bytes()]


async def test_the_token_is_never_stored(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    assert settings.customer_api_token is not None
    assert settings.customer_api_token.get_secret_value() == TOKEN
    mirror = await Mirror.open(settings, client=None)
    try:
        await write_world(mirror.db, small_world())
        hits, scanned = await token_hits(mirror)
        assert hits == []
        assert scanned > 1000  # the data really was there to scan
        assert file_hits(settings) == []
    finally:
        await mirror.close()
    assert file_hits(settings) == []
    assert not any(TOKEN in p.name for p in settings.mirror_home.iterdir())


async def test_the_scan_finds_a_stored_token(tmp_path: Path) -> None:
    # The scans above would notice a leak: store the token on purpose and look for it.
    settings = settings_for(tmp_path / "home")
    mirror = await Mirror.open(settings, client=None)
    try:
        async with mirror.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO sync_events (run_id, at, kind, message) VALUES ('r', 'now', 'x', ?)",
                (f"GET /products Authorization: Token {TOKEN}",),
            )
        hits, _ = await token_hits(mirror)
        assert hits == ["sync_events"]
        assert file_hits(settings) != []
    finally:
        await mirror.close()
