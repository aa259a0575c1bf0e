"""Read-through while TestIO is down or slow, against the sandbox: a full mirror answers from its
copies, stale with the reason, after at most one request (never the retry ladder); a reader waits
at most the read-through deadline while the fetch finishes in the background; with no copy the
error comes at once and says what to do; while TestIO is known down it is probed once per
interval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testio_mirror.app import App, open_app, read_through_client
from testio_mirror.sandbox import FaultRule, SandboxServer
from testio_mirror.settings import Settings
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.readthrough.rule import DeadlineError
from testio_mirror.store.records import BugFilter, Freshness
from testio_mirror.upstream.errors import UpstreamUnavailableError
from testio_mirror.upstream.health import HealthReport
from testio_mirror.upstream.models import FINAL_TEST_STATUSES
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import ALL_PHASES, run_sync

PROBE_INTERVAL = 10.0
COPY = "answered from the mirror's copy"


def outage_settings(sandbox: SandboxServer, home: Path, **overrides: object) -> Settings:
    """Everything stale at once (TTLs of 0), so every read wants TestIO; the ladder the sync
    would climb is five attempts."""
    knobs: dict[str, object] = {
        "open_test_ttl_seconds": 0,
        "product_ttl_seconds": 0,
        "retry_max_attempts": 5,
        "read_through_timeout_seconds": 5.0,
        "read_through_probe_interval_seconds": PROBE_INTERVAL,
    }
    knobs.update(overrides)
    return make_settings(sandbox, home, **knobs)


@dataclass
class Full:
    """A fully synced App over the sandbox."""

    app: App
    sandbox: SandboxServer

    @property
    def mirror(self) -> Mirror:
        return self.app.mirror

    def requests(self) -> int:
        return len(self.sandbox.requests.records())

    def test_ids(self) -> list[int]:
        """Open tests: their copies go stale (archived ones never do)."""
        tests = self.sandbox.world.snapshot()["tests"].values()
        return sorted(t["id"] for t in tests if t["status"] not in FINAL_TEST_STATUSES)

    def product_ids(self) -> list[int]:
        return sorted(self.sandbox.world.snapshot()["products"])


async def synced(sandbox: SandboxServer, settings: Settings) -> AsyncIterator[Full]:
    async with open_app(settings) as app:
        result = await run_sync(app, phases=ALL_PHASES)
        assert result.status.value == "success", result.summary()
        yield Full(app, sandbox)


@pytest.fixture
async def full(sandbox: SandboxServer, tmp_path: Path) -> AsyncIterator[Full]:
    async for opened in synced(sandbox, outage_settings(sandbox, tmp_path / "home")):
        yield opened


def assert_down_copy(freshness: Freshness) -> None:
    assert (freshness.source, freshness.stale) == ("mirror", True)
    reason = freshness.stale_reason or ""
    assert reason.startswith("TestIO unreachable since "), reason
    assert reason.endswith(COPY), reason


async def test_with_testio_failing_every_read_answers_from_the_copy_after_one_request(
    full: Full,
) -> None:
    test_id, other = full.test_ids()[:2]
    product_id = full.product_ids()[0]
    world = full.sandbox.world
    full.sandbox.faults.add(FaultRule(kind="error", path="*", status=503, times=None))
    before = full.requests()

    products = await full.mirror.products.list_products()
    test = await full.mirror.tests.get_test(test_id)
    test_bugs = await full.mirror.bugs.ensure_fresh([test_id])  # what get_test's tool asks too
    bugs = await full.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))
    again = await full.mirror.tests.get_test(other)
    features = await full.mirror.features.list_features(product_id)

    # One request found TestIO down; every other read answered from the copy without asking.
    assert full.requests() - before == 1
    assert [p.id for p in products.value] == full.product_ids()
    assert (test.value.id, test.value.title) == (test_id, world.test(test_id)["title"])
    assert again.value.id == other
    truth = sorted(b["id"] for b in world.snapshot()["bugs"].values() if b["test"]["id"] == test_id)
    assert sorted(b.id for b in bugs.items) == truth
    assert [f.id for f in features.value] == sorted(world.snapshot()["features"][product_id])
    for freshness in (
        products.freshness,
        test.freshness,
        test_bugs,
        bugs.freshness,
        again.freshness,
        features.freshness,
    ):
        assert_down_copy(freshness)
    assert "HTTP 503" in (products.freshness.stale_reason or "")


async def test_refused_connections_are_tried_once_then_copies_are_served(full: Full) -> None:
    test_id = full.test_ids()[0]
    full.sandbox.stop()  # the port now refuses connections

    test = await full.mirror.tests.get_test(test_id)
    products = await full.mirror.products.list_products()
    bugs = await full.mirror.bugs.list_bugs(BugFilter(test_ids=[test_id]))

    assert full.app.read_client().metrics.requests == 1
    assert full.app.read_client().metrics.retries == 0
    assert test.value.id == test_id
    assert [p.id for p in products.value] == full.product_ids()
    assert bugs.items
    for freshness in (test.freshness, products.freshness, bugs.freshness):
        assert_down_copy(freshness)
    assert "connection failed" in (test.freshness.stale_reason or "")


async def test_without_a_copy_the_error_comes_at_once_and_says_what_to_do(full: Full) -> None:
    test_id = full.test_ids()[0]
    unseen = full.sandbox.world.add_test(full.product_ids()[0])  # added after the sync
    full.sandbox.faults.add(FaultRule(kind="error", path="*", status=502, times=None))
    await full.mirror.tests.get_test(test_id)  # finds TestIO down
    before = full.requests()

    with pytest.raises(UpstreamUnavailableError) as caught:
        await full.mirror.tests.get_test(unseen)
    with pytest.raises(UpstreamUnavailableError):
        await full.mirror.bugs.list_bugs(BugFilter(test_ids=[unseen]))

    assert full.requests() == before  # nothing asked: TestIO is known down
    message = str(caught.value)
    assert message.startswith("TestIO has been unreachable since ")
    assert "HTTP 502" in message
    assert f"test {unseen} was not asked for" in message
    assert "asked again after" in message


async def test_a_slow_testio_is_waited_for_until_the_deadline_and_the_fetch_lands_later(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = outage_settings(sandbox, tmp_path / "home", read_through_timeout_seconds=0.05)
    async for full in synced(sandbox, settings):
        test_id = full.test_ids()[0]
        sandbox.world.set_test_status(test_id, "archived")
        sandbox.knobs.update({"latency_ms": 400})
        path = f"exploratory_tests/{test_id}"

        answers = await asyncio.gather(*(full.mirror.tests.get_test(test_id) for _ in range(5)))

        for answer in answers:
            assert answer.value.status != "archived"  # the copy, as it was
            assert (answer.freshness.source, answer.freshness.stale) == ("mirror", True)
            reason = answer.freshness.stale_reason or ""
            assert reason.startswith("TestIO did not answer within 0.05 s; " + COPY)
        # The one fetch all five shared finishes in the background and is stored.
        for _ in range(400):
            listed = await full.mirror.tests.list_tests(statuses=["archived"])
            if test_id in [t.id for t in listed.items]:
                break
            await asyncio.sleep(0.025)
        assert test_id in [t.id for t in listed.items]
        assert len(sandbox.requests.records(path)) == 1
        assert full.mirror.gate is not None
        assert full.mirror.gate.health.outage() is None
        # It answered in the end, so TestIO is not down: the next stale read asks again.
        sandbox.knobs.update({"latency_ms": 0})
        other = full.test_ids()[1]
        answer = await full.mirror.tests.get_test(other)
        assert answer.freshness.source == "api"
        assert len(sandbox.requests.records(f"exploratory_tests/{other}")) == 1


class StepClock:
    """A clock that moves only when told to, starting on a whole second after every copy."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def test_a_down_testio_is_probed_once_per_interval_until_it_answers(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = outage_settings(sandbox, tmp_path / "home")
    async for full in synced(sandbox, settings):
        test_id = full.test_ids()[0]
        path = f"exploratory_tests/{test_id}"
    clock = StepClock()
    started = clock.now
    async with read_through_client(settings) as client:
        mirror = await Mirror.open(settings, client, clock=clock)
        try:
            sandbox.faults.add(FaultRule(kind="error", path="*", status=500, times=None))
            asked = [len(sandbox.requests.records(path))]
            for step in (0.0, 1.0, PROBE_INTERVAL, 1.0, 1.0):
                clock.advance(step)
                assert_down_copy((await mirror.tests.get_test(test_id)).freshness)
                asked.append(len(sandbox.requests.records(path)))
            # A probe when first asked, none for the next second, one after the interval.
            assert [n - asked[0] for n in asked] == [0, 1, 1, 2, 2, 2]
            reason = (await mirror.tests.get_test(test_id)).freshness.stale_reason or ""
            first_failure = started.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert reason.startswith(f"TestIO unreachable since {first_failure} (GET {path}: ")

            sandbox.faults.clear()
            clock.advance(PROBE_INTERVAL)
            healed = await mirror.tests.get_test(test_id)
            assert (healed.freshness.source, healed.freshness.stale) == ("api", False)
            assert len(sandbox.requests.records(path)) - asked[0] == 3
        finally:
            await mirror.close()


