"""A hostile upstream: TestIO (or something in front of it) trickling answers a few bytes at a
time, hanging its bugs endpoint for a whole run, answering 429 while requests queue, and echoing
secrets back in altered forms.

What must hold:

- no request holds a sync or a query past its deadline, however slowly the answer drips;
- read-through under upstream faults logs one line, never a traceback;
- a bugs endpoint that keeps timing out is asked a number of times proportional to the batches
  (not the tests), then reported down for the run, which ends partial and leaves the rest for
  the next sync, and the process ends without a task left running;
- after a 429 no request of the process is sent before the pause ends, queued ones included;
- no form of a secret an upstream echoes (plain, base64, a suffix, upper- or lower-cased) reaches
  output, logs, answers, tool errors or ``sync_events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from testio_mirror.app import open_app
from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxServer
from testio_mirror.sandbox.faults import EchoForm
from testio_mirror.sync.models import SyncPhase, SyncStatus
from testio_mirror.upstream.client import CustomerApiClient
from tests.conftest import SandboxFactory
from tests.helpers.command_line import Children, sync_env
from tests.helpers.mcp_session import call, connect
from tests.helpers.reliability_ledger import Ledger, Scale
from tests.helpers.secret_scan import altered_fragments, leaks_of, table_leaks
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import ALL_PHASES, run_sync

AREA = "hostile upstream"
DATASET = DatasetSpec(seed=41, products=2, section_products=0, tests_per_product=24)
# A slow-loris answer: every read gets bytes well within the timeout, the whole takes minutes.
TRICKLE = {"trickle_bytes": 36, "trickle_interval": 0.2}
# Generous: proves the hang is gone (a trickled page takes minutes), never a speed target.
GONE_HANG_SECONDS = 20.0


def hostile_settings(sandbox: SandboxServer, home: Path, **overrides: Any) -> Any:
    knobs: dict[str, Any] = {
        "page_size": 8,
        "bug_batch_size": 4,
        "max_concurrent_requests": 4,
        "retry_max_attempts": 2,
        "retry_max_delay_seconds": 0.01,
        "http_timeout_seconds": 0.5,
    }
    knobs.update(overrides)
    return make_settings(sandbox, home, **knobs)


def run_errors(database: Path, run_id: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT message FROM sync_events WHERE kind = 'error' AND run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()
    return [str(row[0]) for row in rows]


def count_tests_without_bugs(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM tests WHERE deleted_at IS NULL AND bugs_fetched_at IS NULL"
        ).fetchone()
    return int(row[0])


# -- 1. slow-loris against a sync ----------------------------------------------------------------


async def test_a_trickling_answer_cannot_hold_a_sync_past_the_attempt_deadline(
    make_sandbox: SandboxFactory, tmp_path: Path, ledger: Ledger
) -> None:
    """Every listing page trickles: each attempt ends at the HTTP timeout (a total deadline,
    not one per read), is retried like a timeout, and the run ends partial, soon."""
    sandbox = make_sandbox(DATASET)
    rule = sandbox.faults.add(
        FaultRule(kind="trickle", path="products/*/exploratory_tests", times=None, **TRICKLE)
    )
    settings = hostile_settings(sandbox, tmp_path / "home")
    started = time.monotonic()
    async with open_app(settings) as app:
        async with asyncio.timeout(GONE_HANG_SECONDS):
            result = await run_sync(app, phases=[SyncPhase.PRODUCTS, SyncPhase.NEW_TESTS])
    took = time.monotonic() - started
    listings = sandbox.requests.records("products/*/exploratory_tests")
    ledger.record(AREA, trials=1, faults=rule.fired)
    assert result.status is SyncStatus.PARTIAL, result
    assert len(result.errors) == DATASET.products, result.errors
    assert all("timed out" in error for error in result.errors), result.errors
    # One first page per product, each tried twice (the retry rules of a timeout).
    assert len(listings) == DATASET.products * settings.retry_max_attempts, listings
    assert took < GONE_HANG_SECONDS


# -- 2. slow-loris and faults against read-through queries -------------------------------------

READ_FAULTS: dict[str, dict[str, Any]] = {
    "500": {"kind": "error", "status": 500},
    "disconnect": {"kind": "disconnect"},
    "malformed": {"kind": "malformed"},
    "trickle": {"kind": "trickle", **TRICKLE},
}


@pytest.mark.parametrize("fault", list(READ_FAULTS))
async def test_read_through_under_faults_keeps_its_deadline_and_logs_one_line(
    fault: str,
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    ledger: Ledger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """get_test and list_bugs of a test the mirror lacks while every request to TestIO meets
    ``fault``: a clean tool error within the read-through deadline (the HTTP timeout is far
    longer), and warnings of one line each, never a traceback."""
    sandbox = make_sandbox(DATASET)
    settings = hostile_settings(
        sandbox,
        tmp_path / "home",
        http_timeout_seconds=60.0,
        read_through_timeout_seconds=1.0,
        read_through_probe_interval_seconds=0,
        log_level="DEBUG",
    )
    product_id = sandbox.world.products()[0]["id"]
    async with connect(settings) as client:
        await call(client, "sync_data", {})
        new_test = sandbox.world.add_test(product_id)
        rule = sandbox.faults.add(FaultRule(path="*", times=None, **READ_FAULTS[fault]))
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        waits: list[float] = []
        errors: list[str] = []
        for tool, args in (
            ("get_test", {"test_id": new_test}),
            ("list_bugs", {"test_ids": [new_test]}),
        ):
            started = time.monotonic()
            async with asyncio.timeout(GONE_HANG_SECONDS):
                result = await client.call_tool(tool, args)
            waits.append(time.monotonic() - started)
            errors.append(str(result.content))
            assert result.is_error, (tool, result)
        sandbox.faults.clear()
    logged = caplog.records
    text = "\n".join(caplog.text.splitlines())
    ledger.record(AREA, trials=2, faults=rule.fired)
    assert rule.fired >= 1
    assert all("TestIO" in error and "Traceback" not in error for error in errors), errors
    assert max(waits) < GONE_HANG_SECONDS
    assert "Traceback" not in text
    with_exc = [f"{r.name}: {r.getMessage()}" for r in logged if r.exc_info]
    assert with_exc == [], with_exc
    warnings = [
        r.getMessage()
        for r in logged
        if r.levelno >= logging.WARNING and r.name.startswith("testio_mirror")
    ]
    assert warnings, "the failure was not logged"
    assert all("\n" not in message for message in warnings), warnings


async def test_a_trickling_read_through_is_answered_from_the_copy_at_its_deadline(
    make_sandbox: SandboxFactory, tmp_path: Path, ledger: Ledger
) -> None:
    """A test the mirror holds, past its TTL, while TestIO trickles: the copy, marked stale,
    at the read-through deadline; through the repository as through the tool."""
    sandbox = make_sandbox(DATASET)
    settings = hostile_settings(
        sandbox,
        tmp_path / "home",
        http_timeout_seconds=60.0,
        read_through_timeout_seconds=1.0,
        open_test_ttl_seconds=0,
    )
    open_test = sandbox.world.add_test(sandbox.world.products()[0]["id"])  # running: open
    async with open_app(settings) as app:
        await run_sync(app, phases=ALL_PHASES)
        rule = sandbox.faults.add(FaultRule(kind="trickle", path="*", times=None, **TRICKLE))
        async with asyncio.timeout(GONE_HANG_SECONDS):
            answer = await app.mirror.tests.get_test(open_test)
    ledger.record(AREA, trials=1, faults=rule.fired)
    assert rule.fired >= 1
    assert answer.freshness.stale, answer.freshness
    assert "did not answer within" in (answer.freshness.stale_reason or "")


# -- 3 and 4. a bugs endpoint that hangs for the whole run --------------------------------------

BUGS_DATASET = DatasetSpec(seed=43, products=2, section_products=0, tests_per_product=40)


async def test_a_hanging_bugs_endpoint_is_asked_per_batch_then_reported_down(
    make_sandbox: SandboxFactory, tmp_path: Path, ledger: Ledger
) -> None:
    """Every bugs request hangs past the timeout: no batch is halved, the endpoint is reported
    down after a few timeouts, the run ends partial with that one reason, the tests not fetched
    stay to fetch, and the next sync (TestIO answering again) fetches them."""
    sandbox = make_sandbox(BUGS_DATASET)
    settings = hostile_settings(sandbox, tmp_path / "home", http_timeout_seconds=0.25)
    rule = sandbox.faults.add(FaultRule(kind="hang", path="bugs", times=None, hang_seconds=5))
    tests = BUGS_DATASET.products * BUGS_DATASET.tests_per_product
    batches = -(-tests // settings.bug_batch_size)
    async with open_app(settings) as app:
        async with asyncio.timeout(GONE_HANG_SECONDS * 2):
            result = await run_sync(app, phases=ALL_PHASES)
        asked = sandbox.requests.records("bugs")
        sizes = [len(parse_qs(r.query)["filter_test_cycle_ids"][0].split(",")) for r in asked]
        left = count_tests_without_bugs(settings.database_path)
        recorded = run_errors(settings.database_path, result.run_id)
        sandbox.faults.clear()
        healed = await run_sync(app, phases=ALL_PHASES)
    ledger.record(AREA, trials=2, faults=rule.fired)
    assert result.status is SyncStatus.PARTIAL, result
    bug_errors = [e for e in result.errors if "bugs" in e]
    assert len(bug_errors) == 1, result.errors
    assert "down" in bug_errors[0], bug_errors
    assert "next sync" in bug_errors[0], bug_errors
    assert recorded == result.errors
    # Proportional to batches: at most every batch tried as often as one request may be.
    assert len(asked) <= batches * settings.retry_max_attempts, (len(asked), batches)
    assert len(asked) < tests, (len(asked), tests)
    assert set(sizes) == {settings.bug_batch_size}, sizes  # never halved on a timeout
    assert left > 0
    assert healed.status is SyncStatus.SUCCESS, healed
    assert count_tests_without_bugs(settings.database_path) == 0


def test_a_cli_sync_against_a_hanging_bugs_endpoint_exits_cleanly(
    make_sandbox: SandboxFactory, tmp_path: Path, ledger: Ledger
) -> None:
    """The real ``testio-mirror sync --bugs`` while every bugs request hangs: exit 3
    (partial), and nothing left running at exit (no traceback, no destroyed task, no
    exception never retrieved)."""
    sandbox = make_sandbox(BUGS_DATASET)
    rule = sandbox.faults.add(FaultRule(kind="hang", path="bugs", times=None, hang_seconds=5))
    env = sync_env(
        sandbox,
        tmp_path / "home",
        TESTIO_HTTP_TIMEOUT_SECONDS="0.25",
        TESTIO_BUG_BATCH_SIZE="8",
        TESTIO_MAX_CONCURRENT_REQUESTS="4",
        # Retries with real, jittered waits: requests of one batch end at different moments,
        # as they do with the defaults (a failed batch once left its other half running).
        TESTIO_RETRY_MAX_ATTEMPTS="3",
        TESTIO_RETRY_MAX_DELAY_SECONDS="1.0",
    )
    kids = Children(tmp_path)
    try:
        done = kids.run(env, "sync", "--bugs")
    finally:
        kids.stop_all()
    ledger.record(AREA, trials=1, faults=rule.fired)
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    for sign in ("Traceback", "Task was destroyed", "exception was never retrieved"):
        assert sign not in done.stderr, done.stderr
    assert "down" in done.stdout + done.stderr


# -- 5. a 429 pauses every request, queued ones included ----------------------------------------


async def test_a_429_pauses_requests_already_queued_behind_the_concurrency_limit(
    make_sandbox: SandboxFactory, tmp_path: Path, scale: Scale, ledger: Ledger
) -> None:
    """Many test requests queue behind a limit of two in flight; one of them is answered 429
    with Retry-After: 1. From that answer until the pause ends, TestIO sees no request (the
    long form tries more rounds, the 429 on a later request each time)."""
    sandbox = make_sandbox(DATASET)
    sandbox.knobs.latency_ms = 30
    # Retry-After is honoured up to the longest backoff: room for the 1 s asked.
    settings = hostile_settings(
        sandbox, tmp_path / "home", max_concurrent_requests=2, retry_max_delay_seconds=5.0
    )
    test_ids = sandbox.world.snapshot()["product_tests"][sandbox.world.products()[0]["id"]]
    early: list[tuple[int, float, str]] = []
    counts: list[int] = []
    fired = 0
    try:
        for round_ in range(scale.fault_rounds):
            sandbox.requests.clear()
            # The 429 answers another test each round: the requests before it pass.
            rule = sandbox.faults.add(
                FaultRule(
                    kind="rate_limit", path=f"exploratory_tests/{test_ids[round_]}", retry_after="1"
                )
            )
            async with CustomerApiClient(settings) as client:
                await asyncio.gather(*(client.test(t) for t in test_ids[:12]))
            fired += rule.fired
            records = sandbox.requests.records("exploratory_tests/*")
            counts.append(len(records))
            throttled = next(r for r in records if r.status == 429)
            answered = throttled.at + throttled.ms / 1000
            # A little slack each side: the server's clock is read at arrival, the client's at
            # the answer.
            early += [
                (round_, round(r.at - answered, 3), r.path)
                for r in records
                if answered + 0.05 < r.at < answered + 0.95
            ]
    finally:
        ledger.record(AREA, trials=scale.fault_rounds, faults=fired, mismatches=len(early))
    assert fired == scale.fault_rounds
    assert counts == [13] * scale.fault_rounds  # twelve answers and the one 429 each round
    assert early == [], early


# -- 6. secrets echoed back in altered forms ----------------------------------------------------

API_TOKEN = "qW3eR7tY1uI5oP9aS2dF6gH0jK4lZ8xC"
HTTP_TOKEN = "mN6bV2cX9zA5sD1fG7hJ3kL8qW4eR0tY"
ECHOED_FORMS: tuple[EchoForm, ...] = ("plain", "base64", "suffix", "upper", "lower")
ECHO_STATUSES = (400, 422, 500, 200, 429)


def echo_rules(path: str) -> list[FaultRule]:
    """One shot per secret, form and status, on ``path``: every request meets another."""
    rules: list[FaultRule] = []
    for secret in (None, HTTP_TOKEN):  # None: the API token the request presented
        for index, form in enumerate(ECHOED_FORMS):
            for status in (ECHO_STATUSES[index % len(ECHO_STATUSES)], 422):
                rules.append(
                    FaultRule(
                        kind="echo_secret",
                        path=path,
                        status=status,
                        echo_form=form,
                        echo_text=secret,
                    )
                )
    return rules


NEEDLES = altered_fragments(API_TOKEN) + altered_fragments(HTTP_TOKEN)


def found(text: str | bytes) -> list[str]:
    return leaks_of(text, NEEDLES)


def test_echoed_secrets_never_reach_the_cli_output(
    make_sandbox: SandboxFactory, tmp_path: Path, ledger: Ledger
) -> None:
    """``testio-mirror sync --bugs`` at DEBUG while every request meets a secret echoed back
    in another form; then ``status``: stdout and stderr hold no form of either token."""
    sandbox = make_sandbox(DATASET, token=API_TOKEN)
    env = sync_env(
        sandbox,
        tmp_path / "home",
        TESTIO_MIRROR_HTTP_TOKEN=HTTP_TOKEN,
        TESTIO_LOG_LEVEL="DEBUG",
        TESTIO_RETRY_MAX_ATTEMPTS="1",
        TESTIO_BUG_BATCH_SIZE="4",
    )
    kids = Children(tmp_path)
    try:
        first = kids.run(env, "sync")  # a copy of the product list to go on with
        rules = [sandbox.faults.add(rule) for rule in echo_rules("*")]
        second = kids.run(env, "sync", "--bugs")
        status = kids.run(env, "status")
    finally:
        kids.stop_all()
    outputs = [p.stdout + p.stderr for p in (first, second, status)]
    leaked = [hits for text in outputs if (hits := found(text))]
    fired = sum(rule.fired for rule in rules)
    ledger.record(AREA, trials=3, faults=fired, mismatches=len(leaked))
    assert fired >= len(rules) // 2, fired
    assert leaked == [], leaked
    assert first.returncode == 0, outputs
    assert second.returncode in (1, 3), outputs  # failed or partial: the echoes bit
    assert "DEBUG" in outputs[1]
    table_hits, _ = table_leaks(tmp_path / "home" / "mirror.db", NEEDLES)
    assert table_hits == {}, table_hits


async def test_echoed_secrets_never_reach_answers_tool_errors_logs_or_sync_events(
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    ledger: Ledger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The MCP tools while TestIO echoes secrets: sync_data and sync_status answers, the
    errors of read-through tools, every log record at DEBUG and every ``sync_events`` row hold
    no form of either token."""
    sandbox = make_sandbox(DATASET, token=API_TOKEN)
    settings = hostile_settings(
        sandbox,
        tmp_path / "home",
        retry_max_attempts=1,
        mirror_http_token=HTTP_TOKEN,
        read_through_probe_interval_seconds=0,
        log_level="DEBUG",
    )
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    rules: list[FaultRule] = []
    product_id = sandbox.world.products()[0]["id"]
    async with connect(settings) as client:
        await call(client, "sync_data", {})  # a copy to go on with
        for rule in echo_rules("*"):
            rules.append(sandbox.faults.add(rule))
            seen.append(str(await client.call_tool("sync_data", {"include_bugs": True})))
        for rule in echo_rules("exploratory_tests/*") + echo_rules("bugs"):
            rules.append(sandbox.faults.add(rule))
            new_test = sandbox.world.add_test(product_id)
            for tool, args in (
                ("get_test", {"test_id": new_test}),
                ("list_bugs", {"test_ids": [new_test]}),
            ):
                seen.append(str(await client.call_tool(tool, args)))
        seen.append(str(await client.call_tool("sync_status", {})))
    # What the product logs at TESTIO_LOG_LEVEL=DEBUG (logs.py): its own loggers at DEBUG,
    # every other library's from WARNING.
    logs = "\n".join(
        f"{r.name}: {r.getMessage()} {r.exc_text or ''} {r.args!r}"
        for r in caplog.records
        if r.name.startswith("testio_mirror") or r.levelno >= logging.WARNING
    )
    leaked = [
        (line[:400], hits)
        for text in [*seen, *logs.splitlines()]
        if (hits := found(text))
        for line in [text]
    ]
    table_hits, rows = table_leaks(settings.database_path, NEEDLES)
    fired = sum(rule.fired for rule in rules)
    ledger.record(AREA, trials=len(seen), faults=fired, mismatches=len(leaked) + len(table_hits))
    assert fired >= len(rules) // 2
    assert leaked == [], leaked
    assert table_hits == {}, table_hits
    assert rows["sync_events"] > len(echo_rules("*")), rows
    assert any("HTTP 422" in text for text in seen), seen[:3]


def test_the_altered_fragments_find_every_echoed_form() -> None:
    # The scans above would notice each form a sandbox echoes.
    for form in ECHOED_FORMS:
        echoed = FaultRule(kind="echo_secret", echo_form=form).echoed(API_TOKEN)
        assert found(f"error: {echoed}."), form
    assert not found(API_TOKEN[:7] + " " + HTTP_TOKEN[-7:])
