"""get_test_case_results over MCP against the sandbox: every test-case test's cases, steps,
executions, verdicts and totals worked out again from the snapshot (in every envelope shape the
products answer in), a second call served from the mirror without a request, an exploratory
test answered as not one (before asking, or after TestIO's 404), and TestIO down answering the
stale copy."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from testio_mirror.sandbox import DatasetSpec, FaultRule
from testio_mirror.sandbox.test_case_data import wraps_results, wraps_test_case_test
from tests.helpers.expected_answers import parse_time
from tests.helpers.mcp_session import (
    JSON,
    Mirrored,
    call,
    call_error,
    connect,
    synced_sandbox,
    text_of,
)
from tests.helpers.settings import make_settings

# Seed 5 puts test-case tests on products 101 to 104: cases wrapped (odd) and bare (even),
# results wrapped (102) and bare; archived, cancelled, open and not yet started ones.
DATASET = DatasetSpec(seed=5, products=5, tests_per_product=12, bugs_per_test=1)
FINAL = ("archived", "cancelled")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with synced_sandbox(DATASET, tmp_path_factory.mktemp("test-cases"), include_bugs=False) as m:
        yield m


def case_tests(truth: JSON) -> dict[int, JSON]:
    found: dict[int, JSON] = truth["test_case_tests"]
    return found


def requests_of(mirrored: Mirrored, test_id: int) -> int:
    return len(mirrored.sandbox.requests.records(f"products/*/test_case_tests/{test_id}*"))


def expected_case(case: JSON, results: list[JSON]) -> JSON:
    """What the answer must say of one case, worked out from the sandbox's own data."""
    texts = {step["id"]: step["description"] for step in case["steps"]}
    runs = sorted(
        (pair for pair in enumerate(results) if pair[1]["test_case_id"] == case["id"]),
        key=lambda pair: (parse_time(pair[1]["executed_at"]), pair[0]),
    )
    executions = []
    for _, run in runs:
        failed = [
            {
                "step_id": step["id"],
                "description": texts[step["id"]],
                "status": step["status"],
                "comment": step.get("comment"),
            }
            for step in run["steps"]
            if step["status"] != "passed" and (step["status"] != "skipped" or "comment" in step)
        ]
        executions.append(
            {
                "status": run["status"],
                "passed": run["status"] == "passed",
                "tester": run["tester"]["name"],
                "executed_at": parse_time(run["executed_at"]),
                "failed_steps": failed,
            }
        )
    passed = sum(run["passed"] for run in executions)
    verdict = "not_run"
    if executions:
        verdict = "passed" if executions[-1]["passed"] else "failed"
    return {
        "id": case["id"],
        "title": case["title"],
        "steps": [step["description"] for step in case["steps"]],
        "executions": executions,
        "passed": passed,
        "failed": len(executions) - passed,
        "verdict": verdict,
    }


def comparable(case: JSON) -> JSON:
    """An answer's case with times parsed and left-out optionals filled, to compare."""
    runs = []
    for run in case["executions"]:
        steps = [{"comment": None, "description": None, **step} for step in run["failed_steps"]]
        runs.append({**run, "executed_at": parse_time(run["executed_at"]), "failed_steps": steps})
    return {**case, "executions": runs}


async def test_every_test_case_test_answers_its_cases_and_results(mirrored: Mirrored) -> None:
    tests = case_tests(mirrored.truth)
    products = {truth["product_id"] for truth in tests.values()}
    # The dataset covers every envelope the client must read.
    assert {wraps_test_case_test(p) for p in products} == {True, False}
    assert {wraps_results(p) for p in products} == {True, False}
    assert any(not truth["results"] for truth in tests.values()), "a test not started yet"
    async with connect(mirrored.settings) as client:
        for test_id, truth in sorted(tests.items()):
            answer = await call(client, "get_test_case_results", {"test_id": test_id})
            test = mirrored.truth["tests"][test_id]
            assert answer["test_id"] == test_id
            assert answer["product_id"] == truth["product_id"]
            assert answer["status"] == test["status"]
            expected = [expected_case(case, truth["results"]) for case in truth["test_cases"]]
            assert [comparable(case) for case in answer["cases"]] == expected, test_id
            executions = len(truth["results"])
            passed = sum(run["status"] == "passed" for run in truth["results"])
            verdicts = [case["verdict"] for case in expected]
            totals = answer["totals"]
            assert totals["cases"] == len(expected)
            assert totals["cases_passed"] == verdicts.count("passed")
            assert totals["cases_failed"] == verdicts.count("failed")
            assert totals["cases_not_run"] == verdicts.count("not_run")
            assert (totals["executions"], totals["executions_passed"]) == (executions, passed)
            assert totals["executions_failed"] == executions - passed
            assert totals.get("pass_rate") == (
                round(passed / executions, 4) if executions else None
            )
            if not executions:
                assert totals["verdict"] == "not_run"
            else:
                everything = verdicts.count("passed") == len(verdicts)
                assert totals["verdict"] == ("passed" if everything else "failed")
            assert answer["is_test_case_test"] is True
            assert "hint" not in answer
            assert answer["freshness"]["stale"] is False
            assert "unmatched_executions" not in answer


