"""``App``: everything a process needs, built once from ``Settings``.

The server and the CLI build it the same way::

    async with open_app(settings) as app:
        await app.sync.execute_sync(trigger=SyncTrigger.CLI)
        answer = await app.mirror.tests.get_test(1234)

Queries read through with a client of their own (``read_through_client``): one attempt per
request, since a reader waits at most ``TESTIO_READ_THROUGH_TIMEOUT_SECONDS`` and is then
answered from the mirror; the retry ladder is the sync's, whose client is ``App.client``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from testio_mirror.settings import Settings
from testio_mirror.store.mirror import Mirror
from testio_mirror.sync.service import SyncService
from testio_mirror.upstream.client import CustomerApiClient


def read_through_client(settings: Settings) -> CustomerApiClient:
    """The client queries read through with: like the sync's, but one attempt per request.

    Its HTTP timeout stays ``TESTIO_HTTP_TIMEOUT_SECONDS``: a reader stops waiting at the
    read-through deadline, and the fetch may still finish in the background and be stored.
    """
    return CustomerApiClient(settings.model_copy(update={"retry_max_attempts": 1}))


class OnDemandClient:
    """A client made on first use: a process that never reads through (``testio-mirror
    sync``) never builds one (an https client loads the CA bundle)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: CustomerApiClient | None = None

    def __call__(self) -> CustomerApiClient:
        if self._client is None:
            self._client = read_through_client(self._settings)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


@dataclass
class App:
    """Settings, the TestIO clients, the mirror and the sync service of one process."""

    settings: Settings
    client: CustomerApiClient  # the sync's, with the retry ladder
    mirror: Mirror
    sync: SyncService
    read_client: OnDemandClient  # the queries' read-through, one attempt per request


@contextlib.asynccontextmanager
async def open_app(
    settings: Settings, client: CustomerApiClient | None = None, *, replace_account: bool = False
) -> AsyncIterator[App]:
    """Build the App (with ``client`` when the caller made it already, say to send a request
    while the rest loads); closes the mirror and the clients on exit. ``replace_account``: the
    caller runs a nuke, so a mirror of another account is opened (the nuke rebinds it).

    Raises:
        AccountMismatchError: the mirror holds another account (``store/account.py``).
        StoreError: the mirror cannot be opened.
    """
    client = client or CustomerApiClient(settings)
    reading = OnDemandClient(settings)
    try:
        mirror = await Mirror.open(
            settings,
            reading if settings.customer_api_token is not None else None,
            replace_account=replace_account,
        )
        try:
            app = App(settings, client, mirror, SyncService(settings, client, mirror), reading)
            await app.sync.recover()
            yield app
        finally:
            await mirror.close()
    finally:
        await reading.aclose()
        await client.aclose()
