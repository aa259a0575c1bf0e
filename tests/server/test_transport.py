"""The MCP server over its two transports, as clients reach it: stdio and streamable HTTP.

stdio runs ``testio-mirror serve`` as a real child process; HTTP serves ``http_app`` with uvicorn
in a background thread on 127.0.0.1. Every process and server is stopped through its own handle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Message, Receive, Scope, Send

from testio_mirror.server import build_server
from testio_mirror.server.transport import (
    MCP_PATH,
    BearerTokenGate,
    HttpPolicy,
    ServeError,
    http_app,
)
from testio_mirror.settings import Settings
from tests.conftest import SandboxFactory
from tests.helpers.polling import wait_for
from tests.helpers.serving import (
    INITIALIZE,
    INITIALIZED,
    MCP_HEADERS,
    TOOLS,
    child_env,
    protocol_line,
    send_messages,
    serve_args,
    serve_child,
    serving,
)
from tests.helpers.settings import settings_free_of_the_environment

TOKEN = "http-token-for-tests-0123456789abcdef"  # long enough to serve beyond loopback


async def _check_session(client: Client) -> None:
    """What every transport must answer: the tools, sync_status, a sync, the products."""
    listed = await client.list_tools()
    assert {tool.name for tool in listed.tools} == TOOLS
    status = await client.call_tool("sync_status", {})
    assert not status.is_error, status.content
    assert status.structured_content is not None
    assert status.structured_content["state"] in {"idle", "running", "never_synced"}
    synced = await client.call_tool("sync_data", {})
    assert not synced.is_error, synced.content
    assert synced.structured_content is not None
    assert synced.structured_content["result"]["status"] == "success"
    products = await client.call_tool("list_products", {})
    assert not products.is_error, products.content
    assert products.structured_content is not None
    assert len(products.structured_content["products"]) == 3


# --- stdio -----------------------------------------------------------------------------------


async def test_stdio_sandbox_serves_the_tools_and_keeps_its_mirror_apart(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=serve_args("--sandbox"),
        env=child_env(tmp_path),
        cwd=tmp_path,
    )
    # Twice: each start's sandbox has a new port and token but is the same simulated account,
    # so its mirror is rebound, not refused as another account's.
    for _ in range(2):
        async with Client(params) as client:
            await _check_session(client)
    assert (tmp_path / "sandbox" / "mirror.db").is_file()
    assert not (tmp_path / "mirror.db").exists()


async def test_stdio_against_a_configured_account(
    tmp_path: Path, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox()
    env = child_env(
        tmp_path,
        TESTIO_CUSTOMER_API_TOKEN=sandbox.token,
        TESTIO_CUSTOMER_API_BASE_URL=sandbox.base_url,
    )
    params = StdioServerParameters(command=sys.executable, args=serve_args(), env=env, cwd=tmp_path)
    async with Client(params) as client:
        await _check_session(client)
    assert (tmp_path / "mirror.db").is_file()
    assert not (tmp_path / "sandbox").exists()
    assert sandbox.requests.records(), "the server never asked the configured account"


@pytest.mark.parametrize("handshake", [False, True], ids=["silent", "handshake"])
def test_stdio_stdout_carries_nothing_but_protocol(tmp_path: Path, handshake: bool) -> None:
    process = subprocess.Popen(
        [sys.executable, *serve_args("--sandbox")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(tmp_path),
        cwd=tmp_path,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        answered: set[int] = set()
        if handshake:
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            for message in (INITIALIZE, initialized, tools):
                process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
            for _ in range(50):  # notifications may come first; a line that is not JSON fails
                line = process.stdout.readline()
                if not line:
                    break
                answered.add(protocol_line(line).get("id", 0))
                if {1, 2} <= answered:
                    break
        stdout, stderr = process.communicate(timeout=60)  # closes stdin: the server ends
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert answered >= ({1, 2} if handshake else set())
    if not handshake:
        assert stdout == "", "the server spoke before being asked"
    for line in stdout.splitlines():
        protocol_line(line)


def _answer(process: subprocess.Popen[bytes], request_id: int) -> dict[str, Any]:
    """Read stdout up to the answer to ``request_id``; every line must be protocol."""
    assert process.stdout is not None
    while line := process.stdout.readline():
        message = protocol_line(line)
        if message.get("id") == request_id:
            return message
    raise AssertionError(f"stdout ended before the answer to request {request_id}")


def _finish(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Close stdin (the session ends), wait for the exit; the rest of stdout and stderr."""
    try:
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


# ``serve`` itself, with one more tool that writes to fds 0 and 1 the ways a library or a child
# process might; after serving, fd 1 must be the process's stdout again.
SERVE_WITH_A_NOISY_TOOL = """
import os, subprocess, sys
import testio_mirror.server as server_package
from testio_mirror.cli.main import main

build_server = server_package.build_server

def build_with_a_noisy_tool(settings, **options):
    server = build_server(settings, **options)

    @server.tool()
    def stray_output() -> str:
        print("stray print", flush=True)
        os.write(1, b"stray write\\n")
        subprocess.run([sys.executable, "-c", "print('stray child')"], check=True)
        return repr(os.read(0, 10))

    return server

server_package.build_server = build_with_a_noisy_tool
code = main(["serve", "--no-initial-sync"])
os.write(1, b"after serving\\n")
sys.exit(code)
"""


