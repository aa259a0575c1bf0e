"""What ``get_test_case_results`` answers: a test-case test's cases, each with its steps and
executions, pass / fail per case and overall (structured output).

Definitions (docs/tools.md): an execution passes when its status is ``passed``; any other status
(failed, blocked, skipped, none) is a failure, as the API notes say. A case's verdict is its
latest execution's (by ``executed_at``): ``passed``, ``failed``, or ``not_run`` without one. The
pass rate is passed executions / executions (null when there are none).

Built from the store's records (``store/test_cases.py``), named for type checking only: the
server imports this module to list its tools, before the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from testio_mirror.schema import CompactSchema
from testio_mirror.store.records import Freshness

if TYPE_CHECKING:
    from testio_mirror.store.test_cases import (
        CaseStep,
        ExecutionRecord,
        TestCaseRecord,
        TestCaseRun,
    )

Verdict = Literal["passed", "failed", "not_run"]
_RATE = "passed executions / executions; null when there are none"


def pass_rate(passed: int, executions: int) -> float | None:
    return round(passed / executions, 4) if executions else None


class FailedStep(CompactSchema):
    """A step an execution did not pass (the steps after the one it stopped at, skipped
    without a comment, are left out)."""

    step_id: int | None
    description: str | None = Field(description="the step's text, from the case")
    status: str | None
    comment: str | None


class Execution(CompactSchema):
    """One run of a case by a tester."""

    status: str | None = Field(description="passed, or what the run ended in (failed, ...)")
    passed: bool
    tester: str | None
    executed_at: datetime | None
    failed_steps: list[FailedStep]

    @classmethod
    def of(cls, run: ExecutionRecord, steps: dict[int | None, str | None]) -> Execution:
        failed = [
            FailedStep(
                step_id=step.id,
                description=steps.get(step.id),
                status=step.status,
                comment=step.comment,
            )
            for step in run.steps
            if step.status != "passed" and (step.status != "skipped" or step.comment)
        ]
        return cls(
            status=run.status,
            passed=run.passed,
            tester=run.tester_name,
            executed_at=run.executed_at,
            failed_steps=failed,
        )


class CaseResult(CompactSchema):
    """One test case: its steps, its executions (oldest first) and its verdict."""

    id: int
    title: str | None
    steps: list[str] = Field(description="the steps' texts, in order")
    executions: list[Execution]
    passed: int = Field(description="executions that passed")
    failed: int = Field(description="executions that did not pass")
    verdict: Verdict = Field(description="the latest execution's outcome; not_run without one")

    @classmethod
    def of(cls, case: TestCaseRecord) -> CaseResult:
        texts = {step.id: step.description for step in case.steps}
        runs = [Execution.of(run, texts) for run in case.executions]
        passed = sum(run.passed for run in runs)
        verdict: Verdict = "not_run"
        if runs:
            verdict = "passed" if runs[-1].passed else "failed"
        return cls(
            id=case.id,
            title=case.title,
            steps=[_text(step) for step in case.steps],
            executions=runs,
            passed=passed,
            failed=len(runs) - passed,
            verdict=verdict,
        )


def _text(step: CaseStep) -> str:
    return step.description or ""


class TestCaseTotals(CompactSchema):
    """The whole test: cases by verdict, executions passed and failed."""

    __test__ = False

    cases: int
    cases_passed: int
    cases_failed: int
    cases_not_run: int
    executions: int
    executions_passed: int
    executions_failed: int
    pass_rate: float | None = Field(description=_RATE)
    verdict: Verdict = Field(
        description="passed when every case's verdict is passed; not_run when no case ran; "
        "failed otherwise"
    )


class TestCaseResults(CompactSchema):
    """A test-case test's cases and how their executions went."""

    __test__ = False
    LIST_FIELD: ClassVar[str] = "cases"

    test_id: int
    product_id: int
    title: str | None
    status: str | None
    is_test_case_test: bool = Field(
        description="false: the test has a testing_type, or TestIO has no cases for it (see hint)"
    )
    cases: list[CaseResult]
    totals: TestCaseTotals
    unmatched_executions: int | None = Field(
        default=None, description="executions naming a case the test does not list"
    )
    hint: str | None = Field(
        default=None, description="what to do next: not a test-case test, or the answer was cut"
    )
    truncated: bool | None = Field(
        default=None, description="true when the answer was cut to fit its size limit"
    )
    freshness: Freshness

    @classmethod
    def of(cls, run: TestCaseRun, freshness: Freshness) -> TestCaseResults:
        cases = [CaseResult.of(case) for case in run.cases]
        executions = sum(len(case.executions) for case in cases)
        passed = sum(case.passed for case in cases)
        by_verdict = {v: sum(case.verdict == v for case in cases) for v in _VERDICTS}
        overall: Verdict = "failed"  # a case failed, or one never ran while others did
        if by_verdict["not_run"] == len(cases):
            overall = "not_run"
        elif by_verdict["passed"] == len(cases):
            overall = "passed"
        return cls(
            test_id=run.test.id,
            product_id=run.test.product_id,
            title=run.test.title,
            status=run.test.status,
            is_test_case_test=run.is_test_case_test,
            cases=cases,
            totals=TestCaseTotals(
                cases=len(cases),
                cases_passed=by_verdict["passed"],
                cases_failed=by_verdict["failed"],
                cases_not_run=by_verdict["not_run"],
                executions=executions,
                executions_passed=passed,
                executions_failed=executions - passed,
                pass_rate=pass_rate(passed, executions),
                verdict=overall,
            ),
            unmatched_executions=run.unmatched_executions or None,
            hint=None if run.is_test_case_test else _not_test_cases(run),
            freshness=freshness,
        )


def _not_test_cases(run: TestCaseRun) -> str:
    kind = run.test.testing_type
    why = f"its testing_type is {kind}" if kind else "TestIO has no test cases for it"
    return (
        f"test {run.test.id} is not a test-case test ({why}): use get_test for its bug counts, "
        "or list_tests to find tests whose testing_type is null"
    )


_VERDICTS: tuple[Verdict, ...] = ("passed", "failed", "not_run")
