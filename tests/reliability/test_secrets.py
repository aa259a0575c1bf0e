"""Secrets and access, end to end: a whole session of real ``testio-mirror`` processes at DEBUG,
against a sandbox that injects faults, never shows the API token or the HTTP bearer token
anywhere (output, logs, tool answers, any table, any file of the data directory); the data
directory and database stay private under a permissive umask; the HTTP transport refuses to serve
beyond loopback without a token, wants the bearer token, and rejects foreign Host and Origin.

Unit-level proofs live next to the code (``tests/upstream/test_redaction.py`` with a server that
echoes the token back, ``tests/store/test_security.py``, ``tests/server/test_transport.py``);
this file runs the real commands as a user would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from testio_mirror.sandbox import FaultRule, SandboxServer
from testio_mirror.sandbox.dataset import DatasetSpec
from tests.conftest import SandboxFactory
from tests.helpers.mcp_session import JSON, call, connect
from tests.helpers.mirror_files import mode, sidecars
from tests.helpers.polling import wait_for
from tests.helpers.reliability_ledger import Ledger, Scale
from tests.helpers.secret_scan import WINDOW, fragments, leaks_of
from tests.helpers.secret_scan import table_leaks as tables_holding
from tests.helpers.serving import INITIALIZE, MCP_HEADERS, TOOLS, child_env
from tests.helpers.settings import make_settings

# Random-looking on purpose: no window of either can occur by chance in a path, a name or data.
API_TOKEN = "tK7rQ2xZ9pL4mW8vB3nC6yH1dF5gJ0sA"
HTTP_TOKEN = "hB5vN8cX2zL7kJ4gF1dS9aP3oI6uY0tR"
CHILD_TIMEOUT = 60.0
MISSING_ID = 999_999_999
NEEDLES = [*fragments(API_TOKEN), *fragments(HTTP_TOKEN)]


def leaks(data: str | bytes) -> list[str]:
    """The fragments of either token found in ``data``."""
    return leaks_of(data, NEEDLES)


def file_leaks(root: Path) -> dict[str, list[str]]:
    """Every file below ``root`` (the database, its -wal and -shm, locks, anything) whose bytes
    hold a fragment of a token; missing files (a -wal checkpointed meanwhile) are skipped."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and (hits := leaks(path.read_bytes())):
                found[str(path.relative_to(root))] = hits
    return found


def table_leaks(database: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Token fragments in any value of any row of any table, and how many rows each had."""
    return tables_holding(database, NEEDLES)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A ``testio-mirror`` child process whose stdout and stderr go to files."""

    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return (
            self.stdout.read_text(errors="replace"),
            self.stderr.read_text(errors="replace"),
        )

    def wait(self) -> int:
        return self.process.wait(timeout=CHILD_TIMEOUT)


@dataclass
class Children:
    """The children of one test, started with a permissive umask and stopped through their
    handles (terminate, then kill) when the test ends."""

    logs: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, env: dict[str, str], *args: str) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        stdout, stderr = self.logs / f"{name}.out", self.logs / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "testio_mirror", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=self.logs,  # no stray .env file is read from here
                umask=0o000,  # whatever the mirror makes private, it must make so itself
            )
        child = Child(name, process, stdout, stderr)
        self.started.append(child)
        return child

    def run(self, name: str, env: dict[str, str], *args: str) -> tuple[int, str, str]:
        child = self.start(name, env, *args)
        code = child.wait()
        return (code, *child.output())

    def stop(self, child: Child) -> int:
        if child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(timeout=15.0)
            except subprocess.TimeoutExpired:
                child.process.kill()
        return child.wait()

    def stop_all(self) -> None:
        for child in self.started:
            self.stop(child)


@contextlib.contextmanager
def children(logs: Path) -> Iterator[Children]:
    started = Children(logs)
    try:
        yield started
    finally:
        started.stop_all()


def post_initialize(url: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url + "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=10.0
    )


@dataclass
class HttpServer:
    """A ``serve --transport http`` child on 127.0.0.1 and the port it was given."""

    child: Child
    url: str
    env: dict[str, str]
    extra: tuple[str, ...]