def test_stray_output_during_a_tool_call_never_reaches_the_wire(tmp_path: Path) -> None:
    process = serve_child(tmp_path, SERVE_WITH_A_NOISY_TOOL)
    try:
        send_messages(process, INITIALIZE, INITIALIZED)
        send_messages(
            process,
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "stray_output", "arguments": {}},
            },
        )
        answer = _answer(process, 2)
    finally:
        stdout, stderr = _finish(process)
    assert process.returncode == 0, stderr
    assert answer["result"]["content"][0]["text"] == "b''", "fd 0 must read the null device"
    *during, after = stdout.decode().splitlines()
    for line in during:
        protocol_line(line)
    assert after == "after serving"  # fd 1 is stdout again once serving ends
    for stray in (b"stray print\n", b"stray write\n", b"stray child\n"):
        assert stray in stderr


def test_a_line_longer_than_a_mebibyte_is_answered(tmp_path: Path) -> None:
    padding = "x" * (2 << 20)
    process = serve_child(tmp_path)
    try:
        send_messages(process, INITIALIZE, INITIALIZED)
        send_messages(
            process,
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "ping",
                "params": {"_meta": {"padding": padding}},
            },
        )
        send_messages(process, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        answers = [_answer(process, 2), _answer(process, 3)]
    finally:
        _, stderr = _finish(process)
    assert process.returncode == 0, stderr
    assert [answer.get("result") for answer in answers] == [{}, {}]


def test_stdout_to_a_file_is_served(tmp_path: Path) -> None:
    answers_file = tmp_path / "answers.jsonl"
    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]

    def answers() -> list[dict[str, Any]]:
        # Only whole lines: the server may be halfway through writing a long answer.
        text = answers_file.read_text()
        return [protocol_line(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    with answers_file.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, *serve_args("--sandbox", "--no-initial-sync")],
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=child_env(tmp_path),
            cwd=tmp_path,
        )
        assert process.stdin is not None
        try:
            process.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
            process.stdin.flush()
            # Closing stdin ends the session and drops what is still unanswered: wait first.
            assert wait_for(lambda: {2} <= {a.get("id") for a in answers()}, 60.0)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr
    listed = next(answer for answer in answers() if answer.get("id") == 2)
    assert "list_bugs" in {tool["name"] for tool in listed["result"]["tools"]}


# --- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def settings(
    tmp_path: Path, make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings for a fresh sandbox, free of the developer's TESTIO_ variables and ``.env``."""
    return settings_free_of_the_environment(make_sandbox(), tmp_path, monkeypatch)


def _post(url: str, **headers: str) -> httpx.Response:
    """A raw MCP initialize request, with ``headers`` added to the usual ones."""
    return httpx.post(
        url + MCP_PATH, json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=10.0
    )


async def test_http_on_loopback_without_token_serves_mcp(settings: Settings) -> None:
    with serving(http_app(build_server(settings, initial_sync=False), "127.0.0.1")) as url:
        async with Client(url + MCP_PATH) as client:
            await _check_session(client)


def test_http_beyond_loopback_needs_a_token(settings: Settings) -> None:
    for host in ("0.0.0.0", "192.0.2.10", "::"):
        with pytest.raises(ServeError, match="TESTIO_MIRROR_HTTP_TOKEN"):
            http_app(build_server(settings, initial_sync=False), host)
    gated = http_app(build_server(settings, initial_sync=False), "0.0.0.0", HttpPolicy(token=TOKEN))
    with serving(gated) as url:
        assert _post(url).status_code == 401
        assert _post(url, Authorization=f"Bearer {TOKEN}").status_code == 200


async def test_http_token_gates_every_request(settings: Settings) -> None:
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", HttpPolicy(token=TOKEN))
    with serving(app) as url:
        missing = _post(url)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in missing.text
        for wrong in (f"Bearer {TOKEN}x", "Bearer", TOKEN, f"Token {TOKEN}"):
            assert _post(url, Authorization=wrong).status_code == 401, wrong
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30.0) as http,
            Client(streamable_http_client(url + MCP_PATH, http_client=http)) as client,
        ):
            listed = await client.list_tools()
            assert {tool.name for tool in listed.tools} == TOOLS
            products = await client.call_tool("list_products", {})
            assert not products.is_error, products.content
            assert products.structured_content is not None
            assert len(products.structured_content["products"]) == 3


@pytest.mark.parametrize("token", [None, TOKEN])
def test_http_rejects_foreign_host_and_origin(settings: Settings, token: str | None) -> None:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", HttpPolicy(token=token))
    with serving(app) as url:
        assert _post(url, **auth).status_code == 200  # the same request, honest headers
        foreign_host = _post(url, Host="evil.example", **auth)
        assert not foreign_host.is_success, foreign_host.status_code
        foreign_origin = _post(url, Origin="http://evil.example", **auth)
        assert not foreign_origin.is_success, foreign_origin.status_code


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2"])
def test_http_every_loopback_host_without_token_is_rebinding_protected(
    settings: Settings, host: str
) -> None:
    # The app is served on 127.0.0.1 whatever host it was built for: only its checks differ.
    with serving(http_app(build_server(settings, initial_sync=False), host)) as url:
        answer = _post(url, Host="evil.example")
        assert not answer.is_success, f"{host}: a foreign Host got {answer.status_code}"


@pytest.mark.parametrize(
    ("header", "admitted"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"BEARER {TOKEN}", True),
        (f"Bearer  {TOKEN}", False),
        (f"Bearer {TOKEN} ", False),
        (f"Bearer {TOKEN.upper()}", False),
        (f"Basic {TOKEN}", False),
        (f"Bearer{TOKEN}", False),
        ("", False),
    ],
)
async def test_the_bearer_scheme_is_case_insensitive_and_the_token_is_not(
    header: str, admitted: bool
) -> None:
    reached: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    headers = [(b"authorization", header.encode())] if header else []
    await BearerTokenGate(app, TOKEN)({"type": "http", "headers": headers}, receive, send)
    assert bool(reached) is admitted
    assert (sent[0]["status"] == 401) if not admitted else sent == []
