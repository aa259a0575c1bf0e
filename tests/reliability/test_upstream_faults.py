"""Upstream faults: TestIO misbehaving while the mirror syncs and while tools read through.

The sandbox's fault knobs inject 429 storms (with and without ``Retry-After``), 5xx bursts, 524s
on bug batches, hangs past the client's timeout, malformed and truncated bodies and dropped
connections, during a first full sync, during incremental syncs, during ``include_bugs`` syncs
and during read-through queries. The invariant checked everywhere:

- every run under faults has an honest status: ``success`` only when the mirror equals the
  sandbox, otherwise ``partial`` or ``failed`` with its reasons recorded in ``sync_events``;
- a fault never costs the mirror what it already held;
- a query answers correct data, or data marked stale with a reason, or a clean error;
- once the faults stop, one more sync (or query) makes everything equal the sandbox exactly.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from testio_mirror.app import App, open_app
from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxServer, SandboxWorld
from testio_mirror.sandbox.faults import FaultKind
from testio_mirror.settings import Settings
from testio_mirror.sync.models import SyncOptions, SyncStatus
from testio_mirror.upstream.models import FINAL_TEST_STATUSES
from tests.conftest import SandboxFactory
from tests.helpers.mcp_session import JSON, call, connect, text_of
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.reliability_ledger import Ledger, Scale
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import ALL_PHASES, run_sync

AREA = "upstream faults"
TIMEOUT_SECONDS = 0.25  # the client's timeout: every hang outlasts it
HEAL_TIMEOUT_SECONDS = 10.0  # the healing sync's, once the faults are gone
BUG_BATCH_TIMEOUT_SECONDS = 1.0  # the bug-batch test's, whose statuses are judged exactly
HANG_SECONDS = 5.0  # the sandbox stops hanging as soon as the client hangs up
HANG_STORM_SHOTS = 2  # each hang costs a timeout: a storm of them is bounded
HTTP_DATE = "http-date"  # a Retry-After given as an HTTP date a few seconds ahead
FAILING = (SyncStatus.PARTIAL, SyncStatus.FAILED)


@dataclass(frozen=True)
class Shot:
    """How one faulted request fails."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None  # seconds, or HTTP_DATE

    def rule(self, path: str, times: int | None) -> FaultRule:
        retry_after = self.retry_after
        if retry_after == HTTP_DATE:
            retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
        return FaultRule(
            kind=self.kind,
            path=path,
            times=times,
            status=self.status,
            retry_after=retry_after,
            hang_seconds=HANG_SECONDS,
        )


@dataclass(frozen=True)
class Fault:
    """A way TestIO misbehaves: a storm (every request to one target fails) and a short burst
    of a sibling fault on another."""

    name: str
    storm: Shot
    burst: Shot

    def storm_rule(self, path: str) -> FaultRule:
        return self.storm.rule(path, HANG_STORM_SHOTS if self.storm.kind == "hang" else None)


def alike(shot: Shot) -> tuple[Shot, Shot]:
    """The same shot for the storm and the burst."""
    return shot, shot


FAULTS = (
    Fault("429-storm", Shot("rate_limit"), Shot("rate_limit", retry_after="2")),
    Fault("429-storm-retry-after", Shot("rate_limit", retry_after=HTTP_DATE), Shot("rate_limit")),
    Fault("5xx", Shot("error", 500), Shot("error", 503)),
    Fault("524", Shot("error", 524), Shot("error", 502)),
    Fault("hang", *alike(Shot("hang"))),
    Fault("malformed", *alike(Shot("malformed"))),
    Fault("truncated", *alike(Shot("truncated"))),
    Fault("disconnect", *alike(Shot("disconnect"))),
)
FAULT_IDS = [fault.name for fault in FAULTS]

# What a sync asks TestIO for; "*" is TestIO down altogether.
SYNC_TARGETS = (
    "products",
    "products/*/features",
    "products/*/sections/*/features",
    "products/*/exploratory_tests",
    "bugs",
    "*",
)