async def test_a_second_call_is_served_from_the_mirror(mirrored: Mirrored) -> None:
    tests = case_tests(mirrored.truth)
    archived = min(t for t in tests if mirrored.truth["tests"][t]["status"] in FINAL)
    async with connect(mirrored.settings) as client:
        await call(client, "get_test_case_results", {"test_id": archived})
        asked = requests_of(mirrored, archived)
        assert asked >= 1
        again = await call(client, "get_test_case_results", {"test_id": archived})
    assert requests_of(mirrored, archived) == asked, "the mirror's copy should have answered"
    assert again["freshness"]["source"] == "mirror"
    assert again["freshness"]["stale"] is False
    assert len(again["cases"]) == len(tests[archived]["test_cases"])


async def test_an_exploratory_test_is_not_one_without_asking_for_cases(
    mirrored: Mirrored,
) -> None:
    test_id = min(
        t["id"] for t in mirrored.truth["tests"].values() if t["testing_type"] is not None
    )
    async with connect(mirrored.settings) as client:
        answer = await call(client, "get_test_case_results", {"test_id": test_id})
    assert answer["is_test_case_test"] is False
    assert answer["cases"] == []
    assert answer["totals"]["verdict"] == "not_run"
    assert f"test {test_id} is not a test-case test (its testing_type is" in answer["hint"]
    assert "get_test" in answer["hint"]
    assert "list_tests" in answer["hint"]
    assert requests_of(mirrored, test_id) == 0


async def test_a_404_on_the_cases_says_it_is_not_a_test_case_test(mirrored: Mirrored) -> None:
    """A test the mirror holds without a testing_type, which TestIO answers 404 for."""
    test_id = max(
        t["id"]
        for t in mirrored.truth["tests"].values()
        if t["testing_type"] is not None and t["status"] in FINAL
    )
    async with connect(mirrored.settings) as client:
        await call(client, "get_test", {"test_id": test_id})  # in the mirror, never stale
    with sqlite3.connect(mirrored.settings.database_path) as db:
        db.execute("UPDATE tests SET testing_type = NULL WHERE id = ?", (test_id,))
    async with connect(mirrored.settings) as client:
        first = await call(client, "get_test_case_results", {"test_id": test_id})
        asked = requests_of(mirrored, test_id)
        again = await call(client, "get_test_case_results", {"test_id": test_id})
    assert asked == 1, "a 404 on the cases needs no request for the results"
    assert requests_of(mirrored, test_id) == 1, "the 404 is remembered as the test's answer"
    assert first["freshness"]["source"] == "api"
    assert again["freshness"]["source"] == "mirror"
    for answer in (first, again):
        assert answer["is_test_case_test"] is False
        assert answer["cases"] == []
        assert "not a test-case test (TestIO has no test cases for it)" in answer["hint"]
        assert "list_tests" in answer["hint"]


async def test_testio_down_answers_the_stale_copy(mirrored: Mirrored) -> None:
    tests = case_tests(mirrored.truth)
    test_id = min(
        t
        for t, truth in tests.items()
        if mirrored.truth["tests"][t]["status"] not in FINAL and truth["results"]
    )
    # Every copy of an open test is stale at once: the second call must ask TestIO.
    settings = make_settings(
        mirrored.sandbox, mirrored.settings.mirror_home, open_test_ttl_seconds=0
    )
    async with connect(settings) as client:
        first = await call(client, "get_test_case_results", {"test_id": test_id})
        rule = mirrored.sandbox.faults.add(
            FaultRule(kind="error", path="products/*/test_case_tests/*", status=503, times=None)
        )
        try:
            stale = await call(client, "get_test_case_results", {"test_id": test_id})
        finally:
            mirrored.sandbox.faults.clear()
    assert rule is not None
    assert stale["freshness"]["stale"] is True
    assert stale["freshness"]["source"] == "mirror"
    assert "answered from the mirror's copy" in stale["freshness"]["stale_reason"]
    assert stale["cases"] == first["cases"]
    assert stale["totals"] == first["totals"]


async def test_testio_down_without_a_copy_is_an_error_with_a_next_step(
    mirrored: Mirrored, tmp_path: Path
) -> None:
    """A new home: the test and its cases were never fetched, and TestIO fails."""
    test_id = min(case_tests(mirrored.truth))
    settings = make_settings(mirrored.sandbox, tmp_path / "home")
    mirrored.sandbox.faults.add(
        FaultRule(kind="error", path="products/*/test_case_tests/*", status=503, times=None)
    )
    try:
        async with connect(settings) as client:
            error = await call_error(client, "get_test_case_results", {"test_id": test_id})
    finally:
        mirrored.sandbox.faults.clear()
    assert "TestIO could not answer and the mirror has no copy" in error
    assert "sync_status" in error


async def test_an_answer_over_the_ceiling_keeps_its_first_cases(
    mirrored: Mirrored, tmp_path: Path
) -> None:
    tests = case_tests(mirrored.truth)
    test_id = max(tests, key=lambda t: (len(tests[t]["test_cases"]), len(tests[t]["results"])))
    settings = make_settings(mirrored.sandbox, tmp_path / "home", max_answer_bytes=2_000)
    async with connect(settings) as client:
        result = await client.call_tool("get_test_case_results", {"test_id": test_id})
    assert not result.is_error
    assert len(text_of(result).encode()) <= 2_000
    answer = result.structured_content
    assert answer is not None
    assert answer["truncated"] is True
    assert 1 <= len(answer["cases"]) < len(tests[test_id]["test_cases"])
    assert f"of {len(tests[test_id]['test_cases'])} cases" in answer["hint"]
    assert answer["totals"]["cases"] == len(tests[test_id]["test_cases"]), "totals cover all"
