"""Test-case tests (tests whose ``testing_type`` is null): their cases and executions in the
world, over HTTP in both documented shapes, with 404s, faults and the request log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxConfig, SandboxServer, SandboxWorld
from testio_mirror.sandbox.errors import NotFoundError
from tests.conftest import SMALL, SandboxFactory

JSON = dict[str, Any]


@pytest.fixture(scope="module")
def world() -> SandboxWorld:
    return SandboxWorld(SMALL)


@pytest.fixture(scope="module")
def shared() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(dataset=SMALL)) as server:
        yield server


@pytest.fixture
def api(shared: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=shared.base_url + "/", headers=shared.auth_headers, timeout=10.0
    ) as client:
        yield client


def case_tests(world: SandboxWorld) -> list[JSON]:
    return [t for t in world.snapshot()["tests"].values() if t["testing_type"] is None]


def typed_test(world: SandboxWorld) -> JSON:
    return next(t for t in world.snapshot()["tests"].values() if t["testing_type"] is not None)


def executed(world: SandboxWorld) -> JSON:
    """A test-case test that has executions."""
    for test in case_tests(world):
        if world.test_case_results(test["product"]["id"], test["id"]):
            return test
    raise AssertionError("no executed test-case test in the small set")


def test_test_case_tests_exist_in_every_product_of_the_small_set(world: SandboxWorld) -> None:
    products = {t["product"]["id"] for t in case_tests(world)}
    assert products == set(world.snapshot()["products"])


def test_each_test_case_test_has_a_few_cases_with_steps(world: SandboxWorld) -> None:
    case_ids: list[int] = []
    step_ids: list[int] = []
    for test in case_tests(world):
        answer = world.test_case_test(test["product"]["id"], test["id"])
        assert set(answer) == {"test_cases"}
        assert 2 <= len(answer["test_cases"]) <= 4
        for case in answer["test_cases"]:
            assert isinstance(case["title"], str)
            assert case["title"]
            assert 2 <= len(case["steps"]) <= 5
            assert all(isinstance(step["description"], str) for step in case["steps"])
            case_ids.append(case["id"])
            step_ids += [step["id"] for step in case["steps"]]
    assert len(case_ids) == len(set(case_ids))
    assert len(step_ids) == len(set(step_ids))


def test_executions_cover_every_case_several_times_and_mostly_pass(world: SandboxWorld) -> None:
    statuses: Counter[str] = Counter()
    for test in case_tests(world):
        pid, tid = test["product"]["id"], test["id"]
        cases = {c["id"]: c for c in world.test_case_test(pid, tid)["test_cases"]}
        results = world.test_case_results(pid, tid)
        if test["status"] in ("initialized", "waiting"):
            assert results == []  # nobody has executed a case yet
            continue
        per_case = Counter(r["test_case_id"] for r in results)
        assert set(per_case) == set(cases)
        assert all(count >= 2 for count in per_case.values())
        for result in results:
            statuses[result["status"]] += 1
            assert result["tester"]["name"].startswith("tester_")
            step_ids = [s["id"] for s in cases[result["test_case_id"]]["steps"]]
            assert [s["id"] for s in result["steps"]] == step_ids
            step_statuses = [s["status"] for s in result["steps"]]
            if result["status"] == "passed":
                assert set(step_statuses) == {"passed"}
            else:
                # The step where it went wrong says so, and why.
                stop = next(s for s in result["steps"] if s["status"] != "passed")
                assert stop["status"] == result["status"]
                assert stop["comment"]
    assert statuses["passed"] > sum(statuses.values()) / 2
    assert {"passed", "failed", "blocked"} <= set(statuses)


def test_cases_and_executions_follow_the_seed(world: SandboxWorld) -> None:
    test = executed(world)
    pid, tid = test["product"]["id"], test["id"]
    again = SandboxWorld(SMALL)
    assert again.test_case_test(pid, tid) == world.test_case_test(pid, tid)
    assert again.test_case_results(pid, tid) == world.test_case_results(pid, tid)
    other = SandboxWorld(DatasetSpec(seed=4, products=3, tests_per_product=30, bugs_per_test=3))
    others = case_tests(other)
    assert others
    assert [other.test_case_test(t["product"]["id"], t["id"]) for t in others] != [
        world.test_case_test(t["product"]["id"], t["id"]) for t in case_tests(world)
    ]


def test_snapshot_holds_every_test_case_test(world: SandboxWorld) -> None:
    truth = world.snapshot()["test_case_tests"]
    assert set(truth) == {t["id"] for t in case_tests(world)}
    for test in case_tests(world):
        pid, tid = test["product"]["id"], test["id"]
        assert truth[tid] == {
            "product_id": pid,
            "test_cases": world.test_case_test(pid, tid)["test_cases"],
            "results": world.test_case_results(pid, tid),
        }


def test_other_tests_and_unknown_ids_are_not_found(world: SandboxWorld) -> None:
    typed = typed_test(world)
    case_test = case_tests(world)[0]
    other_product = next(p for p in world.snapshot()["products"] if p != case_test["product"]["id"])
    for pid, tid in (
        (typed["product"]["id"], typed["id"]),  # an exploratory test
        (case_test["product"]["id"], 99_999_999),  # no such test
        (other_product, case_test["id"]),  # a test of another product
        (999, case_test["id"]),  # no such product
    ):
        with pytest.raises(NotFoundError):
            world.test_case_test(pid, tid)
        with pytest.raises(NotFoundError):
            world.test_case_results(pid, tid)


# -- over HTTP ---------------------------------------------------------------------------------


def test_odd_products_wrap_the_test_case_test_and_even_ones_do_not(
    shared: SandboxServer, api: httpx.Client
) -> None:
    truth = shared.world.snapshot()["test_case_tests"]
    shapes = set()
    for tid, expected in truth.items():
        pid = expected["product_id"]
        response = api.get(f"products/{pid}/test_case_tests/{tid}")
        assert response.status_code == 200, response.text
        body = response.json()
        if pid % 2 == 1:
            assert body == {"test_case_test": {"test_cases": expected["test_cases"]}}
        else:
            assert body == {"test_cases": expected["test_cases"]}
        shapes.add(pid % 2)
    assert shapes == {0, 1}


def test_results_are_a_bare_array_or_wrapped_on_every_third_product(
    shared: SandboxServer, api: httpx.Client
) -> None:
    truth = shared.world.snapshot()["test_case_tests"]
    shapes = set()
    for tid, expected in truth.items():
        pid = expected["product_id"]
        response = api.get(f"products/{pid}/test_case_tests/{tid}/results")
        assert response.status_code == 200, response.text
        body = response.json()
        if pid % 3 == 0:
            assert body == {"test_case_results": expected["results"]}
        else:
            assert body == expected["results"]
        shapes.add(pid % 3 == 0)
    assert shapes == {True, False}


def test_http_404s_are_json_errors_and_requests_are_logged(
    shared: SandboxServer, api: httpx.Client
) -> None:
    typed = typed_test(shared.world)
    shared.requests.clear()
    base = f"products/{typed['product']['id']}/test_case_tests/{typed['id']}"
    for path in (base, base + "/results"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["error"]
    logged = [(r.method, r.path, r.status) for r in shared.requests.records()]
    assert logged == [("GET", base, 404), ("GET", base + "/results", 404)]


def test_test_case_routes_meet_faults_and_the_token_check(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    test = executed(sandbox.world)
    path = f"products/{test['product']['id']}/test_case_tests/{test['id']}/results"
    sandbox.faults.add(FaultRule(kind="error", path="products/*/test_case_tests/*/results"))
    with httpx.Client(base_url=sandbox.base_url + "/", timeout=10.0) as anonymous:
        assert anonymous.get(path).status_code == 500  # the fault comes before the token check
        assert anonymous.get(path).status_code == 401
    with httpx.Client(
        base_url=sandbox.base_url + "/", headers=sandbox.auth_headers, timeout=10.0
    ) as api:
        assert api.get(path).status_code == 200
    assert [(r.status, r.fault) for r in sandbox.requests.records(path)] == [
        (500, "error"),
        (401, None),
        (200, None),
    ]


def test_a_test_case_test_gains_executions_when_it_starts_running() -> None:
    world = SandboxWorld(SMALL)
    waiting = next(t for t in case_tests(world) if t["status"] in ("initialized", "waiting"))
    pid, tid = waiting["product"]["id"], waiting["id"]
    assert world.test_case_results(pid, tid) == []
    world.set_test_status(tid, "running")
    results = world.test_case_results(pid, tid)
    assert results
    assert world.snapshot()["test_case_tests"][tid]["results"] == results


def test_evolved_test_case_tests_are_in_the_snapshot() -> None:
    world = SandboxWorld(SMALL)
    world.evolve(12)
    truth = world.snapshot()
    assert set(truth["test_case_tests"]) == {
        t["id"] for t in truth["tests"].values() if t["testing_type"] is None
    }
    for tid, expected in truth["test_case_tests"].items():
        assert expected["product_id"] == truth["tests"][tid]["product"]["id"]
