"""Concurrency: MCP servers, CLI syncs and many concurrent tool calls on one mirror at once.

``testio-mirror serve`` runs as real stdio children (each with its start-up sync) and
``testio-mirror sync`` as CLI children, all on one ``TESTIO_MIRROR_HOME``, while the test fires
``scale.concurrent_calls`` tool calls at the servers at once and keeps probing them with queries
until every sync has ended. What must hold:

- one sync at a time: the runs recorded in ``sync_events`` never overlap, no claim was taken
  over, and the sandbox saw no test listing outside a run nor any page listed twice in one run;
- a sync that finds another process holding the lock says so, naming a holder that really holds
  it (the CLI with ``--no-wait`` exits 4, ``sync_data`` answers a tool error, the start-up sync is
  skipped) and leaves no run behind; a CLI sync that may wait runs once the lock is free;
- a process starting up while another starts its sync does not declare that live run dead;
- every tool call answers, or fails with a clean tool error; no answer and no process's stderr
  mentions ``database is locked`` or carries a traceback;
- the mirror equals the sandbox at the end.

The worst latency of a query that overlapped a sync run (each server warmed up by one call of
every query tool first) goes to the ledger; it is never asserted (no timing assertions in
``make test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psutil
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from testio_mirror.sandbox import FaultRule, SandboxKnobs, SandboxServer
from testio_mirror.store.mirror import Mirror
from testio_mirror.store.sqlite.db import Database
from testio_mirror.sync.lock import LockOwner, SyncLock
from testio_mirror.sync.service import SyncService
from testio_mirror.upstream.client import CustomerApiClient
from tests.conftest import SandboxFactory
from tests.helpers.mcp_session import poll, text_of
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.reliability_ledger import Ledger, Scale
from tests.helpers.settings import make_settings

JSON = dict[str, Any]
Spec = tuple[str, JSON]

AREA = "concurrency"
LATENCY_MS = 20.0  # per sandbox request: a sync lasts long enough for others to pile up behind it
SERVERS = 2
CALLS_PER_CLI_PAIR = 100  # one waiting and one --no-wait CLI sync per this many calls (at least)
PROBERS_PER_SERVER = 2
LOCK_WAIT_SECONDS = 300.0  # nobody in the scrum gives up on the lock
SHORT_LOCK_WAIT_SECONDS = 0.5  # the server that must find the lock busy
CHILD_TIMEOUT = 600.0
SETTLE_SECONDS = 120.0

LOCKED = "database is locked"
TRACEBACK = "Traceback"
UNEXPECTED = "failed unexpectedly"  # tool_errors' answer to an exception it did not expect
BUSY = "another sync is running"
HOLDER = re.compile(r"another sync is running: pid (\d+) on \S+, run (\S+),")

QUERY_TOOLS = frozenset(
    {"list_products", "list_tests", "get_test", "list_bugs", "search", "bug_stats", "sync_status"}
)
SYNC_CALLS: tuple[JSON, ...] = (
    {},
    {"include_bugs": True},
    {"wait": False},
    {"include_bugs": True, "wait": False},
)
GROUPS = ("severity", "status", "feature", "test", "tester", "month")


# -- processes ------------------------------------------------------------------------------------


def _env(sandbox: SandboxServer, home: Path, **extra: str) -> dict[str, str]:
    """A child's environment: none of the developer's TESTIO_ variables, the sandbox's account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(
        TESTIO_MIRROR_HOME=str(home),
        TESTIO_CUSTOMER_API_TOKEN=sandbox.token,
        TESTIO_CUSTOMER_API_BASE_URL=sandbox.base_url,
        TESTIO_REFRESH_INTERVAL_SECONDS="0",
        TESTIO_SYNC_LOCK_TIMEOUT_SECONDS=str(LOCK_WAIT_SECONDS),
        TESTIO_LOG_LEVEL="INFO",
        COLUMNS="250",
    )
    env.update(extra)
    return env