def start_http(kids: Children, name: str, env: dict[str, str], *extra: str) -> HttpServer:
    port = free_port()
    args = ("serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port), *extra)
    return HttpServer(kids.start(name, env, *args), f"http://127.0.0.1:{port}", env, extra)


def _listening(url: str) -> bool:
    try:
        httpx.get(url + "/", timeout=2.0)
    except httpx.TransportError:
        return False
    return True


def ready(kids: Children, server: HttpServer) -> HttpServer:
    """``server`` once it answers; one that lost its port to someone else meanwhile is started
    again on another."""
    for _ in range(3):
        child, url = server.child, server.url

        def up(child: Child = child, url: str = url) -> bool:
            return child.process.poll() is not None or _listening(url)

        assert wait_for(up, 30.0), f"{child.name} never answered on {url}"
        if child.process.poll() is None:
            return server
        if "address already in use" not in child.output()[1].lower():
            raise AssertionError(
                f"{child.name} exited {child.process.returncode}: {child.output()}"
            )
        server = start_http(kids, child.name, server.env, *server.extra)
    raise AssertionError(f"{server.child.name}: no free port found")


@contextlib.asynccontextmanager
async def bearer_client(url: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60.0) as http,
        Client(streamable_http_client(url + "/mcp", http_client=http)) as client,
    ):
        yield client


# --- the HTTP transport's door ----------------------------------------------------------------


