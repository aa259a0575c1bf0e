"""``test_case_test`` and ``test_case_results``: the typed cases and executions of test-case
tests, in every shape the API notes name, against the sandbox and against a faked network."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxServer
from testio_mirror.upstream import models
from testio_mirror.upstream.errors import BadResponseError
from tests.conftest import SandboxFactory
from tests.helpers.fake_upstream import make_client
from tests.upstream.test_client_sandbox import connect

JSON = dict[str, Any]
CASES = "products/5/test_case_tests/9"
RESULTS = CASES + "/results"


def step_rows(case: JSON) -> list[tuple[Any, ...]]:
    return [(step["id"], step["description"]) for step in case["steps"]]


def result_row(result: models.TestCaseResult) -> tuple[Any, ...]:
    steps = [(s.id, s.status, s.comment) for s in result.steps]
    return (result.test_case_id, result.status, result.tester_name, steps)


def wire_row(result: JSON) -> tuple[Any, ...]:
    steps = [(s["id"], s["status"], s.get("comment")) for s in result["steps"]]
    return (result["test_case_id"], result["status"], result["tester"]["name"], steps)


# -- against the sandbox -------------------------------------------------------------------------


async def test_cases_read_alike_with_and_without_the_envelope(sandbox: SandboxServer) -> None:
    truth = sandbox.world.snapshot()["test_case_tests"]
    products = {expected["product_id"] for expected in truth.values()}
    assert {pid % 2 for pid in products} == {0, 1}  # both shapes are served
    async with connect(sandbox) as client:
        for tid, expected in truth.items():
            read = await client.test_case_test(expected["product_id"], tid)
            assert read is not None
            assert read.raw == {"test_cases": expected["test_cases"]}
            assert [(c.id, c.title) for c in read.test_cases] == [
                (c["id"], c["title"]) for c in expected["test_cases"]
            ]
            assert [[(s.id, s.description) for s in c.steps] for c in read.test_cases] == [
                step_rows(c) for c in expected["test_cases"]
            ]


async def test_results_read_alike_bare_and_wrapped(sandbox: SandboxServer) -> None:
    truth = sandbox.world.snapshot()["test_case_tests"]
    assert {expected["product_id"] % 3 == 0 for expected in truth.values()} == {True, False}
    executions = 0
    async with connect(sandbox) as client:
        for tid, expected in truth.items():
            read = await client.test_case_results(expected["product_id"], tid)
            assert read is not None
            assert [result_row(r) for r in read] == [wire_row(r) for r in expected["results"]]
            assert [r.raw for r in read] == expected["results"]
            assert [r.passed for r in read] == [
                r["status"] == "passed" for r in expected["results"]
            ]
            executions += len(read)
    assert executions > 20


async def test_an_exploratory_test_or_an_unknown_id_is_none(sandbox: SandboxServer) -> None:
    snapshot = sandbox.world.snapshot()
    typed = next(t for t in snapshot["tests"].values() if t["testing_type"] is not None)
    case_test, expected = next(iter(snapshot["test_case_tests"].items()))
    asked = [
        (typed["product"]["id"], typed["id"]),
        (expected["product_id"], 99_999_999),
        (999, case_test),
    ]
    async with connect(sandbox) as client:
        for pid, tid in asked:
            assert await client.test_case_test(pid, tid) is None
            assert await client.test_case_results(pid, tid) is None
        assert client.metrics.retries == 0
    logged = sandbox.requests.records("products/*/test_case_tests/*")
    assert [r.status for r in logged] == [404] * 2 * len(asked)  # a 404 is asked once


async def test_a_503_on_results_is_retried(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(dataset=DatasetSpec(seed=3, products=2, tests_per_product=40))
    truth = sandbox.world.snapshot()["test_case_tests"]
    tid, expected = next((t, e) for t, e in truth.items() if e["results"])
    path = f"products/{expected['product_id']}/test_case_tests/{tid}/results"
    sandbox.faults.add(FaultRule(kind="error", path=path, status=503))
    async with connect(sandbox) as client:
        read = await client.test_case_results(expected["product_id"], tid)
        assert client.metrics.retries == 1
    assert read is not None
    assert [r.raw for r in read] == expected["results"]
    assert [r.status for r in sandbox.requests.records(path)] == [503, 200]


# -- against a faked network ------------------------------------------------------------------


async def test_unknown_fields_pass_through_and_odd_parts_are_tolerated(
    api: respx.MockRouter,
) -> None:
    case = {"id": 1, "title": {"name": "Sign in"}, "steps": None, "priority": "p1"}
    body = {"test_case_test": {"test_cases": [case], "x_origin": "import"}, "meta": {}}
    api.get(CASES).respond(200, json=body)
    results = [
        {"test_case_id": 1, "status": "passed", "tester": {"name": "ana", "rank": 2}},
        {"test_case_id": 1, "status": "failed", "tester": None, "steps": [{"status": "failed"}]},
    ]
    api.get(RESULTS).respond(200, json=results)
    async with make_client() as client:
        read = await client.test_case_test(5, 9)
        executions = await client.test_case_results(5, 9)
    assert read is not None
    assert read.raw == body["test_case_test"]
    assert [(c.id, c.title, c.steps) for c in read.test_cases] == [(1, "Sign in", [])]
    assert executions is not None
    assert [(r.tester_name, r.passed, len(r.steps)) for r in executions] == [
        ("ana", True, 0),
        (None, False, 1),
    ]
    assert executions[1].steps[0].id is None
    assert executions[0].raw == results[0]


async def test_an_empty_object_without_the_envelope_has_no_cases(api: respx.MockRouter) -> None:
    api.get(CASES).respond(200, json={"test_cases": []})
    api.get(RESULTS).respond(200, json={"test_case_results": []})
    async with make_client() as client:
        read = await client.test_case_test(5, 9)
        assert read is not None
        assert read.test_cases == []
        assert await client.test_case_results(5, 9) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CASES, ["not", "an", "object"]),
        (CASES, {"something_else": {}}),
        (CASES, {"test_case_test": [1, 2]}),
        (RESULTS, {"results": []}),
        (RESULTS, "text"),
        (RESULTS, [{"status": "passed"}]),  # no test_case_id
    ],
)
async def test_other_shapes_are_bad_responses(api: respx.MockRouter, path: str, body: Any) -> None:
    api.get(path).respond(200, json=body)
    async with make_client() as client:
        read = client.test_case_test if path == CASES else client.test_case_results
        with pytest.raises(BadResponseError, match="test_case"):
            await read(5, 9)


async def test_an_execution_with_an_id_out_of_range_is_skipped(api: respx.MockRouter) -> None:
    api.get(RESULTS).respond(
        200, json=[{"test_case_id": 2**63, "status": "passed"}, {"test_case_id": 3}]
    )
    async with make_client() as client:
        executions = await client.test_case_results(5, 9)
    assert executions is not None
    assert [r.test_case_id for r in executions] == [3]