class CliChild:
    """One ``testio-mirror sync`` child: its output files and its lifetime in Unix time."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, logs: Path, *args: str):
        self.name = name
        self.stdout_path = logs / f"{name}.out"
        self.stderr_path = logs / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "testio_mirror", *args],
                stdout=out,
                stderr=err,
                env=env,
                cwd=workdir,
            )
        self.spawned = time.time()
        self.exited: float | None = None
        # A thread notes the moment of exit, so the lifetime is exact whoever waits when.
        self._loop = asyncio.get_running_loop()
        self._gone = asyncio.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        self.process.wait()
        self.exited = time.time()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._gone.set)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    async def finish(self) -> int | None:
        """Wait without blocking the event loop for the child to exit; its exit code."""
        await asyncio.wait_for(self._gone.wait(), CHILD_TIMEOUT)
        return self.process.returncode

    def stop(self) -> None:
        """Kill it if it still runs (through its own handle) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=CHILD_TIMEOUT)
        self._watcher.join(CHILD_TIMEOUT)


class ServerChild:
    """``testio-mirror serve`` as a stdio child with a connected client.

    One task enters and leaves the SDK's client (its task group must stay in one task), so
    several servers start at once; leaving it closes stdin, and the SDK kills a server that does
    not stop."""

    def __init__(self, env: dict[str, str], workdir: Path, errlog: Path) -> None:
        self.errlog = errlog
        self._params = StdioServerParameters(
            command=sys.executable, args=["-m", "testio_mirror", "serve"], env=env, cwd=workdir
        )
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            with self.errlog.open("w") as errlog:
                async with Client(stdio_client(self._params, errlog=errlog)) as client:
                    self._ready.set_result(client)
                    await self._done.wait()
        except BaseException as exc:
            if not self._ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    self._ready.cancel()
                else:
                    self._ready.set_exception(exc)
            raise

    async def client(self) -> Client:
        """The connected client, once the server answered the handshake."""
        return await self._ready

    async def close(self) -> None:
        """Disconnect; returns once the server process is gone."""
        self._done.set()
        await self._task

    @property
    def stderr(self) -> str:
        return self.errlog.read_text(encoding="utf-8", errors="replace")


@dataclass
class Fleet:
    """The processes of one test, all stopped through their own handles at the end."""

    workdir: Path
    logs: Path
    cli: dict[str, CliChild] = field(default_factory=dict)
    servers: list[ServerChild] = field(default_factory=list)

    def sync(self, name: str, env: dict[str, str], *args: str) -> CliChild:
        child = CliChild(name, env, self.workdir, self.logs, "sync", *args)
        self.cli[name] = child
        return child

    def serve(self, env: dict[str, str]) -> ServerChild:
        server = ServerChild(env, self.workdir, self.logs / f"serve-{len(self.servers)}.err")
        self.servers.append(server)
        return server

    async def stop(self) -> None:
        """Close every server and stop every CLI child; then raise what a server's end raised."""
        closed = await asyncio.gather(*(s.close() for s in self.servers), return_exceptions=True)
        for child in self.cli.values():
            child.stop()
        for outcome in closed:
            if isinstance(outcome, BaseException):
                raise outcome

    def stderr(self) -> dict[str, str]:
        logs = {server.errlog.name: server.stderr for server in self.servers}
        logs.update({child.stderr_path.name: child.stderr for child in self.cli.values()})
        return logs


# -- calls ----------------------------------------------------------------------------------------


@dataclass
class Call:
    """One tool call as the client saw it; ``began`` and ``ended`` in Unix time."""

    server: int
    tool: str
    args: JSON
    began: float
    ended: float
    ms: float
    error: str | None
    answer: JSON | None
    text: str
    measured: bool

    def shown(self) -> str:
        return f"server {self.server} {self.tool}({self.args}): {self.error or self.text}"[:600]


async def _timed(
    client: Client, server: int, spec: Spec, calls: list[Call], *, measured: bool = True
) -> Call:
    """Call a tool, never raising: a failure of the call itself is recorded as its error."""
    tool, args = spec
    began = time.time()
    start = time.perf_counter()
    error: str | None = None
    answer: JSON | None = None
    text = ""
    try:
        result = await client.call_tool(tool, args)
    except Exception as exc:
        error = f"the call raised {type(exc).__name__}: {exc}"
    else:
        text = text_of(result)
        if result.is_error:
            error = text or "(a tool error without text)"
        else:
            answer = result.structured_content
            if answer is None:
                error = "an answer without structured content"
    ms = (time.perf_counter() - start) * 1000
    call = Call(server, tool, args, began, time.time(), ms, error, answer, text, measured)
    calls.append(call)
    return call


