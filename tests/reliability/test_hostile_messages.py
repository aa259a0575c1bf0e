"""Hostile JSON-RPC envelopes, on both transports: what a broken or malicious client sends in
place of a message (lone surrogates, batches, wrong versions, missing or mistyped members, deep
nesting, odd ids, text that is not JSON), named cases first, then a seeded generator of more.

Every message with an id gets an answer with that id; text that is not JSON, and a batch, get one
error with id null (JSON-RPC 2.0). The server keeps serving (a ``tools/list`` answers after each
message) and nothing hostile reaches the log as a traceback.

stdio runs a real ``testio-mirror serve`` fed raw lines; HTTP posts raw bodies to ``/mcp`` of
``http_app`` served on loopback. The per-client bound on HTTP sessions is tested here too.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from testio_mirror.server import build_server
from testio_mirror.server.transport import MCP_PATH, HttpPolicy, http_app
from testio_mirror.settings import Settings
from tests.conftest import SandboxFactory
from tests.helpers.reliability_ledger import Ledger, Scale
from tests.helpers.serving import (
    INITIALIZE,
    INITIALIZED,
    MCP_HEADERS,
    child_env,
    serve_args,
    serving,
)
from tests.helpers.settings import settings_free_of_the_environment

AREA = "hostile messages"
# A liveness bound that turns "no answer, ever" into a failure with a message; not a speed claim.
ANSWER_LIMIT_SECONDS = 30.0
PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
QUICK_GENERATED = 60
LONG_GENERATED = 600
PROTOCOL_VERSION = "2025-06-18"


@dataclass(frozen=True)
class Hostile:
    """One raw message and the answer it must get: ``answer_id`` (``None``: id null) and, for
    the named cases, the error code (``None``: any answer with that id, result or error)."""

    name: str
    raw: bytes
    answer_id: int | float | str | None
    code: int | None
    answered: bool = True


def _message(**members: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **members}).encode()


DEEP = b"[" * 100_000 + b"]" * 100_000
NAMED = [
    Hostile(
        "lone surrogate in an argument",
        b'{"jsonrpc": "2.0", "id": 101, "method": "tools/call", "params": {"name": "search", '
        b'"arguments": {"query": "\\ud800"}}}',
        101,
        INVALID_PARAMS,
    ),
    Hostile("batch", b"[" + _message(id=102, method="ping") + b"]", None, INVALID_REQUEST),
    Hostile(
        "jsonrpc 1.0",
        json.dumps({"jsonrpc": "1.0", "id": 103, "method": "ping"}).encode(),
        103,
        INVALID_REQUEST,
    ),
    Hostile("no method", _message(id=104), 104, INVALID_REQUEST),
    Hostile("number as method", _message(id=105, method=7), 105, INVALID_REQUEST),
    Hostile(
        "list as params", _message(id=106, method="tools/list", params=[1]), 106, INVALID_PARAMS
    ),
    Hostile(
        "deep nesting",
        b'{"jsonrpc": "2.0", "id": 107, "method": "ping", "params": {"deep": ' + DEEP + b"}}",
        107,
        INVALID_REQUEST,
    ),
    Hostile("float id", _message(id=1.5, method="ping"), 1.5, INVALID_REQUEST),
    Hostile("not JSON", b'{"jsonrpc": "2.0", "id": 108, "method":', None, PARSE_ERROR),
    Hostile("NaN", b'{"jsonrpc": "2.0", "id": NaN, "method": "ping"}', None, PARSE_ERROR),
]


# --- the seeded generator -----------------------------------------------------------------------


def generated(seed: int, count: int) -> Iterator[Hostile]:
    """``count`` malformed (and some well-formed) envelopes from ``seed``; ids that are a string
    or an integer are unique, so each answer can be matched."""
    rng = random.Random(seed)
    for number in range(count):
        fresh = 10_000 + number
        envelope: dict[str, object] = {}
        answer_id: int | float | str | None = None
        answered = False
        jsonrpc = rng.choice(["2.0", "2.0", "2.0", "1.0", 2.0, None, "", ["2.0"], "absent"])
        if jsonrpc != "absent":
            envelope["jsonrpc"] = jsonrpc
        id_kind = rng.choice(
            ["int", "int", "str", "big", "float", "bool", "null", "object", "absent"]
        )
        if id_kind == "int":
            envelope["id"], answer_id, answered = fresh, fresh, True
        elif id_kind == "str":
            envelope["id"], answer_id, answered = f"h-{fresh}", f"h-{fresh}", True
        elif id_kind == "big":
            envelope["id"], answer_id, answered = 2**64 + fresh, 2**64 + fresh, True
        elif id_kind == "float":
            envelope["id"] = fresh + 0.5
        elif id_kind != "absent":
            envelope["id"] = {"bool": True, "null": None, "object": {"n": fresh}}[id_kind]
        method = rng.choice(
            ["ping", "tools/list", "tools/call", "prompts/list", "no/such", "", 7, None, ["ping"]]
        )
        if rng.random() < 0.9:
            envelope["method"] = method
        elif rng.random() < 0.5:
            envelope["result"] = {}
            answered = False  # an answer to a request never made: JSON-RPC answers none
        params_kind = rng.choice(["absent", "object", "call", "list", "string", "number", "deep"])
        if params_kind == "object":
            envelope["params"] = {"_meta": {"n": fresh}}
        elif params_kind == "call":
            text = rng.choice(["crash", "\ud800", "\udfff", "a\ud83d", "\ud83d\ude00", "\x00"])
            envelope["params"] = {"name": "search", "arguments": {"query": text}}
        elif params_kind == "deep":
            nested: object = 0
            for _ in range(rng.randrange(50, 900)):
                nested = [nested]
            envelope["params"] = {"deep": nested}
        elif params_kind != "absent":
            envelope["params"] = {"list": [1, 2], "string": "x", "number": 3}[params_kind]
        text = json.dumps(envelope)
        shape = rng.random()
        if shape < 0.1:
            text, answer_id, answered = f"[{text}]", None, True  # a batch: one error, id null
        elif shape < 0.2:
            cut = text[: rng.randrange(1, len(text))]
            text, answer_id, answered = cut, None, True  # not JSON: one error, id null
        yield Hostile(f"generated {number}", text.encode(), answer_id, None, answered)


# --- stdio ----------------------------------------------------------------------------------------


class StdioChild:
    """``serve --sandbox`` as a child process, with its stdout read line by line in a thread."""

    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *serve_args("--sandbox", "--no-initial-sync")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(home),
            cwd=home,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # stderr is drained as it comes: a full pipe would stall the server's logging.
        self._stderr: list[bytes] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        self.unmatched: list[dict[str, Any]] = []
        self._next_id = 1_000_000

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def send(self, raw: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(raw + b"\n")
        self.process.stdin.flush()

    def wait_for(self, wanted: list[int | float | str | None]) -> dict[Any, dict[str, Any]]:
        """The answers with the ``wanted`` ids (each line must be a JSON-RPC message)."""
        found: dict[Any, dict[str, Any]] = {}
        pending = list(wanted)
        for kept in list(self.unmatched):
            if kept.get("id") in pending:
                pending.remove(kept["id"])
                found[kept["id"]] = kept
                self.unmatched.remove(kept)
        while pending:
            try:
                line = self.lines.get(timeout=ANSWER_LIMIT_SECONDS)
            except queue.Empty:
                raise AssertionError(f"no answer with id {pending!r}") from None
            message = json.loads(line)
            assert isinstance(message, dict), line[:200]
            assert message.get("jsonrpc") == "2.0", line[:200]
            if message.get("id") in pending:
                pending.remove(message["id"])
                found[message["id"]] = message
            else:
                self.unmatched.append(message)
        return found

    def still_serving(self) -> bool:
        self._next_id += 1
        self.send(_message(id=self._next_id, method="tools/list"))
        answer = self.wait_for([self._next_id])[self._next_id]
        return bool(answer.get("result", {}).get("tools"))

    def finish(self) -> tuple[int, str]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        self._stderr_reader.join(10)
        return self.process.returncode, b"".join(self._stderr).decode(errors="replace")


@pytest.fixture
def stdio_child(tmp_path: Path) -> Iterator[StdioChild]:
    child = StdioChild(tmp_path)
    try:
        child.send(json.dumps(INITIALIZE).encode())
        child.wait_for([1])
        child.send(json.dumps(INITIALIZED).encode())
        yield child
    finally:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def _check_stdio(child: StdioChild, hostile: Hostile) -> None:
    child.send(hostile.raw)
    if hostile.answered or hostile.code is not None:
        answer = child.wait_for([hostile.answer_id])[hostile.answer_id]
        if hostile.code is not None:
            assert answer.get("error", {}).get("code") == hostile.code, (hostile.name, answer)
    assert child.still_serving(), f"tools/list went unanswered after {hostile.name}"


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "RecursionError" not in stderr, stderr[-3000:]


def test_stdio_answers_every_named_hostile_message(stdio_child: StdioChild, ledger: Ledger) -> None:
    ledger.record(AREA, trials=len(NAMED))
    for hostile in NAMED:
        _check_stdio(stdio_child, hostile)
    code, stderr = stdio_child.finish()
    assert code == 0, stderr[-3000:]
    _no_traceback(stderr)


def test_stdio_answers_generated_envelopes(
    stdio_child: StdioChild, ledger: Ledger, scale: Scale
) -> None:
    count = LONG_GENERATED if scale.form == "long" else QUICK_GENERATED
    ledger.record(AREA, trials=count)
    for hostile in generated(seed=17, count=count):
        _check_stdio(stdio_child, hostile)
    code, stderr = stdio_child.finish()
    assert code == 0, stderr[-3000:]
    _no_traceback(stderr)


# --- streamable HTTP ---------------------------------------------------------------------------


@pytest.fixture
def settings(
    tmp_path: Path, make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    return settings_free_of_the_environment(make_sandbox(), tmp_path, monkeypatch)


def _answers(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a response, whether JSON or an event stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [
            json.loads(line[len("data:") :])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[len("data:") :].strip()
        ]
    return [response.json()] if response.content else []


def _open_session(client: httpx.Client, url: str) -> dict[str, str]:
    opened = client.post(url, json=INITIALIZE, headers=MCP_HEADERS)
    assert opened.status_code == 200, opened.text
    headers = {
        **MCP_HEADERS,
        "mcp-session-id": opened.headers["mcp-session-id"],
        "mcp-protocol-version": PROTOCOL_VERSION,
    }
    client.post(url, json=INITIALIZED, headers=headers)
    return headers


def _check_http(client: httpx.Client, url: str, headers: dict[str, str], hostile: Hostile) -> None:
    response = client.post(url, content=hostile.raw, headers=headers)
    answers = _answers(response)
    if hostile.code is not None:
        assert response.status_code == 400, (hostile.name, response.status_code, response.text)
        assert [(a.get("id"), a.get("error", {}).get("code")) for a in answers] == [
            (hostile.answer_id, hostile.code)
        ], (hostile.name, answers)
    elif hostile.answered:
        assert hostile.answer_id in [a.get("id") for a in answers], (hostile.name, answers)
    listed = client.post(
        url, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, headers=headers
    )
    assert any(a.get("result", {}).get("tools") for a in _answers(listed)), hostile.name


def _no_traceback_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_http_answers_every_hostile_message(
    settings: Settings, ledger: Ledger, scale: Scale, caplog: pytest.LogCaptureFixture
) -> None:
    count = LONG_GENERATED if scale.form == "long" else QUICK_GENERATED
    cases = [*NAMED, *generated(seed=18, count=count)]
    ledger.record(AREA, trials=len(cases))
    caplog.set_level(logging.INFO)
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1")
    with serving(app) as base, httpx.Client(timeout=ANSWER_LIMIT_SECONDS) as client:
        url = base + MCP_PATH
        headers = _open_session(client, url)
        for hostile in cases:
            _check_http(client, url, headers, hostile)
    _no_traceback_logged(caplog)


# --- sessions per HTTP client ------------------------------------------------------------------


def _live(client: httpx.Client, url: str, session: str) -> bool:
    headers = {**MCP_HEADERS, "mcp-session-id": session, "mcp-protocol-version": PROTOCOL_VERSION}
    response = client.post(url, json={"jsonrpc": "2.0", "id": 5, "method": "ping"}, headers=headers)
    return response.status_code == 200


def test_one_http_client_holds_at_most_its_bound_of_sessions(
    settings: Settings, ledger: Ledger, scale: Scale
) -> None:
    bound = 3
    opened_count = 8 if scale.form == "quick" else 40
    ledger.record(AREA, trials=opened_count + 1)
    policy = HttpPolicy(max_sessions=100, max_sessions_per_client=bound)
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", policy)
    with (
        serving(app) as base,
        httpx.Client(timeout=ANSWER_LIMIT_SECONDS) as one,
        httpx.Client(
            timeout=ANSWER_LIMIT_SECONDS,
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        ) as other,
    ):
        url = base + MCP_PATH
        theirs = _open_session(other, url)["mcp-session-id"]
        sessions = []
        for _ in range(opened_count):
            sessions.append(_open_session(one, url)["mcp-session-id"])
            live = [session for session in sessions if _live(one, url, session)]
            assert len(live) <= bound, f"one client holds {len(live)} sessions"
        assert live == sessions[-bound:], "not the oldest sessions were closed"
        assert _live(other, url, theirs), "another client's session was closed"
        assert _open_session(other, url)["mcp-session-id"]