def fault_dataset(scale: Scale, round_: int = 0) -> DatasetSpec:
    """The scale's account shape with a quarter of its tests (at least 20) and two bugs each:
    a few pages per product, cheap enough to sync twice per fault and round."""
    spec = scale.dataset
    return DatasetSpec(
        seed=spec.seed + 100 + round_,
        products=spec.products,
        section_products=spec.section_products,
        tests_per_product=max(20, spec.tests_per_product // 4),
        bugs_per_test=2,
    )


def fault_settings(sandbox: SandboxServer, home: Path, **overrides: Any) -> Settings:
    """Small pages and batches (many requests to hit), a short timeout, one retry, tiny waits."""
    knobs: dict[str, Any] = {
        "page_size": 8,
        "bug_batch_size": 8,
        "max_concurrent_requests": 4,
        "retry_max_attempts": 2,
        "retry_max_delay_seconds": 0.01,
        "http_timeout_seconds": TIMEOUT_SECONDS,
    }
    knobs.update(overrides)
    return make_settings(sandbox, home, **knobs)


def fault_plan(fault: Fault, round_: int) -> tuple[FaultRule, FaultRule]:
    """A storm on one target (rotating with the fault and the round, so the quick form covers
    every target) and a short burst on a random one."""
    rng = random.Random(f"{fault.name}:{round_}")
    storm = fault.storm_rule(SYNC_TARGETS[(FAULTS.index(fault) + round_) % len(SYNC_TARGETS)])
    burst = fault.burst.rule(rng.choice(SYNC_TARGETS), times=rng.randint(1, 3))
    return storm, burst


@dataclass
class Tally:
    """What one test tried and what it found wrong: recorded in the ledger, then asserted."""

    trials: int = 0
    rules: list[FaultRule] = field(default_factory=list)
    mismatches: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def faults(self) -> int:
        return sum(rule.fired for rule in self.rules)

    def inject(self, sandbox: SandboxServer, *rules: FaultRule) -> None:
        for rule in rules:
            self.rules.append(sandbox.faults.add(rule))

    def record(self, ledger: Ledger) -> None:
        ledger.record(AREA, trials=self.trials, faults=self.faults, mismatches=self.mismatches)


# -- judging a run -------------------------------------------------------------------------------


def recorded_run(database: Path, run_id: str) -> tuple[str | None, list[str]]:
    """A run's status and its error reasons, as ``sync_events`` holds them."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT status FROM sync_events WHERE kind = 'run' AND run_id = ?", (run_id,)
        ).fetchone()
        reasons = conn.execute(
            "SELECT message FROM sync_events WHERE kind = 'error' AND run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()
    return (None if row is None else str(row[0])), [str(r[0]) for r in reasons]


def judge_run(
    label: str,
    database: Path,
    world: SandboxWorld,
    *,
    run_id: str,
    status: str,
    errors: list[str],
    bugs: bool,
    tally: Tally,
) -> list[str]:
    """Is this run honest? Returns the mirror's differences from the sandbox; what is wrong goes
    to ``tally.problems`` (a ``success`` with differences counts as mismatches too)."""
    differences = mirror_differences(database, world, bugs=bugs)
    recorded, reasons = recorded_run(database, run_id)
    where = f"{label} (run {run_id}, {status})"
    if recorded != status:
        tally.problems.append(f"{where}: sync_events says {recorded!r}")
    if status == SyncStatus.SUCCESS:
        if differences:
            tally.mismatches += len(differences)
            tally.problems.append(f"{where}: success, but the mirror differs: {differences[:5]}")
        if errors:
            tally.problems.append(f"{where}: success with errors {errors[:3]}")
    elif status in FAILING:
        if not errors or not all(e.strip() for e in errors):
            tally.problems.append(f"{where}: no reasons given ({errors!r})")
        if reasons != errors:
            tally.problems.append(f"{where}: sync_events holds reasons {reasons}, not {errors}")
    else:
        tally.problems.append(f"{where}: a run under faults cannot end {status!r}")
    return differences


def judge_storm(label: str, storm: FaultRule, status: str, tally: Tally) -> None:
    """A storm that never lets up on something the run asked for cannot leave it complete."""
    if storm.times is None and storm.fired and status == SyncStatus.SUCCESS:
        tally.problems.append(
            f"{label}: {storm.kind} on every {storm.path!r} request ({storm.fired} fired), yet "
            "the run says success"
        )


def live_ids(database: Path, table: str) -> set[int]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            f"SELECT id FROM {table} WHERE deleted_at IS NULL"  # noqa: S608
        ).fetchall()
    return {int(row[0]) for row in rows}


async def sync_and_judge(
    app: App,
    sandbox: SandboxServer,
    label: str,
    tally: Tally,
    *,
    bugs: bool = True,
    options: SyncOptions | None = None,
) -> tuple[str, list[str]]:
    """One sync (every phase, or the default ones without ``bugs``), judged; its status and the
    mirror's differences after it."""
    result = await run_sync(app, phases=ALL_PHASES if bugs else None, options=options)
    differences = judge_run(
        label,
        app.settings.database_path,
        sandbox.world,
        run_id=result.run_id,
        status=result.status.value,
        errors=result.errors,
        bugs=bugs,
        tally=tally,
    )
    return result.status.value, differences


async def heal(
    app: App, sandbox: SandboxServer, label: str, tally: Tally, *, bugs: bool = True
) -> None:
    """Faults stop; one more (plain) sync must be a success that leaves the mirror equal to
    TestIO."""
    sandbox.faults.clear()
    # The faults are gone: what this judges is that one more sync heals, not that a busy
    # machine answers within the storm's 0.25 s client timeout, so it gets an ordinary one.
    relaxed = app.settings.model_copy(update={"http_timeout_seconds": HEAL_TIMEOUT_SECONDS})
    async with open_app(relaxed) as healer:
        status, differences = await sync_and_judge(healer, sandbox, label, tally, bugs=bugs)
    if status != SyncStatus.SUCCESS:
        tally.mismatches += len(differences)
    if status != SyncStatus.SUCCESS or differences:
        tally.problems.append(f"{label}: ended {status} with differences {differences[:5]}")


# -- syncs under faults --------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_a_first_full_sync_under_faults_is_honest_and_one_more_sync_heals_it(
    fault: Fault, make_sandbox: SandboxFactory, tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    """An empty mirror's first sync of every phase meets a storm and a burst of ``fault``."""
    tally = Tally()
    fired: list[int] = []
    try:
        for round_ in range(scale.fault_rounds):
            sandbox = make_sandbox(fault_dataset(scale, round_))
            settings = fault_settings(sandbox, tmp_path / f"home-{round_}")
            storm, burst = fault_plan(fault, round_)
            tally.inject(sandbox, storm, burst)
            label = f"round {round_}, {fault.name} storm on {storm.path!r}"
            async with open_app(settings) as app:
                status, _ = await sync_and_judge(app, sandbox, f"{label}: first sync", tally)
                tally.trials += 1
                judge_storm(label, storm, status, tally)
                fired.append(storm.fired + burst.fired)
                await heal(app, sandbox, f"{label}: the sync after", tally)
    finally:
        tally.record(ledger)
    assert tally.problems == []
    assert all(fired), fired  # every round met its faults


def edit(world: SandboxWorld, step: int) -> None:
    """Changes an incremental sync is there to pick up: a new test at the head of every product
    with a new bug, a first-page test extended to the head, another one changing status, and a
    new bug on an open test."""
    order = world.snapshot()["product_tests"]
    for product_id, tests in order.items():
        added = world.add_test(product_id)
        world.add_bug(added)
        world.extend_test(tests[2 + step % 5], days=400)
        changed = tests[1]
        status = world.test(changed)["status"]
        world.set_test_status(changed, "locked" if status != "locked" else "customer_finalized")
        open_tests = [t for t in tests[3:] if world.test(t)["status"] not in FINAL_TEST_STATUSES]
        if open_tests:
            world.add_bug(open_tests[step % len(open_tests)])


async def test_incremental_syncs_under_every_fault_are_honest_lose_nothing_and_heal(
    make_sandbox: SandboxFactory, tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    """After a clean first sync, TestIO changes and each fault in turn meets the next
    incremental sync; it keeps everything the mirror held, and the sync after it catches up."""
    sandbox = make_sandbox(fault_dataset(scale))
    # Every open test's bugs and every product's features are due at each run, so faults on
    # them are met by an incremental run too.
    settings = fault_settings(
        sandbox, tmp_path / "home", open_test_ttl_seconds=0, product_ttl_seconds=0
    )
    database = settings.database_path
    tally = Tally()
    fired: dict[str, int] = {}
    try:
        async with open_app(settings) as app:
            await heal(app, sandbox, "the clean first sync", tally)
            for round_ in range(scale.fault_rounds):
                for index, fault in enumerate(FAULTS):
                    edit(sandbox.world, round_ * len(FAULTS) + index)
                    held = {table: live_ids(database, table) for table in ("tests", "bugs")}
                    storm, burst = fault_plan(fault, round_)
                    tally.inject(sandbox, storm, burst)
                    label = f"round {round_}, {fault.name} storm on {storm.path!r}"
                    status, _ = await sync_and_judge(app, sandbox, f"{label}: incremental", tally)
                    tally.trials += 1
                    judge_storm(label, storm, status, tally)
                    fired[label] = storm.fired + burst.fired
                    for table, before in held.items():
                        lost = sorted(before - live_ids(database, table))
                        if lost:
                            tally.problems.append(f"{label}: the run lost {table} {lost[:10]}")
                    await heal(app, sandbox, f"{label}: the sync after", tally)
    finally:
        tally.record(ledger)
    assert tally.problems == []
    assert all(fired.values()), fired  # every incremental run met its faults


RELISTED = DatasetSpec(seed=37, products=2, section_products=0, tests_per_product=20)


async def test_a_full_relisting_under_faults_never_calls_deletions_it_could_not_check_done(
    make_sandbox: SandboxFactory, tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    """A full listing finds deletions by asking for each test it did not show; when TestIO
    fails those questions, the run cannot be a success, and the next sync must finish the job."""
    sandbox = make_sandbox(RELISTED)
    world = sandbox.world
    settings = fault_settings(sandbox, tmp_path / "home")
    tally = Tally()
    fired: dict[str, int] = {}
    try:
        async with open_app(settings) as app:
            await heal(app, sandbox, "the clean first sync", tally, bugs=False)
            for round_ in range(scale.fault_rounds):
                for index, fault in enumerate(FAULTS):
                    order = world.snapshot()["product_tests"]
                    for product_id, tests in order.items():
                        # Deep in the listing, where only a full listing notices it is gone.
                        world.remove_test(tests[-1 - (round_ * len(FAULTS) + index) % 10])
                        world.add_test(product_id)
                    storm = fault.storm_rule("exploratory_tests/*")
                    tally.inject(sandbox, storm)
                    label = f"round {round_}, {fault.name} on the checks of a full listing"
                    status, _ = await sync_and_judge(
                        app,
                        sandbox,
                        label,
                        tally,
                        bugs=False,
                        options=SyncOptions(force_refresh=True),
                    )
                    tally.trials += 1
                    fired[label] = storm.fired
                    judge_storm(label, storm, status, tally)
                    await heal(app, sandbox, f"{label}: the sync after", tally, bugs=False)
    finally:
        tally.record(ledger)
    assert tally.problems == []
    assert all(fired.values()), fired


# -- 524 on bug batches, through the sync_data tool ----------------------------------------------

# (shot, times, absorbed): how a bug batch fails, how often, and whether the run can still
# succeed. Two shots are always absorbed: halving a batch and retrying a single test three times
# outlasts them. A storm fails every batch down to single tests, so bugs are missing.
BUG_BATCH_FAULTS: dict[str, tuple[Shot, int | None, bool]] = {
    "524-burst": (Shot("error", 524), 2, True),
    "hang-burst": (Shot("hang"), 2, True),
    "524-storm": (Shot("error", 524), None, False),
}
BUG_DATASET = DatasetSpec(seed=31, products=2, section_products=1, tests_per_product=16)


async def sync_data(client: Client) -> tuple[str, str, list[str]]:
    """``sync_data`` with ``include_bugs``: the run's id, status and errors."""
    answer = await call(client, "sync_data", {"include_bugs": True})
    result: JSON = answer["result"]
    return str(answer["run_id"]), str(result["status"]), [str(e) for e in result["errors"]]


async def test_bug_batches_failing_during_include_bugs_syncs_are_honest_and_healed(
    make_sandbox: SandboxFactory, tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    """``sync_data(include_bugs=True)`` while bug batches answer 524 or hang: a burst is
    absorbed (the run succeeds, complete), a storm leaves the run partial, naming the bugs."""
    sandbox = make_sandbox(BUG_DATASET)
    settings = make_settings(
        sandbox,
        tmp_path / "home",
        page_size=8,
        bug_batch_size=8,
        max_concurrent_requests=4,
        retry_max_attempts=3,
        retry_max_delay_seconds=0.01,
        # A hang (5 s) still outlasts it, but an answer slowed by a busy machine does not turn
        # an absorbed burst into one retry too many (the run's status is judged exactly here).
        http_timeout_seconds=BUG_BATCH_TIMEOUT_SECONDS,
        open_test_ttl_seconds=0,  # every open test's bugs are due again at each sync
    )
    database = settings.database_path
    world = sandbox.world
    tally = Tally()
    statuses: dict[str, tuple[str, str]] = {}  # label -> (status, status expected)
    fired: dict[str, int] = {}
    try:
        async with connect(settings) as client:
            for round_ in range(scale.fault_rounds):
                for index, (case, (shot, times, absorbed)) in enumerate(BUG_BATCH_FAULTS.items()):
                    step = round_ * len(BUG_BATCH_FAULTS) + index
                    if step:
                        edit(world, step)  # the first sync is a full one, the others incremental
                    rule = shot.rule("bugs", times)
                    tally.inject(sandbox, rule)
                    label = f"round {round_}, {case}"
                    run_id, status, errors = await sync_data(client)
                    tally.trials += 1
                    fired[label] = rule.fired
                    expected = SyncStatus.SUCCESS if absorbed else SyncStatus.PARTIAL
                    statuses[label] = (status, expected.value)
                    judge_run(
                        label,
                        database,
                        world,
                        run_id=run_id,
                        status=status,
                        errors=errors,
                        bugs=True,
                        tally=tally,
                    )
                    if not all("bugs" in e for e in errors):
                        tally.problems.append(f"{label}: reasons beyond the bugs: {errors}")
                    sandbox.faults.clear()
                    run_id, status, errors = await sync_data(client)
                    differences = judge_run(
                        f"{label}: the sync after",
                        database,
                        world,
                        run_id=run_id,
                        status=status,
                        errors=errors,
                        bugs=True,
                        tally=tally,
                    )
                    if status != SyncStatus.SUCCESS or differences:
                        tally.mismatches += len(differences)
                        tally.problems.append(f"{label}: not healed: {status}, {differences[:5]}")
    finally:
        tally.record(ledger)
    assert tally.problems == []
    assert all(fired.values()), fired
    assert all(got == expected for got, expected in statuses.values()), statuses


# -- read-through queries under faults -----------------------------------------------------------

READ_DATASET = DatasetSpec(seed=29, products=2, section_products=1, tests_per_product=16)


def bugs_of(world: SandboxWorld, test_id: int) -> dict[int, str]:
    """``bug id -> status`` of a test's bugs upstream."""
    return {
        bug_id: str(bug["status"])
        for bug_id, bug in world.snapshot()["bugs"].items()
        if bug["test"]["id"] == test_id
    }


Question = tuple[str, JSON]  # a tool and its arguments


def verdicts(world: SandboxWorld, question: Question, answer: JSON) -> list[tuple[str, JSON, bool]]:
    """Each part of an answer: its name, its freshness, and whether it is what TestIO holds."""
    tool, args = question
    if tool == "get_test":
        truth = world.test(args["test_id"])
        test = answer["test"]
        same = (test["status"], test["title"]) == (truth["status"], truth["title"])
        counts = answer["bug_counts"]
        bugs = bugs_of(world, args["test_id"])
        same_bugs = counts["total"] == len(bugs) and counts["by_status"] == {
            status: list(bugs.values()).count(status) for status in set(bugs.values())
        }
        return [
            ("test", answer["freshness"], same),
            ("bug counts", answer["bugs_freshness"], same_bugs),
        ]
    if tool == "list_bugs":
        listed = {b["id"]: b["status"] for b in answer["bugs"]}
        return [("bugs", answer["freshness"], listed == bugs_of(world, args["test_ids"][0]))]
    truth = world.bug(args["bug_id"])
    bug = answer["bug"]
    same = (bug["status"], bug["known"]) == (truth["status"], truth["known"])
    return [("bug", answer["freshness"], same)]


async def ask_under_faults(
    client: Client,
    world: SandboxWorld,
    token: str,
    questions: list[Question],
    where: str,
    tally: Tally,
) -> None:
    """While TestIO fails, each question gets what TestIO holds, a copy marked stale with a
    reason, or a clean error: never old data passed off as fresh, never a traceback."""
    for question in questions:
        tool, args = question
        label = f"{where}: {tool}({args}) under faults"
        tally.trials += 1
        result = await client.call_tool(tool, args)
        if result.is_error:
            text = text_of(result)
            if token in text:
                tally.problems.append(f"{label}: the error shows the token")
            if "Traceback" in text or "unexpectedly" in text or "TestIO" not in text:
                tally.problems.append(f"{label}: not a clean upstream error: {text[:300]}")
            continue
        answer = result.structured_content
        assert answer is not None, f"{tool} answered no structured content"
        for part, freshness, correct in verdicts(world, question, answer):
            if freshness["stale"] and not freshness.get("stale_reason"):
                tally.problems.append(f"{label}: {part} stale without a reason: {freshness}")
            if not correct and not freshness["stale"]:
                tally.problems.append(f"{label}: old {part} presented as fresh: {freshness}")


async def ask_after_faults(
    client: Client, world: SandboxWorld, questions: list[Question], where: str, tally: Tally
) -> None:
    """Once TestIO answers again, every question gets exactly what it holds, fresh."""
    for question in questions:
        tool, args = question
        tally.trials += 1
        answer = await call(client, tool, args)
        for part, freshness, correct in verdicts(world, question, answer):
            if not correct:
                tally.mismatches += 1
                tally.problems.append(f"{where}: {tool}({args}) after the faults: {part} differs")
            if freshness["stale"]:
                tally.problems.append(f"{where}: {tool}({args}) after the faults: {freshness}")


async def ask_through_a_storm(
    client: Client,
    sandbox: SandboxServer,
    fault: Fault,
    listed: int,
    asked: tuple[int, int],
    tally: Tally,
) -> None:
    """Ask for the test and bug ``asked`` and for the bugs of the mirrored test ``listed`` while
    every request to TestIO meets ``fault``, then again once it stops."""
    test_id, bug_id = asked
    questions: list[Question] = [
        ("get_test", {"test_id": test_id}),
        ("list_bugs", {"test_ids": [listed], "limit": 100}),
        ("get_bug", {"bug_id": bug_id}),
    ]
    world = sandbox.world
    tally.inject(sandbox, fault.storm_rule("*"))
    await ask_under_faults(client, world, sandbox.token, questions, fault.name, tally)
    # Listing tests reads the mirror only: TestIO failing changes nothing about it.
    product_id = world.test(listed)["product"]["id"]
    listing = await call(client, "list_tests", {"product_id": product_id, "limit": 100})
    tally.trials += 1
    if listed not in {t["id"] for t in listing["tests"]}:
        tally.problems.append(f"{fault.name}: list_tests lost test {listed} under faults")
    sandbox.faults.clear()
    await ask_after_faults(client, world, questions, fault.name, tally)


async def test_read_through_queries_under_every_fault_answer_honestly_and_recover(
    make_sandbox: SandboxFactory, tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    """get_test, list_bugs and get_bug read through to TestIO while it fails in each way, first
    with no copy in the mirror, then with an outdated one."""
    sandbox = make_sandbox(READ_DATASET)
    world = sandbox.world
    # A TTL of 0: every open test and its bugs are read through on every question. A probe
    # interval of 0: a question right after the storm asks TestIO again, without waiting out
    # the interval in which a TestIO known down is not asked at all.
    settings = make_settings(
        sandbox,
        tmp_path / "home",
        open_test_ttl_seconds=0,
        read_through_probe_interval_seconds=0,
        http_timeout_seconds=TIMEOUT_SECONDS,
        retry_max_attempts=2,
        retry_max_delay_seconds=0.01,
    )
    tally = Tally()
    try:
        async with connect(settings) as client:
            first = await call(client, "sync_data", {})  # no bugs: none is mirrored yet
            if first["result"]["status"] != SyncStatus.SUCCESS:
                tally.problems.append(f"the clean first sync: {first['result']}")
            order = world.snapshot()["product_tests"]
            products = sorted(order)
            for round_ in range(scale.fault_rounds):
                for index, fault in enumerate(FAULTS):
                    step = round_ * len(FAULTS) + index
                    product_id = products[step % len(products)]
                    open_tests = [
                        t
                        for t in order[product_id]
                        if world.test(t)["status"] not in FINAL_TEST_STATUSES
                    ]
                    known = open_tests[step % len(open_tests)]  # mirrored; its bugs are not
                    known_bug = min(bugs_of(world, known))
                    added = world.add_test(product_id)  # upstream only
                    added_bug = world.add_bug(added)
                    # Nothing of what is asked is mirrored yet (but the test ``known``).
                    await ask_through_a_storm(
                        client, sandbox, fault, known, (added, added_bug), tally
                    )
                    # The mirror now holds copies; TestIO moves on, then fails again.
                    world.add_bug(known)
                    status = world.test(known)["status"]
                    world.set_test_status(known, "locked" if status != "locked" else "running")
                    accepted = world.bug(known_bug)["status"] == "accepted"
                    world.triage(known_bug, "mark_as_known" if accepted else "accept")
                    await ask_through_a_storm(
                        client, sandbox, fault, known, (known, known_bug), tally
                    )
    finally:
        tally.record(ledger)
    assert tally.problems == []
    assert tally.faults > 0
