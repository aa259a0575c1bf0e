"""TestCaseRepository's read-through rules on a fake TestIO and a fake clock: an open test's
cases re-fetched past the open-test TTL, a closed test's fetched once (again only after the test
changed), a test with a testing_type never asked about, a 404 remembered, TestIO failing served
from the copy, and no copy giving the error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.settings import load_settings
from testio_mirror.store.exploratory_tests import write_tests
from testio_mirror.store.mirror import Mirror
from testio_mirror.upstream.errors import UpstreamUnavailableError
from testio_mirror.upstream.models import ExploratoryTest, TestCaseResult, TestCaseTest
from tests.helpers.seeded_mirror import FakeClock

TTL = 300.0
CASES = {"test_cases": [{"id": 1, "title": "Sign in", "steps": [{"id": 10, "description": "Go"}]}]}
RESULTS = [{"test_case_id": 1, "status": "passed", "tester": {"name": "ana"}, "steps": []}]


@dataclass
class FakeTestIO:
    """What the repositories ask for, answered from ``tests``; every request is counted."""

    tests: dict[int, dict[str, Any]]
    cases_404: set[int] = field(default_factory=set)
    down: bool = False
    asked: list[str] = field(default_factory=list)

    async def test(self, test_id: int) -> ExploratoryTest:
        self.asked.append(f"test {test_id}")
        return ExploratoryTest.from_wire(self.tests[test_id])

    async def test_case_test(self, product_id: int, test_id: int) -> TestCaseTest | None:
        self.asked.append(f"cases {test_id}")
        if self.down:
            raise UpstreamUnavailableError("GET test_case_tests: HTTP 503")
        return None if test_id in self.cases_404 else TestCaseTest.from_wire(CASES)

    async def test_case_results(self, product_id: int, test_id: int) -> list[TestCaseResult]:
        self.asked.append(f"results {test_id}")
        return [TestCaseResult.from_wire(r) for r in RESULTS]


def wire_test(test_id: int, status: str, testing_type: str | None = None) -> dict[str, Any]:
    return {
        "id": test_id,
        "title": f"Test {test_id}",
        "status": status,
        "testing_type": testing_type,
        "product": {"id": 7},
    }


@dataclass
class Env:
    mirror: Mirror
    clock: FakeClock
    upstream: FakeTestIO

    def cases_asked(self) -> int:
        return sum(what.startswith("cases") for what in self.upstream.asked)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    upstream = FakeTestIO(
        {
            1: wire_test(1, "running"),
            2: wire_test(2, "archived"),
            3: wire_test(3, "archived", "coverage"),
            4: wire_test(4, "archived"),
        },
        cases_404={4},
    )
    clock = FakeClock()
    settings = load_settings(mirror_home=tmp_path / "home", open_test_ttl_seconds=TTL)
    # The fake stands where the App's read-through client does (made on first use).
    mirror = await Mirror.open(settings, lambda: upstream, clock=clock)
    try:
        yield Env(mirror, clock, upstream)
    finally:
        await mirror.close()


async def test_an_open_tests_cases_are_fetched_again_past_the_ttl(env: Env) -> None:
    first = await env.mirror.test_cases.test_case_run(1)
    assert first.freshness.source == "api"
    assert [case.title for case in first.value.cases] == ["Sign in"]
    assert [run.passed for run in first.value.cases[0].executions] == [True]
    env.clock.now += timedelta(seconds=TTL - 1)
    again = await env.mirror.test_cases.test_case_run(1)
    assert again.freshness.source == "mirror"
    assert env.cases_asked() == 1
    env.clock.now += timedelta(seconds=2)
    later = await env.mirror.test_cases.test_case_run(1)
    assert later.freshness.source == "api"
    assert env.cases_asked() == 2


async def test_a_closed_tests_cases_are_fetched_once_until_the_test_changes(env: Env) -> None:
    await env.mirror.test_cases.test_case_run(2)
    env.clock.now += timedelta(days=400)
    kept = await env.mirror.test_cases.test_case_run(2)
    assert kept.freshness.source == "mirror"
    assert kept.freshness.stale is False
    assert env.cases_asked() == 1
    # The test changed after its cases were fetched (a sync wrote it anew): ask once more.
    env.clock.now += timedelta(seconds=1)
    env.upstream.tests[2] = {**wire_test(2, "archived"), "title": "Renamed"}
    async with env.mirror.db.transaction() as conn:
        await write_tests(conn, [ExploratoryTest.from_wire(env.upstream.tests[2])], stamp(env))
    env.clock.now += timedelta(seconds=1)
    assert (await env.mirror.test_cases.test_case_run(2)).freshness.source == "api"
    assert (await env.mirror.test_cases.test_case_run(2)).freshness.source == "mirror"
    assert env.cases_asked() == 2


def stamp(env: Env) -> str:
    return env.mirror.policy.stamp()


async def test_a_test_with_a_testing_type_is_never_asked_about_cases(env: Env) -> None:
    run = (await env.mirror.test_cases.test_case_run(3)).value
    assert run.is_test_case_test is False
    assert run.cases == []
    assert env.cases_asked() == 0


async def test_a_404_is_remembered_and_the_results_not_asked(env: Env) -> None:
    for _ in range(2):
        run = (await env.mirror.test_cases.test_case_run(4)).value
        assert run.is_test_case_test is False
    assert env.upstream.asked == ["test 4", "cases 4"]


async def test_testio_failing_serves_the_copy_and_without_one_raises(env: Env) -> None:
    await env.mirror.test_cases.test_case_run(1)
    env.clock.now += timedelta(seconds=TTL + 1)
    env.upstream.down = True
    stale = await env.mirror.test_cases.test_case_run(1)
    assert stale.freshness.stale is True
    assert "answered from the mirror's copy" in (stale.freshness.stale_reason or "")
    assert [case.id for case in stale.value.cases] == [1]
    with pytest.raises(UpstreamUnavailableError):
        await env.mirror.test_cases.test_case_run(2)