def _queries(truth: JSON) -> list[Spec]:
    """Query calls over the whole account: every query tool, every product, a spread of tests."""
    product_ids = sorted(truth["products"])
    test_ids = sorted(truth["tests"])
    titles = [str(truth["tests"][tid]["title"]) for tid in test_ids]
    words = [w for title in titles for w in re.findall(r"[A-Za-z]{4,}", title)]
    specs: list[Spec] = [("list_products", {}), ("sync_status", {})]
    for i, product_id in enumerate(product_ids):
        specs += [
            ("list_tests", {"product_id": product_id, "limit": 20}),
            ("list_bugs", {"product_id": product_id, "limit": 20}),
            ("bug_stats", {"group_by": GROUPS[i % len(GROUPS)], "product_id": product_id}),
            ("search", {"query": words[(i * 37) % len(words)], "product_id": product_id}),
            ("get_test", {"test_id": test_ids[(i * len(test_ids)) // len(product_ids)]}),
            ("get_test", {"test_id": test_ids[(i * 7 + 3) % len(test_ids)]}),
        ]
    specs += [("list_tests", {"limit": 50}), ("list_bugs", {"limit": 50})]
    specs += [("search", {"query": words[-1]}), ("bug_stats", {"group_by": "month"})]
    return specs


def _warm_up(queries: Sequence[Spec]) -> list[Spec]:
    """One call of each query tool."""
    first: dict[str, Spec] = {}
    for spec in queries:
        first.setdefault(spec[0], spec)
    return list(first.values())


def _burst(queries: Sequence[Spec], count: int) -> list[Spec]:
    """``count`` calls to fire at once: the queries in turn, every sixth a ``sync_data``."""
    return [
        ("sync_data", SYNC_CALLS[(i // 6) % len(SYNC_CALLS)])
        if i % 6 == 5
        else queries[(i * 5) % len(queries)]
        for i in range(count)
    ]


async def _probe(
    client: Client,
    server: int,
    queries: Sequence[Spec],
    offset: int,
    calls: list[Call],
    stop: asyncio.Event,
) -> None:
    """Keep querying, one call after another, until told to stop."""
    turn = offset
    while not stop.is_set():
        await _timed(client, server, queries[turn % len(queries)], calls)
        turn += 1
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _probing(
    clients: Sequence[Client], queries: Sequence[Spec], calls: list[Call]
) -> AsyncIterator[None]:
    """Probe every client with queries while the block runs."""
    stop = asyncio.Event()
    probers = [
        asyncio.create_task(_probe(client, i, queries, i * 11 + k * 5, calls, stop))
        for i, client in enumerate(clients)
        for k in range(PROBERS_PER_SERVER)
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*probers)


async def _settle(clients: Sequence[Client], calls: list[Call]) -> bool:
    """True once every server says no sync runs, three polls in a row."""
    deadline = time.monotonic() + SETTLE_SECONDS
    quiet = 0
    while time.monotonic() < deadline:
        states = [
            await _timed(client, i, ("sync_status", {}), calls) for i, client in enumerate(clients)
        ]
        idle = all(s.answer is not None and s.answer["state"] != "running" for s in states)
        quiet = quiet + 1 if idle else 0
        if quiet >= 3:
            return True
        await asyncio.sleep(0.1)
    return False


# -- what the mirror and the sandbox recorded -----------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A run row of ``sync_events``; ``began`` and ``ended`` in Unix time."""

    run_id: str
    trigger: str
    status: str
    began: float
    ended: float | None

    def until(self) -> float:
        return self.ended if self.ended is not None else float("inf")


def _runs(database: Path) -> list[Run]:
    """Every run row of ``sync_events``, oldest first."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT run_id, trigger, status, at, finished_at FROM sync_events "
            "WHERE kind = 'run' ORDER BY at, id"
        ).fetchall()
    return [
        Run(
            str(run_id),
            str(trigger),
            str(status),
            datetime.fromisoformat(at).timestamp(),
            None if finished_at is None else datetime.fromisoformat(finished_at).timestamp(),
        )
        for run_id, trigger, status, at, finished_at in rows
    ]


def _events(database: Path, kind: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT message FROM sync_events WHERE kind = ?", (kind,)).fetchall()
    return [str(row[0]) for row in rows]


def _overlaps(runs: Sequence[Run]) -> list[str]:
    """Runs whose recorded intervals overlap the next one's (there must be none)."""
    return [
        f"{a.run_id} ({a.trigger}, {a.began:.3f}..{a.ended}) overlaps {b.run_id} "
        f"({b.trigger}, from {b.began:.3f})"
        for a, b in itertools.pairwise(runs)
        if a.until() > b.began
    ]


def _listing_problems(sandbox: SandboxServer, runs: Sequence[Run]) -> list[str]:
    """Test listings outside every run, or a page (or boundary probe) asked twice in one run."""
    slack = 0.005  # times written by different processes, rounded to microseconds
    problems: list[str] = []
    seen: Counter[tuple[str, str, str, str]] = Counter()
    for record in sandbox.requests.records("products/*/exploratory_tests"):
        query = parse_qs(record.query)
        page, per_page = query.get("page", ["?"])[0], query.get("per_page", ["?"])[0]
        owners = [r for r in runs if r.began - slack <= record.at <= r.until() + slack]
        if len(owners) != 1:
            problems.append(f"{record.path}?{record.query} at {record.at:.3f} is in {owners}")
            continue
        seen[(owners[0].run_id, record.path, page, per_page)] += 1
    problems += [
        f"run {run_id} asked {path} page {page} (per_page {per_page}) {n} times"
        for (run_id, path, page, per_page), n in seen.items()
        if n > 1
    ]
    return problems


def _bad_calls(calls: Sequence[Call]) -> list[str]:
    """Calls that failed (other than a lock busy tool error), or that carry a ``database is
    locked`` or a traceback anywhere in what they answered."""
    bad = []
    for call in calls:
        said = call.text + (json.dumps(call.answer) if call.answer is not None else "")
        said += call.error or ""
        clean = call.error is None or (BUSY in call.error and UNEXPECTED not in call.error)
        if not clean or LOCKED in said or TRACEBACK in said:
            bad.append(call.shown())
    return bad


def _dirty_logs(logs: dict[str, str]) -> list[str]:
    return [
        f"{name}: {marker!r} in\n{text[-3000:]}"
        for name, text in logs.items()
        for marker in (LOCKED, TRACEBACK)
        if marker in text
    ]


def _worst_ms(calls: Sequence[Call], runs: Sequence[Run]) -> tuple[float | None, int]:
    """The slowest measured query that overlapped a sync run, and how many did."""
    during = [
        c.ms
        for c in calls
        if c.measured
        and c.tool in QUERY_TOOLS
        and any(c.began < r.until() and c.ended > r.began for r in runs)
    ]
    return (max(during) if during else None), len(during)


def _honest_refusal(child: CliChild, runs: dict[str, Run], my_pids: set[int]) -> list[str]:
    """What is wrong with a ``--no-wait`` refusal: it must name a holder (pid, run) of this test
    whose run covers the refusal, print no result and no traceback."""
    message = " ".join(child.stderr.split())
    named = HOLDER.search(message)
    if named is None:
        return [f"the refusal names no holder: {message}"]
    pid, run_id = int(named.group(1)), named.group(2)
    problems = []
    if TRACEBACK in message or child.stdout.strip():
        problems.append(f"a refused sync printed a result or a traceback: {message}")
    if pid not in my_pids:
        problems.append(f"the named holder pid {pid} is none of this test's processes")
    holder = runs.get(run_id)
    if holder is None:
        problems.append(f"the named run {run_id} was never recorded: {message}")
    else:
        # The claim is taken a little before the run row is written and released after its end
        # is recorded (which may wait for the database): allow for that, generously.
        slack = 3.0
        exited = child.exited if child.exited is not None else float("inf")
        if not (holder.began - slack <= exited and holder.until() + slack >= child.spawned):
            problems.append(f"run {holder} did not run while {child.name} was refused")
    return problems


class RacingLock(SyncLock):
    """The lock as a starting process sees it, paused right after it found the lock free, so
    that another process can start its sync in that instant (``asked``, then ``resume``)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.asked = threading.Event()
        self.resume = threading.Event()

    def holder(self) -> LockOwner | None:
        owner = super().holder()
        self.asked.set()
        self.resume.wait(CHILD_TIMEOUT)
        return owner


def _run_row(database: Path) -> tuple[str, str, str | None] | None:
    """The (run id, status, phase) of the only run row, if there is one yet."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT run_id, status, phase FROM sync_events WHERE kind = 'run'"
        ).fetchall()
    return (str(rows[0][0]), str(rows[0][1]), rows[0][2]) if len(rows) == 1 else None


# -- tests ----------------------------------------------------------------------------------------


async def test_servers_cli_syncs_and_concurrent_calls_share_one_mirror(
    tmp_path: Path, make_sandbox: SandboxFactory, scale: Scale, ledger: Ledger
) -> None:
    """Two servers, several CLI syncs and a burst of tool calls on one new mirror: one sync at a
    time, every call answered, nothing locked, and the mirror equal to the sandbox at the end."""
    sandbox = make_sandbox(dataset=scale.dataset, knobs=SandboxKnobs(latency_ms=LATENCY_MS))
    truth = sandbox.world.snapshot()
    home = tmp_path / "home"
    workdir = tmp_path / "cwd"  # no stray .env file is read from here
    workdir.mkdir()
    env = _env(sandbox, home)
    fleet = Fleet(workdir, tmp_path)
    queries = _queries(truth)
    calls: list[Call] = []
    settled = False
    my_pids: set[int] = set()
    try:
        # A CLI sync and the servers (with their start-up syncs) start at once on a mirror that
        # does not exist yet. Once the servers answer, more CLI syncs (some with bugs, some that
        # will not wait) and the burst of calls start together, with probers querying throughout.
        fleet.sync("first", env, "--json")
        servers = [fleet.serve(env) for _ in range(SERVERS)]
        clients = [await server.client() for server in servers]
        for i, client in enumerate(clients):
            for spec in _warm_up(queries):
                await _timed(client, i, spec, calls, measured=False)
        for k in range(max(1, scale.concurrent_calls // CALLS_PER_CLI_PAIR)):
            fleet.sync(f"waiting-{k}", env, *(["--bugs"] if k % 2 == 0 else []), "--json")
            fleet.sync(f"no-wait-{k}", env, "--no-wait", "--json")
        my_pids = {p.pid for p in psutil.Process().children(recursive=True)}
        my_pids |= {child.process.pid for child in fleet.cli.values()}
        async with _probing(clients, queries, calls):
            await asyncio.gather(
                *(
                    _timed(clients[i % SERVERS], i % SERVERS, spec, calls)
                    for i, spec in enumerate(_burst(queries, scale.concurrent_calls))
                ),
                *(child.finish() for child in fleet.cli.values()),
            )
            # The last word: a sync with bugs on each server; then everything must go quiet.
            for i, client in enumerate(clients):
                await _timed(client, i, ("sync_data", {"include_bugs": True}), calls)
            settled = await _settle(clients, calls)
    finally:
        await fleet.stop()

    database = home / "mirror.db"
    runs = _runs(database)
    differences = mirror_differences(database, sandbox.world, bugs=True)
    worst, during = _worst_ms(calls, runs)
    ledger.record(AREA, trials=len(calls), mismatches=len(differences), worst_query_ms=worst)

    assert settled, "the servers never became idle"
    assert _bad_calls(calls) == []
    assert _dirty_logs(fleet.stderr()) == []
    assert during > 0, "no query overlapped a sync run: nothing was measured"
    waited = [c for c in calls if c.tool == "sync_data" and c.args.get("wait", True)]
    assert len(waited) >= SERVERS
    for call in waited:
        assert call.answer is not None, call.shown()
        assert call.answer["result"]["status"] == "success", call.shown()

    # One sync at a time, every one recorded and finished, nobody's claim taken over.
    assert _overlaps(runs) == []
    assert [run for run in runs if run.status != "success"] == []
    assert _events(database, "lock_reclaimed") == []
    assert _events(database, "error") == []
    assert _listing_problems(sandbox, runs) == []

    # Each CLI sync ran (its own recorded run) or, with --no-wait, was refused honestly.
    recorded = {run.run_id: run for run in runs}
    ran: list[str] = []
    for name, child in fleet.cli.items():
        code = child.process.returncode
        if name.startswith("no-wait") and code == 4:
            assert _honest_refusal(child, recorded, my_pids) == []
            continue
        assert code == 0, f"{name} exited {code}: {child.stdout}{child.stderr}"
        report = json.loads(child.stdout)
        assert report["status"] == "success", report
        assert recorded[report["run_id"]].trigger == "cli", report["run_id"]
        ran.append(report["run_id"])
    triggers = Counter(run.trigger for run in runs)
    assert triggers["cli"] == len(ran), f"runs {triggers}, but the CLI syncs that ran: {ran}"
    assert triggers["startup"] == SERVERS, triggers
    assert triggers["tool"] >= 1, triggers

    assert differences == []


async def test_a_sync_that_finds_the_lock_held_names_the_holder_and_leaves_no_run(
    tmp_path: Path, make_sandbox: SandboxFactory, scale: Scale, ledger: Ledger
) -> None:
    """This test process holds the sync lock, as another process would: a ``--no-wait`` CLI
    exits 4 and ``sync_data`` answers a tool error, both naming this process; the server's
    start-up sync is skipped; queries keep answering; a CLI sync that may wait runs once the
    lock is released, while the server keeps answering."""
    sandbox = make_sandbox(dataset=scale.dataset, knobs=SandboxKnobs(latency_ms=LATENCY_MS))
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = _env(sandbox, home)
    queries = _queries(sandbox.world.snapshot())
    fleet = Fleet(workdir, tmp_path)
    calls: list[Call] = []
    holder_run = "held-by-the-test"
    try:
        async with SyncLock(home).hold(holder_run, wait_seconds=0):
            refused = fleet.sync("no-wait", env, "--no-wait", "--json")
            waiting = fleet.sync("waiting", env, "--bugs", "--json")
            server_env = _env(
                sandbox, home, TESTIO_SYNC_LOCK_TIMEOUT_SECONDS=str(SHORT_LOCK_WAIT_SECONDS)
            )
            client = await fleet.serve(server_env).client()
            await refused.finish()
            busy = await _timed(client, 0, ("sync_data", {}), calls)
            status = await _timed(client, 0, ("sync_status", {}), calls)
            for spec in queries:
                await _timed(client, 0, spec, calls, measured=False)  # cold: not measured
            waited_meanwhile = waiting.process.poll() is None
            released_at = time.time()
        async with _probing([client], queries, calls):
            await waiting.finish()
        synced = await _timed(client, 0, ("sync_data", {"include_bugs": True}), calls)
    finally:
        await fleet.stop()

    database = home / "mirror.db"
    runs = _runs(database)
    differences = mirror_differences(database, sandbox.world, bugs=True)
    worst, _ = _worst_ms(calls, runs)
    ledger.record(AREA, trials=len(calls), mismatches=len(differences), worst_query_ms=worst)

    me = f"pid {os.getpid()} on "
    assert refused.process.returncode == 4, refused.stdout + refused.stderr
    refusal = " ".join(refused.stderr.split())
    assert me in refusal, refusal
    assert f"run {holder_run}," in refusal, refusal
    assert TRACEBACK not in refusal
    assert refused.stdout.strip() == ""

    assert busy.error is not None, f"sync_data ran while the lock was held: {busy.answer}"
    assert BUSY in busy.error, busy.error
    assert me in busy.error, busy.error
    assert f"run {holder_run}," in busy.error, busy.error
    assert "sync_status" in busy.error  # the next step
    assert status.answer is not None, status.shown()
    assert status.answer["state"] == "running"
    assert status.answer["running"] is None  # nothing runs in the server itself
    assert status.answer["lock_holder"]["pid"] == os.getpid()
    assert status.answer["lock_holder"]["run_id"] == holder_run
    assert _bad_calls([c for c in calls if c is not busy]) == []

    logs = fleet.stderr()
    assert _dirty_logs(logs) == []
    assert "startup sync skipped: " + BUSY in logs["serve-0.err"], logs["serve-0.err"][-3000:]

    assert waited_meanwhile, "the CLI sync that may wait ended while the lock was held"
    assert waiting.process.returncode == 0, waiting.stdout + waiting.stderr
    report = json.loads(waiting.stdout)
    assert synced.answer is not None, synced.shown()
    # The refused syncs left no run: only the CLI's, after the release, then the server's.
    assert [(r.run_id, r.trigger, r.status) for r in runs] == [
        (report["run_id"], "cli", "success"),
        (synced.answer["run_id"], "tool", "success"),
    ]
    assert runs[0].began > released_at
    assert _overlaps(runs) == []
    assert _events(database, "lock_reclaimed") == []
    assert differences == []


async def test_a_process_starting_as_another_sync_starts_does_not_declare_it_dead(
    tmp_path: Path, make_sandbox: SandboxFactory, scale: Scale, ledger: Ledger
) -> None:
    """At start-up every process marks runs left ``running`` as interrupted, unless a live
    process holds the lock. A sync that another process starts between those two looks (the
    lock is free, then its run is ``running``) must not be declared dead while it runs."""
    sandbox = make_sandbox(dataset=scale.dataset, knobs=SandboxKnobs(latency_ms=LATENCY_MS))
    # The other sync's first request answers late: its run stays in the products phase meanwhile.
    sandbox.faults.add(FaultRule(kind="hang", path="products", hang_seconds=2.0))
    home = tmp_path / "home"
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    settings = make_settings(sandbox, home)
    database = settings.database_path
    await (await Database.open(database)).close()  # both processes open an existing mirror
    fleet = Fleet(workdir, tmp_path)
    lock = RacingLock(home)
    marked: int | None = None
    seen: tuple[str, str, str | None] | None = None
    client = CustomerApiClient(settings)
    mirror = await Mirror.open(settings, client)
    # What open_app does at start-up, paused right after the look at the lock.
    recovering = asyncio.create_task(SyncService(settings, client, mirror, lock=lock).recover())
    asked = asyncio.create_task(asyncio.to_thread(lock.asked.wait, CHILD_TIMEOUT))
    try:
        await asyncio.wait({recovering, asked}, return_when=asyncio.FIRST_COMPLETED)
        other = fleet.sync("other", _env(sandbox, home), "--json")

        async def other_run_started() -> bool:
            row = _run_row(database)
            return row is not None and row[1:] == ("running", "products")

        started = await poll(other_run_started, 60.0)
        lock.resume.set()
        marked = await recovering
        seen = _run_row(database)  # the other sync still waits for its products
        still_running = other.process.poll() is None
        await other.finish()
    finally:
        lock.asked.set()
        lock.resume.set()
        await asyncio.gather(recovering, asked, return_exceptions=True)
        await mirror.close()
        await client.aclose()
        await fleet.stop()

    runs = _runs(database)
    differences = mirror_differences(database, sandbox.world)
    ledger.record(AREA, trials=1, mismatches=len(differences))

    assert started, "the other sync never started its run"
    assert still_running, "the other sync ended before its run was looked at"
    assert seen is not None
    assert seen[1] == "running", f"a live sync was declared {seen[1]} by a process starting up"
    assert marked == 0
    assert other.process.returncode == 0, other.stdout + other.stderr
    assert [(r.run_id, r.status) for r in runs] == [(seen[0], "success")]
    assert _dirty_logs(fleet.stderr()) == []
    assert differences == []