@dataclass
class Door:
    """What the door of an HTTP server answered, and which of its checks failed."""

    checks: list[tuple[str, bool]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [what for what, ok in self.checks if not ok]

    def knock(self, url: str, **headers: str) -> httpx.Response:
        answer = post_initialize(url, **headers)
        self.answers.append(f"{answer.status_code} {answer.headers} {answer.text}")
        return answer


def knock(url: str, token: str | None) -> Door:
    """With a token: no bearer or a wrong one is 401, the right one 200. Always: a loopback
    Origin is welcome, a foreign Host or Origin is refused."""
    door = Door()
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    if token is not None:
        missing = door.knock(url)
        door.checks.append(
            (f"no bearer -> 401 ({missing.status_code})", missing.status_code == 401)
        )
        door.checks.append(
            ("401 asks for Bearer", missing.headers.get("www-authenticate") == "Bearer")
        )
        for wrong in (
            f"Bearer {token[:-1]}",
            f"Bearer  {token}",
            f"Bearer {token}{token}",
            f"bearer {token.lower()}",
            f"Token {token}",
            f"Token {API_TOKEN}",
            token,
            "Bearer",
        ):
            answer = door.knock(url, Authorization=wrong)
            door.checks.append(
                (f"{wrong[:9]}... -> 401 ({answer.status_code})", answer.status_code == 401)
            )
    port = url.rsplit(":", 1)[1]
    for origin in (f"http://localhost:{port}", f"http://127.0.0.1:{port}"):
        answer = door.knock(url, Origin=origin, **auth)
        door.checks.append(
            (f"Origin {origin} -> 200 ({answer.status_code})", answer.status_code == 200)
        )
    for header, value in (
        ("Host", "evil.example"),
        ("Host", f"evil.example:{port}"),
        ("Origin", "http://evil.example"),
        ("Origin", f"http://evil.example:{port}"),
        ("Origin", "null"),
    ):
        answer = door.knock(url, **{header: value, **auth})
        refused = 400 <= answer.status_code < 500
        door.checks.append((f"{header} {value} -> {answer.status_code}", refused))
    return door


def _private(home: Path) -> list[tuple[str, bool]]:
    database = home / "mirror.db"
    checks = [
        (f"data dir 0700 ({oct(mode(home))})", mode(home) == 0o700),
        ("database exists", database.is_file()),
    ]
    for path in [database, *sidecars(database)] if database.is_file() else []:
        checks.append((f"{path.name} 0600 ({oct(mode(path))})", mode(path) == 0o600))
    return checks


# --- a whole session --------------------------------------------------------------------------


@dataclass
class Transcript:
    """Everything a client saw: every tool answer, failures included."""

    texts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    calls: int = 0
    errors: int = 0

    async def call(self, client: Client, tool: str, args: JSON | None = None) -> JSON | None:
        result = await client.call_tool(tool, args or {})
        self.calls += 1
        self.errors += bool(result.is_error)
        self.texts.append(result.model_dump_json())
        return None if result.is_error else result.structured_content


async def _tool_session(client: Client, sandbox: SandboxServer, seen: Transcript) -> None:
    """Every tool, as it succeeds and as it fails: bad arguments, unknown ids, and TestIO
    refusing the token, failing, or answering garbage while a tool reads through."""
    listed = await client.list_tools()
    seen.texts.append(listed.model_dump_json())
    if {tool.name for tool in listed.tools} != TOOLS:
        seen.problems.append(f"tools: {sorted(tool.name for tool in listed.tools)}")
    await seen.call(client, "sync_status")
    await seen.call(client, "sync_data", {"include_bugs": True})
    products = (await seen.call(client, "list_products") or {}).get("products") or []
    product_id = products[0]["id"] if products else MISSING_ID
    await seen.call(client, "list_features", {"product_id": product_id})
    listed_tests = await seen.call(client, "list_tests", {"product_id": product_id, "limit": 5})
    tests = (listed_tests or {}).get("tests") or []
    test_id = tests[0]["id"] if tests else MISSING_ID
    if not products or not tests:
        seen.problems.append("no products or no tests answered: the session saw no data")
    await seen.call(client, "get_test", {"test_id": test_id, "detail": "full"})
    bugs = await seen.call(client, "list_bugs", {"test_ids": [test_id], "detail": "full"})
    await seen.call(client, "list_bugs", {"product_id": product_id, "limit": 100})
    for bug in (bugs or {}).get("bugs", [])[:1]:
        await seen.call(client, "get_bug", {"bug_id": bug["id"]})
    await seen.call(client, "search", {"query": "login"})
    await seen.call(client, "bug_stats", {"group_by": "tester"})
    # Wrong arguments and unknown ids.
    await seen.call(client, "list_features", {"product_id": MISSING_ID})
    await seen.call(client, "get_test", {"test_id": MISSING_ID})
    await seen.call(client, "get_bug", {"bug_id": MISSING_ID})
    await seen.call(client, "list_tests", {"limit": 0})
    await seen.call(client, "bug_stats", {"group_by": "token"})
    await seen.call(client, "list_tests", {"cursor": "not-a-cursor"})
    await seen.call(client, "search", {"query": ""})
    await seen.call(client, "sync_status", {"period": "forever"})
    # TestIO misbehaves while tools read through: new things the mirror has never seen.
    new_test = sandbox.world.add_test(sandbox.world.products()[0]["id"])
    new_bug = sandbox.world.add_bug(new_test)
    sandbox.faults.add(FaultRule(kind="error", path="exploratory_tests/*", status=401, times=1))
    await seen.call(client, "get_test", {"test_id": new_test})
    sandbox.faults.add(FaultRule(kind="error", path="bugs", status=403, times=1))
    await seen.call(client, "list_bugs", {"test_ids": [new_test]})
    sandbox.faults.add(FaultRule(kind="malformed", path="bugs/*", times=1))
    await seen.call(client, "get_bug", {"bug_id": new_bug})
    sandbox.faults.add(FaultRule(kind="error", path="bugs/*", status=503, times=None))
    await seen.call(client, "get_bug", {"bug_id": new_bug})
    sandbox.faults.clear()
    sandbox.faults.add(FaultRule(kind="error", path="products", status=401, times=1))
    await seen.call(client, "sync_data", {"include_bugs": True})
    sandbox.faults.add(FaultRule(kind="error", path="bugs", status=500, times=None))
    await seen.call(client, "sync_data", {"include_bugs": True})
    sandbox.faults.clear()
    await seen.call(client, "get_test", {"test_id": new_test})
    await seen.call(client, "sync_status", {"period": "7d"})
    resource = await client.read_resource("testio://sync/status")
    seen.texts.append(resource.model_dump_json())
    for prompt, arguments in (
        ("test_status_report", {"test_id": str(test_id)}),
        ("product_quality_review", {"product_id": str(product_id)}),
    ):
        seen.texts.append((await client.get_prompt(prompt, arguments)).model_dump_json())


def _assert_private(home: Path) -> None:
    failed = [what for what, ok in _private(home) if not ok]
    assert failed == [], failed


async def test_a_whole_session_never_reveals_the_tokens(
    tmp_path: Path, make_sandbox: SandboxFactory, scale: Scale, ledger: Ledger
) -> None:
    sandbox = make_sandbox(scale.dataset, token=API_TOKEN)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)  # made earlier by someone with a careless umask
    env = child_env(
        home,
        TESTIO_CUSTOMER_API_TOKEN=API_TOKEN,
        TESTIO_CUSTOMER_API_BASE_URL=sandbox.base_url,
        TESTIO_MIRROR_HTTP_TOKEN=HTTP_TOKEN,
        TESTIO_LOG_LEVEL="DEBUG",
        TESTIO_RETRY_MAX_ATTEMPTS="2",
        TESTIO_RETRY_MAX_DELAY_SECONDS="0.05",
        TESTIO_BUG_BATCH_SIZE="8",
    )
    outputs: list[str] = []
    seen = Transcript()
    codes: dict[str, int] = {}
    with children(tmp_path / "logs") as kids:
        # 1. A CLI sync through retried 5xx, a 429, a body that is not JSON, a 524 that splits a
        #    bug batch, a truncated answer and a bug batch that keeps failing: partial.
        for rule in (
            FaultRule(kind="error", path="products", status=503),
            FaultRule(kind="rate_limit", path="products/*/features", retry_after="0"),
            FaultRule(kind="malformed", path="products/*/exploratory_tests", times=2),
            FaultRule(kind="error", path="bugs", status=524),
            FaultRule(kind="truncated", path="bugs"),
            FaultRule(kind="error", path="bugs", status=502, times=3),
        ):
            sandbox.faults.add(rule)
        codes["sync"], out, err = kids.run("sync", env, "sync", "--bugs")
        outputs += [out, err]
        sandbox.faults.clear()
        # 2. The server (its start-up sync included): its door, then every tool over HTTP, with
        #    the CLI's status and config read meanwhile.
        serving = ready(kids, start_http(kids, "serve", env))
        server, url = serving.child, serving.url
        status = kids.start("status", env, "status", "--json")
        config = kids.start("config", env, "config")
        door = knock(url, HTTP_TOKEN)
        outputs += door.answers
        async with bearer_client(url, HTTP_TOKEN) as client:
            await _tool_session(client, sandbox, seen)
        for child in (status, config):
            codes[child.name] = child.wait()
            outputs += child.output()
        # The files as they are while the server holds the database open (-wal and -shm too).
        files_while_serving = file_leaks(home)
        private_while_serving = [what for what, ok in _private(home) if not ok]
        had_wal = bool(sidecars(home / "mirror.db"))
        codes["serve"] = kids.stop(server)
        outputs += server.output()
    rows, rows_seen = table_leaks(home / "mirror.db")
    files_after = file_leaks(home)
    everywhere = outputs + seen.texts
    leaked = [(n, hits) for n, text in enumerate(everywhere) if (hits := leaks(text))]
    ledger.record(
        "secrets",
        trials=seen.calls + len(codes),
        faults=sum(1 for r in sandbox.requests.records() if r.fault is not None),
        mismatches=len(leaked)
        + len(rows)
        + len(files_while_serving)
        + len(files_after)
        + len(door.failed)
        + len(private_while_serving)
        + len(seen.problems),
    )
    assert leaked == [], f"a token shows in output or a tool answer: {leaked[:3]}"
    assert rows == {}, f"a token is stored in the mirror: {rows}"
    assert files_while_serving == {}, files_while_serving
    assert files_after == {}, files_after
    assert private_while_serving == [], private_while_serving
    _assert_private(home)
    # The scans saw the real thing: DEBUG logs with a redacted header, failures, errors,
    # history rows, and a -wal file while serving.
    assert door.failed == [], door.failed
    assert seen.problems == [], seen.problems
    assert codes["sync"] == 3, outputs[:2]  # partial: the faults really bit
    assert codes["status"] == 0, outputs
    assert codes["config"] == 0, outputs
    assert codes["serve"] in (0, -signal.SIGTERM), codes  # uvicorn re-raises the SIGTERM
    logs = "\n".join(outputs)
    assert " DEBUG testio_mirror.upstream: GET " in logs
    assert "'authorization': '[redacted]'" in logs
    assert "set (hidden)" in logs  # config names the tokens without showing them
    assert seen.calls >= 25, seen.calls
    assert seen.errors >= 10, seen.errors
    assert rows_seen["sync_events"] >= 5, rows_seen
    assert rows_seen["bugs"] > 100, rows_seen
    assert had_wal


