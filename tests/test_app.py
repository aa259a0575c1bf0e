"""``open_app``: a home of another account is refused before anything runs, unless the caller
is about to nuke it."""

from __future__ import annotations

from pathlib import Path

import pytest

from testio_mirror.app import open_app
from testio_mirror.errors import AccountMismatchError
from testio_mirror.settings import Settings, load_settings
from tests.helpers.store_data import small_world, write_world


def settings_for(home: Path, token: str) -> Settings:
    return load_settings(
        customer_api_base_url="http://127.0.0.1:9/customer/v2",
        customer_api_token=token,
        mirror_home=home,
    )


async def test_open_app_refuses_another_accounts_home_unless_replacing_it(
    tmp_path: Path,
) -> None:
    async with open_app(settings_for(tmp_path, "token-of-account-a-0123")) as app:
        await write_world(app.mirror.db, small_world())
    with pytest.raises(AccountMismatchError, match="a different API token"):
        async with open_app(settings_for(tmp_path, "token-of-account-b-4567")):
            pytest.fail("opened another account's mirror")
    other = settings_for(tmp_path, "token-of-account-b-4567")
    async with open_app(other, replace_account=True) as app:
        assert (await app.mirror.sync_state.counts())["products"] > 0  # nothing emptied yet
