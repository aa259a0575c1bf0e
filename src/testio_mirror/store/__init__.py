"""The mirror: SQLite schema and migrations, repositories with freshness and read-through.

All SQL of the project lives in this package. Start with ``Mirror``.
"""

from testio_mirror.store.bugs import BugRepository, write_bugs, write_reject_reasons
from testio_mirror.store.cursor import CursorError
from testio_mirror.store.db import Database, StoreError
from testio_mirror.store.exploratory_tests import TestRepository, tombstone_tests, write_tests
from testio_mirror.store.features import FeatureRepository, write_features
from testio_mirror.store.freshness import FreshnessPolicy
from testio_mirror.store.migrations import LATEST_VERSION, MIGRATIONS
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import ProductRepository, write_products
from testio_mirror.store.readthrough import OfflineError
from testio_mirror.store.records import (
    Answer,
    BugRecord,
    FeatureRecord,
    Freshness,
    Page,
    ProductRecord,
    SearchHit,
    StatsGroup,
    TestRecord,
)
from testio_mirror.store.search import SearchRepository, fts_query
from testio_mirror.store.sync_state import (
    ListingState,
    PeriodStats,
    SyncCounters,
    SyncEvent,
    SyncStateRepository,
    add_event,
    empty_mirror,
    mark_interrupted,
    save_listing_state,
    update_run,
)
from testio_mirror.store.upsert import WriteStats

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Answer",
    "BugRecord",
    "BugRepository",
    "CursorError",
    "Database",
    "FeatureRecord",
    "FeatureRepository",
    "Freshness",
    "FreshnessPolicy",
    "ListingState",
    "Mirror",
    "OfflineError",
    "Page",
    "PeriodStats",
    "ProductRecord",
    "ProductRepository",
    "SearchHit",
    "SearchRepository",
    "StatsGroup",
    "StoreError",
    "SyncCounters",
    "SyncEvent",
    "SyncStateRepository",
    "TestRecord",
    "TestRepository",
    "WriteStats",
    "add_event",
    "empty_mirror",
    "fts_query",
    "mark_interrupted",
    "save_listing_state",
    "tombstone_tests",
    "update_run",
    "write_bugs",
    "write_features",
    "write_products",
    "write_reject_reasons",
    "write_tests",
]