def test_the_leak_scanners_find_a_cut_token(tmp_path: Path, ledger: Ledger) -> None:
    # The scans above would notice a leak: a cut-off, embedded or encoded token is found.
    ledger.record("secrets", trials=1)
    assert leaks(f"Authorization: Token {API_TOKEN}")
    assert leaks("..." + HTTP_TOKEN[7 : 7 + WINDOW] + "...")
    assert leaks(base64.b64encode(f"{API_TOKEN}".encode()))
    assert not leaks(API_TOKEN[: WINDOW - 1] + " " + HTTP_TOKEN[-(WINDOW - 1) :])
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "mirror.db-wal").write_bytes(b"\x00\x01" + API_TOKEN[-WINDOW:].encode())
    assert list(file_leaks(tmp_path)) == ["deep/mirror.db-wal"]
    database = tmp_path / "x.db"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute("CREATE TABLE sync_events (message TEXT)")
        conn.execute("INSERT INTO sync_events VALUES (?)", (f"token {HTTP_TOKEN}",))
        conn.commit()
    found, seen = table_leaks(database)
    assert list(found) == ["sync_events"]
    assert seen == {"sync_events": 1}


# --- a refused token stops the whole run ------------------------------------------------------


async def test_a_refused_token_is_not_used_again_once_the_run_has_failed(
    tmp_path: Path, make_sandbox: SandboxFactory, ledger: Ledger
) -> None:
    """TestIO refuses the token for one product while another product's listing is in flight:
    the run fails, and from then on nothing more is asked of TestIO with that token and nothing
    is written to the mirror outside a run (outside the sync lock)."""
    dataset = DatasetSpec(seed=5, products=2, section_products=0, tests_per_product=120)
    sandbox = make_sandbox(dataset)
    first, second = sorted(p["id"] for p in sandbox.world.products())
    # The first product's listing is still waiting for its first page when the second's is
    # refused; the hang ends well inside the client's timeout.
    sandbox.faults.add(
        FaultRule(kind="hang", path=f"products/{first}/exploratory_tests", hang_seconds=1.5)
    )
    sandbox.faults.add(
        FaultRule(kind="error", path=f"products/{second}/exploratory_tests", status=401)
    )
    settings = make_settings(sandbox, tmp_path / "home")
    async with connect(settings) as client:
        answer = await call(client, "sync_data", {})
        ended = time.time()
        tests_at_end = _count(settings.database_path, "tests")

        # The hung request is logged once answered (the listing then goes on) or abandoned by
        # the client (it was stopped); one cancelled before it was sent is never logged.
        listing = f"products/{first}/exploratory_tests"
        await asyncio.to_thread(wait_for, lambda: bool(sandbox.requests.records(listing)), 3.0)
        await asyncio.sleep(0.5)  # time for a listing that went on to ask for its next pages
        late = [f"{r.path}?{r.query}" for r in sandbox.requests.records() if r.at > ended]
        tests_later = _count(settings.database_path, "tests")
        status = await call(client, "sync_status")  # (its health check asks TestIO: after)
    ledger.record("secrets", trials=1, faults=2, mismatches=len(late))
    assert answer["result"]["status"] == "failed", answer
    assert any("401" in e for e in answer["result"]["errors"]), answer["result"]["errors"]
    assert status["state"] == "idle", status
    assert status["lock_holder"] is None, status
    assert late == [], f"asked TestIO after the run failed: {late[:5]}"
    assert tests_later == tests_at_end, f"{tests_later - tests_at_end} tests written after the run"