async def test_an_unreachable_health_check_stops_reads_from_asking(full: Full) -> None:
    test_id = full.test_ids()[0]
    assert full.mirror.gate is not None
    checked = datetime.now(UTC)
    full.mirror.gate.health.record(
        HealthReport("unreachable", checked, 5.0, "connection failed (ConnectError)")
    )
    before = full.requests()

    answer = await full.mirror.tests.get_test(test_id)

    assert full.requests() == before
    assert_down_copy(answer.freshness)
    assert "connection failed (ConnectError)" in (answer.freshness.stale_reason or "")
    full.mirror.gate.health.record(HealthReport("healthy", checked, 5.0, "HTTP 200"))
    assert (await full.mirror.tests.get_test(test_id)).freshness.source == "api"
    assert full.requests() == before + 1


async def test_without_a_copy_a_hanging_testio_is_given_up_at_the_deadline(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = outage_settings(sandbox, tmp_path / "home", read_through_timeout_seconds=0.05)
    async for full in synced(sandbox, settings):
        unseen = sandbox.world.add_test(full.product_ids()[0])
        sandbox.faults.add(FaultRule(kind="hang", path="exploratory_tests/*", hang_seconds=30))

        with pytest.raises(DeadlineError) as caught:
            await full.mirror.tests.get_test(unseen)

        message = str(caught.value)
        assert message.startswith(f"TestIO did not answer for test {unseen} within 0.05 s")
        assert "TESTIO_READ_THROUGH_TIMEOUT_SECONDS" in message
        assert len(full.mirror.tests._flights) == 1  # the fetch still waits for its answer
        assert full.mirror.gate is not None
        outage = full.mirror.gate.health.outage()
        assert outage is not None
        assert outage.detail == "no answer within 0.05 s"
    # Leaving the App stopped the fetch still hanging in the background (and closed cleanly).
    assert len(full.mirror.tests._flights) == 0
