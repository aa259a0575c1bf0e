"""Test-case tests (``testing_type`` null): their cases, each case's executions, read through.

A test's cases and its executions are two complete lists TestIO answers per test
(``client.test_case_test``, ``client.test_case_results``); the mirror replaces both whole at
every fetch, in one transaction, and ``test_case_fetches`` says when (migration 9). They follow
the test's freshness rules: an archived or cancelled test's cases never change, so they are
fetched once (again only when the test changed after that fetch); an open test's are fetched
again past ``TESTIO_OPEN_TEST_TTL_SECONDS``. A 404 on the cases is stored too: that test is not
a test-case test, and asking again follows the same rules.

Example::

    found = await mirror.test_cases.test_case_run(100_009)
    runs = {case.title: [run.passed for run in case.executions] for case in found.value.cases}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite
from pydantic import ConfigDict

from testio_mirror.schema import CompactSchema
from testio_mirror.store.exploratory_tests import ExploratoryTestRepository
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.readthrough.repository import ClientSource, ReadThroughRepository
from testio_mirror.store.readthrough.rule import Local, ReadThroughGate, read_through
from testio_mirror.store.records import Answer, ExploratoryTestRecord
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.timefmt import from_db, required_from_db, to_db
from testio_mirror.store.sqlite.upsert import canonical_json, insert_rows
from testio_mirror.upstream.models import TestCase, TestCaseResult, TestCaseTest

CASE_COLUMNS = ("test_id", "id", "position", "title", "steps", "raw", "fetched_at")
EXECUTION_COLUMNS = (
    "test_id",
    "position",
    "test_case_id",
    "status",
    "tester_name",
    "steps",
    "executed_at",
    "raw",
    "fetched_at",
)
PASSED = "passed"
_FROZEN = ConfigDict(frozen=True)


class CaseStep(CompactSchema):
    """One step of a test case, in order."""

    model_config = _FROZEN

    id: int | None
    description: str | None


class StepOutcome(CompactSchema):
    """How one step went in one execution (``id`` is the step's)."""

    model_config = _FROZEN

    id: int | None
    status: str | None
    comment: str | None


class ExecutionRecord(CompactSchema):
    """One execution of a case by a tester. ``passed`` is a pass; any other status (failed,
    blocked, skipped, none) is a failure, as the API notes say."""

    model_config = _FROZEN

    test_case_id: int
    status: str | None
    tester_name: str | None
    executed_at: datetime | None
    steps: list[StepOutcome]

    @property
    def passed(self) -> bool:
        return self.status == PASSED


class TestCaseRecord(CompactSchema):
    """One case of a test-case test with its steps and its executions, oldest first."""

    __test__ = False  # not a pytest class
    model_config = _FROZEN

    id: int
    title: str | None
    steps: list[CaseStep]
    executions: list[ExecutionRecord]


class TestCaseRun(CompactSchema):
    """A test and, when it is a test-case test, its cases in TestIO's order.

    ``is_test_case_test`` False: the test has a ``testing_type`` (an exploratory test, never
    asked about cases) or TestIO answered 404 for its cases. ``unmatched_executions`` counts
    executions naming a case the test does not list (kept in the mirror, not in ``cases``)."""

    __test__ = False
    model_config = _FROZEN

    test: ExploratoryTestRecord
    is_test_case_test: bool
    cases: list[TestCaseRecord]
    unmatched_executions: int = 0


class _Lists(CompactSchema):
    """What the mirror holds for one test (the value read through)."""

    model_config = _FROZEN

    not_a_test_case: bool
    cases: list[TestCaseRecord]
    unmatched_executions: int


def _moment(value: Any) -> str | None:
    """An execution's ``executed_at`` (not a named field of the wire model: it is in ``raw``)
    as stored; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return to_db(datetime.fromisoformat(value))
    except ValueError:
        return None


def _case_rows(test_id: int, found: TestCaseTest, fetched_at: str) -> list[tuple[Any, ...]]:
    raw_cases = found.raw.get("test_cases")
    by_id = {
        item.get("id"): item
        for item in (raw_cases if isinstance(raw_cases, list) else [])
        if isinstance(item, dict)
    }
    rows: list[tuple[Any, ...]] = []
    seen: set[int] = set()
    for position, case in enumerate(found.test_cases):
        if case.id in seen:
            continue  # a case listed twice is one case
        seen.add(case.id)
        rows.append(
            (
                test_id,
                case.id,
                position,
                case.title,
                json.dumps([step.model_dump() for step in case.steps]),
                canonical_json(by_id.get(case.id) or _dump(case)),
                fetched_at,
            )
        )
    return rows


def _dump(case: TestCase) -> dict[str, Any]:
    return case.model_dump()


def _execution_rows(
    test_id: int, results: Sequence[TestCaseResult], fetched_at: str
) -> list[tuple[Any, ...]]:
    return [
        (
            test_id,
            position,
            result.test_case_id,
            result.status,
            result.tester_name,
            json.dumps([step.model_dump() for step in result.steps]),
            _moment(result.raw.get("executed_at")),
            canonical_json(result.raw),
            fetched_at,
        )
        for position, result in enumerate(results)
    ]


async def write_test_cases(
    conn: aiosqlite.Connection,
    test_id: int,
    product_id: int,
    found: TestCaseTest | None,
    results: Sequence[TestCaseResult] | None,
    fetched_at: str,
) -> None:
    """Replace what the mirror holds of ``test_id``'s cases and executions by what TestIO
    answered; ``found`` None (a 404) records that the test is not a test-case test."""
    for table in ("test_cases", "test_case_executions"):
        await conn.execute(f"DELETE FROM {table} WHERE test_id = ?", (test_id,))
    if found is not None:
        await insert_rows(conn, "test_cases", CASE_COLUMNS, _case_rows(test_id, found, fetched_at))
        await insert_rows(
            conn,
            "test_case_executions",
            EXECUTION_COLUMNS,
            _execution_rows(test_id, results or [], fetched_at),
        )
    await conn.execute(
        "INSERT INTO test_case_fetches (test_id, product_id, fetched_at, not_a_test_case) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (test_id) DO UPDATE SET "
        "product_id = excluded.product_id, fetched_at = excluded.fetched_at, "
        "not_a_test_case = excluded.not_a_test_case",
        (test_id, product_id, fetched_at, int(found is None)),
    )


def _execution(row: aiosqlite.Row) -> ExecutionRecord:
    return ExecutionRecord(
        test_case_id=row["test_case_id"],
        status=row["status"],
        tester_name=row["tester_name"],
        executed_at=from_db(row["executed_at"]),
        steps=[StepOutcome(**step) for step in json.loads(row["steps"])],
    )


class TestCaseRepository(ReadThroughRepository):
    """Test-case tests' cases and executions, read through per test with the tests' TTLs."""

    __test__ = False

    def __init__(
        self,
        db: Database,
        client: ClientSource | None,
        policy: FreshnessPolicy,
        gate: ReadThroughGate | None,
        tests: ExploratoryTestRepository,
    ) -> None:
        super().__init__(db, client, policy, gate)
        self._tests = tests

    async def test_case_run(self, test_id: int) -> Answer[TestCaseRun]:
        """The test (read through, ``get_test``) and its cases with their executions.

        A test with a ``testing_type`` is answered as not a test-case test without asking
        TestIO about cases (its freshness is the test's). Otherwise the cases are read through:
        served from the mirror while fresh, fetched when missing or stale; when TestIO fails a
        copy is served stale with the reason.

        Raises:
            NotFoundError: TestIO does not know the test.
            RemovedError: the mirror holds the test only as a tombstone.
            OfflineError: the cases were never fetched and no TestIO token is configured.
            UpstreamError: TestIO failed and the mirror has no copy.
        """
        found = await self._tests.get_test(test_id)
        test = found.value
        if test.testing_type is not None:
            run = TestCaseRun(test=test, is_test_case_test=False, cases=[])
            return Answer(value=run, freshness=found.freshness)
        lists = await read_through(
            ("test cases of test", test_id),
            self._policy,
            self._flights,
            lambda: self._load(test_id),
            self._online(lambda: self._refresh(test_id, test.product_id)),
            gate=self._gate,
        )
        held = lists.value
        run = TestCaseRun(
            test=test,
            is_test_case_test=not held.not_a_test_case,
            cases=held.cases,
            unmatched_executions=held.unmatched_executions,
        )
        return Answer(value=run, freshness=lists.freshness)

    async def _load(self, test_id: int) -> Local[_Lists] | None:
        async with self._db.reader() as conn:
            fetches = list(
                await conn.execute_fetchall(
                    "SELECT f.fetched_at, f.not_a_test_case, t.status, t.changed_at "
                    "FROM test_case_fetches f JOIN tests t ON t.id = f.test_id "
                    "WHERE f.test_id = ?",
                    (test_id,),
                )
            )
            if not fetches:
                return None
            cases = list(
                await conn.execute_fetchall(
                    "SELECT id, title, steps FROM test_cases "
                    "WHERE test_id = ? AND deleted_at IS NULL ORDER BY position",
                    (test_id,),
                )
            )
            executions = list(
                await conn.execute_fetchall(
                    "SELECT test_case_id, status, tester_name, steps, executed_at "
                    "FROM test_case_executions WHERE test_id = ? AND deleted_at IS NULL "
                    "ORDER BY executed_at, position",
                    (test_id,),
                )
            )
        fetch = fetches[0]
        by_case: dict[int, list[ExecutionRecord]] = {row["id"]: [] for row in cases}
        unmatched = 0
        for row in executions:
            runs = by_case.get(row["test_case_id"])
            if runs is None:
                unmatched += 1
            else:
                runs.append(_execution(row))
        records = [
            TestCaseRecord(
                id=row["id"],
                title=row["title"],
                steps=[CaseStep(**step) for step in json.loads(row["steps"])],
                executions=by_case[row["id"]],
            )
            for row in cases
        ]
        fetched_at = required_from_db(fetch["fetched_at"])
        ttl = self._policy.test_ttl(fetch["status"])
        if ttl is None and fetch["fetched_at"] < fetch["changed_at"]:
            ttl = 0  # fetched before the test last changed (closed): its cases may have too
        value = _Lists(
            not_a_test_case=bool(fetch["not_a_test_case"]),
            cases=records,
            unmatched_executions=unmatched,
        )
        return Local(value, fetched_at, ttl)

    async def _refresh(self, test_id: int, product_id: int) -> None:
        assert self._client is not None
        client = self._client
        found = await client.test_case_test(product_id, test_id)
        # A 404 on the cases says it all: the results are not asked for.
        results = None if found is None else await client.test_case_results(product_id, test_id)
        fetched_at = self._policy.stamp()
        async with self._db.transaction() as conn:
            await write_test_cases(conn, test_id, product_id, found, results, fetched_at)