def _count(database: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


# --- beyond loopback, and without a token ------------------------------------------------------


def test_serve_refuses_to_go_beyond_loopback_without_a_token_and_checks_host_and_origin(
    tmp_path: Path, make_sandbox: SandboxFactory, ledger: Ledger
) -> None:
    """The gated server's door is knocked on in the whole-session test above; here: a server
    asked to listen beyond loopback without a token (a blank one is none) refuses before
    listening, and a loopback server without a token still refuses foreign Host and Origin
    headers (DNS rebinding) and made its mirror private itself, under umask 0."""
    sandbox = make_sandbox(DatasetSpec(seed=2, products=2, tests_per_product=5), token=API_TOKEN)
    home = tmp_path / "open"
    with children(tmp_path / "logs") as kids:
        port = free_port()
        beyond = kids.start(
            "beyond",
            child_env(tmp_path / "beyond", TESTIO_MIRROR_HTTP_TOKEN="  "),
            *("serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(port)),
        )
        env = child_env(
            home,
            TESTIO_CUSTOMER_API_TOKEN=sandbox.token,
            TESTIO_CUSTOMER_API_BASE_URL=sandbox.base_url,
        )
        served = ready(kids, start_http(kids, "open", env, "--no-initial-sync"))
        code = beyond.wait()
        out, err = beyond.output()
        listening = _listening(f"http://127.0.0.1:{port}")
        door = knock(served.url, None)
        private = _private(home)
        stopped = kids.stop(served.child)
        logs = "".join(served.child.output())
    checks = [
        (f"beyond loopback exits 2 ({code})", code == 2),
        ("the refusal names the variable", "TESTIO_MIRROR_HTTP_TOKEN" in err),
        ("the refusal is a message, not a traceback", "Traceback" not in err),
        ("nothing on stdout", out == ""),
        ("nothing listens on the port asked for", not listening),
        *door.checks,
        *private,
        (f"the server stops on SIGTERM ({stopped})", stopped in (0, -signal.SIGTERM)),
        ("its log holds no token", not leaks(logs + "".join(door.answers))),
    ]
    failed = [what for what, ok in checks if not ok]
    ledger.record("secrets", trials=len(checks), mismatches=len(failed))
    assert failed == [], failed
    assert len(door.checks) >= 6
