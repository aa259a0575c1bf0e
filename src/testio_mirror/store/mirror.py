"""``Mirror``: the database and every repository, built once per App.

Example::

    mirror = await Mirror.open(settings, client)
    answer = await mirror.tests.get_test(1234)
    await mirror.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from testio_mirror.settings import Settings
from testio_mirror.store.account import Account, bind_account, check_account
from testio_mirror.store.bugs import BugRepository
from testio_mirror.store.exploratory_tests import ExploratoryTestRepository
from testio_mirror.store.features import FeatureRepository
from testio_mirror.store.outbox import Outbox
from testio_mirror.store.outbox_sync import cancel_live_changes
from testio_mirror.store.products import ProductRepository
from testio_mirror.store.readthrough.freshness import Clock, FreshnessPolicy
from testio_mirror.store.readthrough.repository import ClientSource
from testio_mirror.store.readthrough.rule import ReadThroughGate
from testio_mirror.store.search import SearchRepository
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import utc_now
from testio_mirror.store.summaries import SummaryRepository
from testio_mirror.store.sync_state import SyncStateRepository, empty_mirror
from testio_mirror.store.test_cases import TestCaseRepository
from testio_mirror.store.testers import TesterRepository
from testio_mirror.upstream.health import UpstreamHealth

if TYPE_CHECKING:
    from testio_mirror.store.bug_facts import BugFacts


class Mirror:
    """The local mirror: one database, one repository per entity."""

    def __init__(
        self,
        db: Database,
        client: ClientSource | None,
        policy: FreshnessPolicy,
        gate: ReadThroughGate | None = None,
        account: Account | None = None,
    ) -> None:
        self.db = db
        self.account = account
        self.policy = policy
        self.gate = gate
        self.products = ProductRepository(db, client, policy, gate)
        self.features = FeatureRepository(db, client, policy, gate)
        self.tests = ExploratoryTestRepository(db, client, policy, gate)
        self.bugs = BugRepository(db, client, policy, gate)
        self.test_cases = TestCaseRepository(db, client, policy, gate, self.tests)
        self.search = SearchRepository(db)
        self.testers = TesterRepository(db, self.bugs)
        self.summaries = SummaryRepository(db, policy, self.products, self.features, self.bugs)
        self.sync_state = SyncStateRepository(db)
        self.outbox = Outbox(db, policy.stamp)
        self._bug_facts: BugFacts | None = None

    @property
    def bug_facts(self) -> BugFacts:
        """query_metrics' in-memory columns, kept per mirror and loaded at the first query;
        numpy is imported then, so a sync or a server nobody asks for metrics never loads it
        (about 15 MB and 80 ms)."""
        if self._bug_facts is None:
            from testio_mirror.store.bug_facts import BugFacts

            self._bug_facts = BugFacts()
        return self._bug_facts

    @classmethod
    async def open(
        cls,
        settings: Settings,
        client: ClientSource | None,
        clock: Clock = utc_now,
        *,
        replace_account: bool = False,
        read_only: bool = False,
    ) -> Mirror:
        """Open ``<TESTIO_MIRROR_HOME>/mirror.db``; ``client`` None serves the mirror offline.

        ``client`` is what read-throughs ask TestIO with (the App's makes one attempt per
        request: ``app.read_through_client``); a reader waits for it at most
        ``TESTIO_READ_THROUGH_TIMEOUT_SECONDS``, and not at all while TestIO is known down
        (``mirror.gate.health``, probed once per ``TESTIO_READ_THROUGH_PROBE_INTERVAL_SECONDS``).

        The mirror must hold the account ``settings`` name (``store/account.py``), unless
        ``replace_account``: the caller is about to empty it (a nuke), which binds it to this
        account; a damaged file is then moved aside and replaced by a new one. ``read_only``: the
        caller only reads (``testio-mirror status``), so the account is compared, never bound.

        Raises:
            AccountMismatchError: the mirror holds another account (base URL or token).
            MirrorBusyError: another process kept writing while this open had to write.
            MirrorDamagedError: the file is damaged.
            StoreError: the database cannot be opened (``errors.py`` names the others).
        """
        db = await Database.open(
            settings.database_path,
            busy_timeout_seconds=settings.mirror_busy_timeout_seconds,
            rebuild_if_damaged=replace_account,
        )
        policy = FreshnessPolicy.from_settings(settings, clock)
        account = Account.of(settings)
        if not replace_account:
            try:
                await check_account(db, account, policy.stamp(), bind=not read_only)
            except BaseException:
                await db.close()
                raise
        health = UpstreamHealth(settings.read_through_probe_interval_seconds, clock)
        gate = ReadThroughGate(health, settings.read_through_timeout_seconds)
        return cls(db, client, policy, gate, account)

    async def empty(self) -> None:
        """Delete every mirrored entity (the sync history and the outbox's audit stay), cancel
        every live triage change (never sent to the account the mirror is refilled from), bind
        the mirror to the account it was opened for, and give the freed space back to the file
        system: the first step of a nuke, run while holding the sync lock."""
        async with self.db.transaction() as conn:
            await cancel_live_changes(
                conn, self.policy.stamp(), "nuke", "the mirror was emptied (sync --nuke)"
            )
            await empty_mirror(conn)
            if self.account is not None:
                await bind_account(conn, self.account, self.policy.stamp())
        await self.db.vacuum()

    async def close(self) -> None:
        """Stop the read-throughs still fetching in the background, then close the database."""
        for repository in (self.products, self.features, self.tests, self.bugs, self.test_cases):
            await repository.close()
        await self.db.close()
