"""``Mirror``: the database and every repository, built once per App.

Example::

    mirror = await Mirror.open(settings, client)
    answer = await mirror.tests.get_test(1234)
    await mirror.close()
"""

from __future__ import annotations

from testio_mirror.settings import Settings
from testio_mirror.store.bugs import BugRepository
from testio_mirror.store.exploratory_tests import ExploratoryTestRepository
from testio_mirror.store.features import FeatureRepository
from testio_mirror.store.products import ProductRepository
from testio_mirror.store.readthrough.freshness import Clock, FreshnessPolicy
from testio_mirror.store.search import SearchRepository
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.store.sync_state import SyncStateRepository
from testio_mirror.upstream.client import CustomerApiClient


class Mirror:
    """The local mirror: one database, one repository per entity."""

    def __init__(
        self, db: Database, client: CustomerApiClient | None, policy: FreshnessPolicy
    ) -> None:
        self.db = db
        self.policy = policy
        self.products = ProductRepository(db, client, policy)
        self.features = FeatureRepository(db, client, policy)
        self.tests = ExploratoryTestRepository(db, client, policy)
        self.bugs = BugRepository(db, client, policy)
        self.search = SearchRepository(db)
        self.sync_state = SyncStateRepository(db)

    @classmethod
    async def open(
        cls, settings: Settings, client: CustomerApiClient | None, clock: Clock = utc_now
    ) -> Mirror:
        """Open ``<TESTIO_MIRROR_HOME>/mirror.db``; ``client`` None serves the mirror offline.

        Raises:
            StoreError: the database cannot be opened.
        """
        db = await Database.open(settings.database_path)
        return cls(db, client, FreshnessPolicy.from_settings(settings, clock))

    async def close(self) -> None:
        await self.db.close()
