"""``App``: everything a process needs, built once from ``Settings``.

The server and the CLI build it the same way::

    async with open_app(settings) as app:
        await app.sync.execute_sync(trigger=SyncTrigger.CLI)
        answer = await app.mirror.tests.get_test(1234)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from testio_mirror.settings import Settings
from testio_mirror.store.mirror import Mirror
from testio_mirror.sync.service import SyncService
from testio_mirror.upstream.client import CustomerApiClient


@dataclass
class App:
    """Settings, the TestIO client, the mirror and the sync service of one process."""

    settings: Settings
    client: CustomerApiClient
    mirror: Mirror
    sync: SyncService


@contextlib.asynccontextmanager
async def open_app(
    settings: Settings, client: CustomerApiClient | None = None, *, replace_account: bool = False
) -> AsyncIterator[App]:
    """Build the App (with ``client`` when the caller made it already, say to send a request
    while the rest loads); closes the mirror and the client on exit. ``replace_account``: the
    caller runs a nuke, so a mirror of another account is opened (the nuke rebinds it).

    Raises:
        AccountMismatchError: the mirror holds another account (``store/account.py``).
        StoreError: the mirror cannot be opened.
    """
    client = client or CustomerApiClient(settings)
    try:
        mirror = await Mirror.open(
            settings,
            client if settings.customer_api_token is not None else None,
            replace_account=replace_account,
        )
        try:
            app = App(settings, client, mirror, SyncService(settings, client, mirror))
            await app.sync.recover()
            yield app
        finally:
            await mirror.close()
    finally:
        await client.aclose()
