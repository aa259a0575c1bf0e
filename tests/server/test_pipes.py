"""The stdio transport on the event loop's pipes: lines of any length, the claimed descriptors,
and the SDK's transport still serving what the loop cannot watch (here, stdout to a file).

The transport's everyday path, a client spawning ``serve`` with pipes, is what
test_transports.py and the reliability suite drive through real clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from mcp.shared.message import SessionMessage

from testio_mirror.server import pipes
from testio_mirror.server.pipes import LineReader, open_wire, pipes_servable
from testio_mirror.server.transport import serve_stdio
from tests.polling import wait_for
from tests.server.test_transports import INITIALIZE, _child_env, _protocol_line, _serve_args


async def test_a_line_longer_than_the_read_limit_arrives_whole() -> None:
    stream = asyncio.StreamReader(limit=64)
    long_line = b"x" * 1000 + b"\n"
    stream.feed_data(long_line + b"short\n" + b"no newline at the end")
    stream.feed_eof()
    lines = LineReader(stream)
    assert await lines.readline() == long_line
    assert await lines.readline() == b"short\n"
    assert await lines.readline() == b"no newline at the end"
    assert await lines.readline() == b""


async def test_open_wire_reads_and_writes_through_pipes_and_leaves_them_open() -> None:
    into_read, into_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        lines, writer = await open_wire(into_read, out_write, limit=16)
        os.write(into_write, b'{"a": "' + b"y" * 100 + b'"}\n')
        assert json.loads(await lines.readline()) == {"a": "y" * 100}
        writer.write(b"answer\n")
        await writer.drain()
        assert os.read(out_read, 100) == b"answer\n"
        writer.transport.close()
        await asyncio.sleep(0)  # the loop lets go of the pipe on its next turn
        os.fstat(out_write)  # still open: the transport borrowed it
    finally:
        for fd in (into_read, into_write, out_read, out_write):
            os.close(fd)


def test_only_pipes_and_sockets_are_served_on_the_loop(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with (tmp_path / "file").open("w") as regular:
        try:
            assert pipes_servable(read_end, write_end)
            assert not pipes_servable(regular.fileno(), write_end)
            assert not pipes_servable(read_end, regular.fileno())
        finally:
            os.close(read_end)
            os.close(write_end)
    assert not pipes_servable(9999, 9998)  # closed descriptors


CLAIM_SCRIPT = """
import os, sys
from testio_mirror.server.pipes import claimed_wire
print("before", flush=True)
with claimed_wire() as (wire_in, wire_out):
    print("stray print", flush=True)
    os.write(1, b"stray write\\n")
    os.write(wire_out, b"wire: " + os.read(wire_in, 100))
    assert os.read(0, 10) == b"", "fd 0 must read the null device"
print("after", flush=True)
"""


def test_claimed_wire_keeps_stray_output_off_stdout_and_restores_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLAIM_SCRIPT],
        input=b"message\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"before\nwire: message\nafter\n"
    assert done.stderr == b"stray print\nstray write\n"


def test_stdout_to_a_file_is_served_by_the_sdk_transport(tmp_path: Path) -> None:
    answers_file = tmp_path / "answers.jsonl"
    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]

    def answers() -> list[dict[str, Any]]:
        # Only whole lines: the server may be halfway through writing a long answer.
        text = answers_file.read_text()
        return [_protocol_line(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    with answers_file.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, *_serve_args("--sandbox", "--no-initial-sync")],
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=_child_env(tmp_path),
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


class _FakeServer:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, transport: str) -> None:
        self.ran.append(transport)


@pytest.mark.parametrize("servable", [True, False])
def test_serve_stdio_uses_the_loop_pipes_when_it_can(
    monkeypatch: pytest.MonkeyPatch, servable: bool
) -> None:
    on_pipes: list[object] = []
    monkeypatch.setattr(pipes, "pipes_servable", lambda: servable)
    monkeypatch.setattr(pipes, "serve_stdio_pipes", on_pipes.append)
    server = _FakeServer()
    serve_stdio(server)  # type: ignore[arg-type]
    assert on_pipes == ([server] if servable else [])
    assert server.ran == ([] if servable else ["stdio"])


async def test_answers_to_a_client_that_stopped_reading_are_dropped_not_fatal() -> None:
    into_read, into_write = os.pipe()
    out_read, out_write = os.pipe()
    os.close(out_read)  # the client is gone: writing raises EPIPE
    try:
        _, writer = await open_wire(into_read, out_write)
        send, receive = anyio.create_memory_object_stream[SessionMessage](0)
        ping = mcp_types.JSONRPCRequest(jsonrpc="2.0", id=1, method="ping")
        async with anyio.create_task_group() as group:
            group.start_soon(pipes._pump_out, receive, writer)
            async with send:
                for _ in range(3):  # every send is taken: the server never blocks on it
                    with anyio.fail_after(10):
                        await send.send(SessionMessage(ping))
        writer.transport.close()
    finally:
        for fd in (into_read, into_write, out_write):
            os.close(fd)
