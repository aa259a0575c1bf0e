"""Which account a mirror holds: bound at the first open, checked at every open; another base
URL or token is refused (saying which), an empty or older mirror takes the current account,
a nuke rebinds, and the token is never stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from testio_mirror.errors import AccountMismatchError, StoreError
from testio_mirror.settings import Settings, load_settings
from testio_mirror.store.account import adopt_account
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.store.sync_state import SyncEvent, add_event
from tests.helpers.store_data import small_world, write_world

TOKEN = "tok-ACCOUNT-A-0123456789"
OTHER_TOKEN = "tok-ACCOUNT-B-9876543210"
URL = "https://api.test.io/customer/v2"
OTHER_URL = "http://127.0.0.1:8765/customer/v2"


def settings_for(home: Path, url: str = URL, token: str | None = TOKEN) -> Settings:
    return load_settings(customer_api_base_url=url, customer_api_token=token, mirror_home=home)


async def filled(settings: Settings) -> None:
    """A mirror at ``settings`` holding an account."""
    mirror = await Mirror.open(settings, None)
    try:
        await write_world(mirror.db, small_world())
    finally:
        await mirror.close()


async def reopen(settings: Settings) -> None:
    mirror = await Mirror.open(settings, None)
    await mirror.close()


async def test_the_same_account_opens_again(tmp_path: Path) -> None:
    await filled(settings_for(tmp_path))
    await reopen(settings_for(tmp_path))
    await reopen(settings_for(tmp_path, token=None))  # offline: the token cannot be told


async def test_another_base_url_is_refused_naming_both_and_what_to_do(tmp_path: Path) -> None:
    await filled(settings_for(tmp_path))
    with pytest.raises(AccountMismatchError) as refused:
        await reopen(settings_for(tmp_path, url=OTHER_URL))
    message = str(refused.value)
    assert URL in message
    assert OTHER_URL in message
    assert "TESTIO_MIRROR_HOME" in message
    assert "sync --nuke --yes" in message
    assert isinstance(refused.value, StoreError)
    # Offline too: what a read-only command would show is another account's mirror.
    with pytest.raises(AccountMismatchError):
        await reopen(settings_for(tmp_path, url=OTHER_URL, token=None))


async def test_another_token_is_refused_without_showing_either(tmp_path: Path) -> None:
    await filled(settings_for(tmp_path))
    with pytest.raises(AccountMismatchError) as refused:
        await reopen(settings_for(tmp_path, token=OTHER_TOKEN))
    message = str(refused.value)
    assert "a different API token" in message
    assert "TESTIO_MIRROR_HOME" in message
    assert "sync --nuke --yes" in message
    assert TOKEN not in message
    assert OTHER_TOKEN not in message


async def test_the_token_is_never_stored_only_a_salted_fingerprint(tmp_path: Path) -> None:
    await filled(settings_for(tmp_path))
    await filled(settings_for(tmp_path / "other"))
    raw = (tmp_path / "mirror.db").read_bytes()
    assert TOKEN.encode() not in raw
    with sqlite3.connect(tmp_path / "mirror.db") as plain:
        first = plain.execute("SELECT base_url, token_fingerprint FROM mirror_account").fetchall()
    with sqlite3.connect(tmp_path / "other" / "mirror.db") as plain:
        second = plain.execute("SELECT token_fingerprint FROM mirror_account").fetchall()
    assert first[0][0] == URL
    assert len(first[0][1]) == 64
    assert TOKEN not in first[0][1]
    # Salted per mirror: the same token gives two mirrors different fingerprints.
    assert first[0][1] != second[0][0]


async def test_an_empty_mirror_takes_the_account_it_is_opened_for(tmp_path: Path) -> None:
    # A first sync with a mistyped token stores nothing: the right token must not be refused.
    await reopen(settings_for(tmp_path, token=OTHER_TOKEN))
    await filled(settings_for(tmp_path))
    with pytest.raises(AccountMismatchError):
        await reopen(settings_for(tmp_path, token=OTHER_TOKEN))


async def test_a_mirror_from_before_the_binding_adopts_the_current_account(
    tmp_path: Path,
) -> None:
    # Version 5, the last before mirror_account; its bugs as that version held them.
    db = await Database.open(tmp_path / "mirror.db", target_version=5)
    await write_world(db, small_world(), before_outbox=True)
    await db.close()
    await reopen(settings_for(tmp_path, token=None))  # offline: binds the base URL only
    await reopen(settings_for(tmp_path))  # the first token seen is adopted
    with pytest.raises(AccountMismatchError):
        await reopen(settings_for(tmp_path, token=OTHER_TOKEN))


async def test_a_nuke_binds_the_mirror_to_the_new_account(tmp_path: Path) -> None:
    await filled(settings_for(tmp_path))
    mirror = await Mirror.open(settings_for(tmp_path, url=OTHER_URL), None, replace_account=True)
    try:
        await mirror.empty()
    finally:
        await mirror.close()
    with sqlite3.connect(tmp_path / "mirror.db") as plain:
        bound = plain.execute("SELECT base_url FROM mirror_account").fetchall()
    assert bound == [(OTHER_URL,)]
    await filled(settings_for(tmp_path, url=OTHER_URL))
    with pytest.raises(AccountMismatchError):
        await reopen(settings_for(tmp_path))


async def test_opening_to_replace_does_not_rebind_until_the_mirror_is_emptied(
    tmp_path: Path,
) -> None:
    # A nuke that never ran (the lock was busy) leaves the mirror bound to its own account.
    await filled(settings_for(tmp_path))
    await reopen_replacing(settings_for(tmp_path, token=OTHER_TOKEN))
    await reopen(settings_for(tmp_path))
    with pytest.raises(AccountMismatchError):
        await reopen(settings_for(tmp_path, token=OTHER_TOKEN))


async def reopen_replacing(settings: Settings) -> None:
    mirror = await Mirror.open(settings, None, replace_account=True)
    await mirror.close()


async def test_adopting_rebinds_whatever_the_mirror_held(tmp_path: Path) -> None:
    # serve --sandbox: the same simulated account at a new port with a new token each start.
    await filled(settings_for(tmp_path))
    await adopt_account(settings_for(tmp_path, url=OTHER_URL, token=OTHER_TOKEN))
    await reopen(settings_for(tmp_path, url=OTHER_URL, token=OTHER_TOKEN))
    with pytest.raises(AccountMismatchError):
        await reopen(settings_for(tmp_path))


async def test_an_empty_mirror_with_a_run_in_progress_is_not_taken_over(tmp_path: Path) -> None:
    # Two accounts opening one new home at once: the second must not rebind it under the first.
    mirror = await Mirror.open(settings_for(tmp_path), None)
    try:
        async with mirror.db.transaction() as conn:
            await add_event(conn, SyncEvent("run-1", utc_now(), "run", status="running"))
        with pytest.raises(AccountMismatchError):
            await reopen(settings_for(tmp_path, token=OTHER_TOKEN))
    finally:
        await mirror.close()
