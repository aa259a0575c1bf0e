"""Read-through against the sandbox over real HTTP: fresh copies cost no request, stale ones one
request however many readers ask, failures fall back to stale copies, vanished things are
tombstoned, and offline mirrors serve what they hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from testio_mirror.errors import OfflineError
from testio_mirror.sandbox import FaultRule, SandboxServer
from testio_mirror.settings import Settings
from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.products import write_products
from testio_mirror.store.records import BugFilter
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import NotFoundError, UpstreamUnavailableError
from testio_mirror.upstream.models import Bug, Product
from tests.helpers.settings import make_settings

OPEN_TTL = 300
PRODUCT_TTL = 3600
SECTION_PRODUCT = 101  # the one product with sections in the conftest's small set
YEARS = 3 * 365 * 24 * 3600


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Env:
    sandbox: SandboxServer
    settings: Settings
    clock: FakeClock
    mirror: Mirror

    def count(self, pattern: str) -> int:
        """Requests the sandbox answered whose path matches ``pattern``."""
        return len(self.sandbox.requests.records(pattern))

    def test_id(self, status: str) -> int:
        """The lowest id of a test in ``status`` upstream."""
        tests = self.sandbox.world.snapshot()["tests"].values()
        return min(t["id"] for t in tests if t["status"] == status)

    def bugs_of(self, test_id: int) -> dict[int, dict[str, Any]]:
        bugs = self.sandbox.world.snapshot()["bugs"].values()
        return {b["id"]: b for b in bugs if b["test"]["id"] == test_id}

    def asked_test_ids(self) -> list[list[int]]:
        """The ``filter_test_cycle_ids`` of every bugs request so far, in order."""
        queries = [parse_qs(r.query) for r in self.sandbox.requests.records("bugs")]
        return [sorted(map(int, q["filter_test_cycle_ids"][-1].split(","))) for q in queries]


@pytest.fixture
async def env(sandbox: SandboxServer, tmp_path: Path) -> AsyncIterator[Env]:
    settings = make_settings(
        sandbox, tmp_path / "home", open_test_ttl_seconds=OPEN_TTL, product_ttl_seconds=PRODUCT_TTL
    )
    clock = FakeClock()
    async with CustomerApiClient(settings) as client:
        mirror = await Mirror.open(settings, client, clock=clock)
        try:
            yield Env(sandbox, settings, clock, mirror)
        finally:
            await mirror.close()


async def test_a_fresh_test_is_served_without_requests(env: Env) -> None:
    test_id = env.test_id("running")
    first = await env.mirror.tests.get_test(test_id)
    assert env.count(f"exploratory_tests/{test_id}") == 1
    assert first.freshness.source == "api"
    assert first.value.title == env.sandbox.world.test(test_id)["title"]

    env.clock.advance(OPEN_TTL - 1)
    second = await env.mirror.tests.get_test(test_id)
    assert env.count(f"exploratory_tests/{test_id}") == 1
    assert (second.freshness.source, second.freshness.stale) == ("mirror", False)
    assert second.value == first.value


async def test_a_stale_open_test_is_fetched_once_for_twenty_readers(env: Env) -> None:
    test_id = env.test_id("locked")
    await env.mirror.tests.get_test(test_id)
    env.sandbox.world.set_test_status(test_id, "customer_finalized")
    env.clock.advance(OPEN_TTL + 1)
    # Slow answers keep the fetch in flight while all twenty readers arrive.
    env.sandbox.knobs.update({"latency_ms": 150})

    answers = await asyncio.gather(*(env.mirror.tests.get_test(test_id) for _ in range(20)))

    assert env.count(f"exploratory_tests/{test_id}") == 2
    assert all(answer == answers[0] for answer in answers)
    assert answers[0].freshness.source == "api"
    assert answers[0].value.status == "customer_finalized"


async def test_an_archived_test_is_never_refetched(env: Env) -> None:
    test_id = env.test_id("archived")
    await env.mirror.tests.get_test(test_id)
    env.clock.advance(YEARS)
    answer = await env.mirror.tests.get_test(test_id)
    assert env.count(f"exploratory_tests/{test_id}") == 1
    assert (answer.freshness.source, answer.freshness.stale) == ("mirror", False)


async def test_unreachable_testio_serves_stale_copies_or_raises(env: Env) -> None:
    cached, uncached = env.test_id("running"), env.test_id("waiting")
    before = await env.mirror.tests.get_test(cached)
    env.sandbox.faults.add(
        FaultRule(kind="error", path="exploratory_tests/*", status=503, times=None)
    )
    env.clock.advance(OPEN_TTL + 1)

    answer = await env.mirror.tests.get_test(cached)
    assert answer.value == before.value
    assert (answer.freshness.source, answer.freshness.stale) == ("mirror", True)
    reason = answer.freshness.stale_reason or ""
    assert reason.startswith("TestIO unreachable since 2026-11-21T06:05:01Z")
    assert "503" in reason

    with pytest.raises(UpstreamUnavailableError):
        await env.mirror.tests.get_test(uncached)


async def test_a_test_gone_upstream_raises_and_is_tombstoned(env: Env) -> None:
    test_id = env.test_id("running")
    await env.mirror.tests.get_test(test_id)
    env.sandbox.world.remove_test(test_id)
    env.clock.advance(OPEN_TTL + 1)

    with pytest.raises(NotFoundError):
        await env.mirror.tests.get_test(test_id)
    listed = await env.mirror.tests.list_tests(include_deleted=True)
    assert [(t.id, t.deleted) for t in listed.items] == [(test_id, True)]
    assert (await env.mirror.tests.list_tests()).items == []


async def test_an_offline_mirror_serves_stale_copies_or_raises(env: Env) -> None:
    test_id = env.test_id("running")
    await env.mirror.tests.get_test(test_id)
    await env.mirror.close()
    offline = await Mirror.open(env.settings, None, clock=env.clock)
    try:
        fresh = await offline.tests.get_test(test_id)
        assert fresh.freshness.stale is False
        env.clock.advance(OPEN_TTL + 1)
        stale = await offline.tests.get_test(test_id)
        assert (stale.value.id, stale.freshness.stale) == (test_id, True)
        assert "token" in (stale.freshness.stale_reason or "")
        with pytest.raises(OfflineError):
            await offline.tests.get_test(env.test_id("waiting"))
        with pytest.raises(OfflineError):
            await offline.products.list_products()
        with pytest.raises(OfflineError):  # the test is mirrored, its bugs never were
            await offline.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    finally:
        await offline.close()
    assert env.count("exploratory_tests/*") == 1


async def test_products_are_read_through_by_the_product_ttl(env: Env) -> None:
    truth = sorted(env.sandbox.world.snapshot()["products"])
    first = await env.mirror.products.list_products()
    assert [p.id for p in first.value] == truth
    assert (first.freshness.source, env.count("products")) == ("api", 1)

    env.clock.advance(PRODUCT_TTL - 1)
    second = await env.mirror.products.list_products()
    assert (second.freshness.source, second.freshness.stale) == ("mirror", False)
    assert env.count("products") == 1

    env.clock.advance(2)
    third = await env.mirror.products.list_products()
    assert (third.freshness.source, env.count("products")) == ("api", 2)


async def add_retired_product(env: Env) -> None:
    """Product 999 in the mirror, which TestIO no longer has."""
    ghost = Product.from_wire({"id": 999, "name": "Retired product", "sections": []})
    async with env.mirror.db.transaction() as conn:
        await write_products(conn, [ghost], env.mirror.policy.stamp(), complete=False)


async def test_a_product_gone_upstream_is_tombstoned_by_a_complete_refresh(env: Env) -> None:
    await add_retired_product(env)

    listed = await env.mirror.products.list_products()
    assert 999 not in [p.id for p in listed.value]
    everything = await env.mirror.products.list_products(include_deleted=True)
    deleted = {p.id: p.deleted for p in everything.value}
    assert deleted[999] is True
    assert not any(flag for product_id, flag in deleted.items() if product_id != 999)


async def test_get_product_tombstones_a_product_gone_upstream(env: Env) -> None:
    # store.md: "A thing TestIO answers 404 for is tombstoned"; get_product has no on_gone.
    await add_retired_product(env)
    assert 999 in await env.mirror.products.known_ids()
    env.clock.advance(PRODUCT_TTL + 1)
    with pytest.raises(NotFoundError):
        await env.mirror.products.get_product(999)
    assert env.count("products/999") == 1
    assert 999 not in await env.mirror.products.known_ids()


async def test_a_section_product_lists_each_feature_once(env: Env) -> None:
    truth = sorted(env.sandbox.world.snapshot()["features"][SECTION_PRODUCT])
    answer = await env.mirror.features.list_features(SECTION_PRODUCT)
    assert [f.id for f in answer.value] == truth
    sections = env.count(f"products/{SECTION_PRODUCT}/sections/*/features")
    assert sections == len(env.sandbox.world.product(SECTION_PRODUCT)["sections"])

    again = await env.mirror.features.list_features(SECTION_PRODUCT)
    assert (again.value, again.freshness.source) == (answer.value, "mirror")
    assert env.count(f"products/{SECTION_PRODUCT}/sections/*/features") == sections


async def test_get_bug_reads_through_by_its_test(env: Env) -> None:
    open_test, archived_test = env.test_id("running"), env.test_id("archived")
    await env.mirror.tests.get_test(open_test)
    await env.mirror.tests.get_test(archived_test)
    open_bug, archived_bug = min(env.bugs_of(open_test)), min(env.bugs_of(archived_test))

    answer = await env.mirror.bugs.get_bug(open_bug)
    assert answer.value.title == env.bugs_of(open_test)[open_bug]["title"]
    await env.mirror.bugs.get_bug(archived_bug)
    await env.mirror.bugs.get_bug(open_bug)
    assert (env.count(f"bugs/{open_bug}"), env.count(f"bugs/{archived_bug}")) == (1, 1)

    env.clock.advance(YEARS)
    assert (await env.mirror.bugs.get_bug(archived_bug)).freshness.stale is False
    assert (await env.mirror.bugs.get_bug(open_bug)).freshness.source == "api"
    assert (env.count(f"bugs/{open_bug}"), env.count(f"bugs/{archived_bug}")) == (2, 1)


async def test_get_bug_refetches_a_bug_fetched_before_its_test_closed(env: Env) -> None:
    # store.md: bugs of archived tests are never stale "once fetched after the test last changed";
    # get_bug looks only at the test's status, so a copy from before the test closed is served as
    # fresh forever.
    test_id = env.test_id("locked")
    await env.mirror.tests.get_test(test_id)
    bug_id = min(env.bugs_of(test_id))
    await env.mirror.bugs.get_bug(bug_id)
    env.sandbox.world.triage(bug_id, "mark_as_known")
    env.sandbox.world.set_test_status(test_id, "archived")
    env.clock.advance(OPEN_TTL + 1)
    assert (await env.mirror.tests.get_test(test_id)).value.status == "archived"

    answer = await env.mirror.bugs.get_bug(bug_id)
    assert (env.count(f"bugs/{bug_id}"), answer.freshness.source) == (2, "api")
    assert answer.value.known is True


async def test_bug_lists_are_batched_then_refetched_only_for_open_tests(env: Env) -> None:
    open_test, archived_test = env.test_id("running"), env.test_id("archived")
    for test_id in (open_test, archived_test):
        await env.mirror.tests.get_test(test_id)
    wanted = [open_test, archived_test]

    first = await env.mirror.bugs.list_bugs(BugFilter(test_ids=wanted))
    truth = {**env.bugs_of(open_test), **env.bugs_of(archived_test)}
    assert sorted(b.id for b in first.items) == sorted(truth)
    assert (first.freshness.source, env.asked_test_ids()) == ("api", [sorted(wanted)])

    second = await env.mirror.bugs.list_bugs(BugFilter(test_ids=wanted))
    assert second.items == first.items
    assert (second.freshness.source, second.freshness.stale) == ("mirror", False)
    assert len(env.asked_test_ids()) == 1

    env.clock.advance(OPEN_TTL + 1)
    await env.mirror.bugs.list_bugs(BugFilter(test_ids=wanted))
    env.clock.advance(YEARS)
    await env.mirror.bugs.ensure_fresh(wanted)
    assert env.asked_test_ids() == [sorted(wanted), [open_test], [open_test]]


async def test_bugs_fetched_before_a_test_closed_are_refetched_once(env: Env) -> None:
    test_id = env.test_id("locked")
    await env.mirror.tests.get_test(test_id)
    await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    env.sandbox.world.set_test_status(test_id, "archived")
    env.clock.advance(OPEN_TTL + 1)
    assert (await env.mirror.tests.get_test(test_id)).value.status == "archived"

    await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    env.clock.advance(YEARS)
    freshness = await env.mirror.bugs.ensure_fresh([test_id])
    assert freshness.stale is False
    assert env.asked_test_ids() == [[test_id], [test_id]]


async def test_bugs_no_longer_returned_are_tombstoned_on_refresh(env: Env) -> None:
    test_id = env.test_id("running")
    await env.mirror.tests.get_test(test_id)
    await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    ghost = Bug.from_wire({"id": 950_000_001, "title": "Gone", "test": {"id": test_id}})
    async with env.mirror.db.transaction() as conn:
        await write_bugs(conn, [ghost], env.mirror.policy.stamp())
    real = sorted(env.bugs_of(test_id))
    assert (
        len((await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))).items) == len(real) + 1
    )

    env.clock.advance(OPEN_TTL + 1)
    page = await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    assert sorted(b.id for b in page.items) == real
    kept = await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]), include_deleted=True)
    assert {b.id: b.deleted for b in kept.items}[ghost.id] is True

    # The whole test vanishes upstream: its bug list refreshes to nothing.
    env.sandbox.world.remove_test(test_id)
    env.clock.advance(OPEN_TTL + 1)
    assert (await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))).items == []


async def test_a_bug_gone_upstream_raises_and_is_tombstoned(env: Env) -> None:
    test_id = env.test_id("running")
    await env.mirror.tests.get_test(test_id)
    bug_id = min(env.bugs_of(test_id))
    await env.mirror.bugs.get_bug(bug_id)
    env.sandbox.world.remove_test(test_id)
    env.clock.advance(OPEN_TTL + 1)

    with pytest.raises(NotFoundError):
        await env.mirror.bugs.get_bug(bug_id)
    listed = await env.mirror.bugs.list_bugs(include_deleted=True)
    assert [(b.id, b.deleted) for b in listed.items] == [(bug_id, True)]


async def test_failed_bug_refresh_serves_old_lists_stale_or_raises(env: Env) -> None:
    cached, uncached = env.test_id("running"), env.test_id("waiting")
    for test_id in (cached, uncached):
        await env.mirror.tests.get_test(test_id)
    before = await env.mirror.bugs.list_bugs(BugFilter(test_ids=[cached]))
    env.sandbox.faults.add(FaultRule(kind="error", path="bugs", status=503, times=None))
    env.clock.advance(OPEN_TTL + 1)

    after = await env.mirror.bugs.list_bugs(BugFilter(test_ids=[cached]))
    assert [b.id for b in after.items] == [b.id for b in before.items]
    assert after.freshness.stale is True
    assert "TestIO unreachable since" in (after.freshness.stale_reason or "")
    with pytest.raises(UpstreamUnavailableError):  # no copy of this test's bugs to fall back on
        await env.mirror.bugs.list_bugs(BugFilter(test_ids=[uncached]))


async def test_bugs_of_a_test_never_seen_are_fetched_with_the_test(env: Env) -> None:
    test_id = env.test_id("running")
    first = await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    assert sorted(b.id for b in first.items) == sorted(env.bugs_of(test_id))
    second = await env.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    assert (second.freshness.source, second.freshness.stale) == ("mirror", False)
    assert (env.count(f"exploratory_tests/{test_id}"), env.asked_test_ids()) == (1, [[test_id]])
