"""Talking to ``testio-mirror serve`` as its clients do: the child's environment and command
line, the child itself with piped stdio, the tools it must list, raw JSON-RPC messages sent to
it, the check of a line it writes, and an ASGI app served on loopback (``serving``)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from tests.helpers.polling import wait_for

TOOLS = {
    "sync_data",
    "sync_status",
    "list_products",
    "list_features",
    "list_tests",
    "get_test",
    "list_bugs",
    "get_bug",
    "search",
    "bug_stats",
    "list_testers",
    "get_product",
    "get_feature",
    "query_metrics",
    "get_test_case_results",
    "quality_report",
    "list_changes",
    "triage_bugs",
    "resolve_conflict",
    "cancel_change",
}
# The triage tools: the outbox's, listed (but for list_changes) unless TESTIO_MIRROR_WRITES=off.
TRIAGE_TOOLS = {"list_changes", "triage_bugs", "resolve_conflict", "cancel_change"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "testio-mirror-tests", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without the developer's TESTIO_ variables, the mirror under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(TESTIO_MIRROR_HOME=str(home), TESTIO_REFRESH_INTERVAL_SECONDS="0", **extra)
    return env


def serve_args(*args: str) -> list[str]:
    """The Python arguments that run ``testio-mirror serve`` with ``args``."""
    return ["-m", "testio_mirror", "serve", *args]


def protocol_line(line: str | bytes) -> dict[str, Any]:
    """One stdout line, which must be a JSON-RPC message and nothing else."""
    message = json.loads(line)
    assert isinstance(message, dict), line
    assert message.get("jsonrpc") == "2.0", line
    return message


def serve_child(tmp_path: Path, code: str | None = None) -> subprocess.Popen[bytes]:
    """``serve`` in a child process with piped stdio (``code`` runs instead of ``-m``)."""
    command = ["-c", code] if code is not None else serve_args()
    return subprocess.Popen(
        [sys.executable, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(tmp_path),
        cwd=tmp_path,
    )


def send_messages(process: subprocess.Popen[bytes], *messages: dict[str, Any]) -> None:
    """Write ``messages`` to the child's stdin, one JSON line each."""
    assert process.stdin is not None
    process.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
    process.stdin.flush()


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port in a thread; yields the base URL, then stops it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started or not thread.is_alive(), 15.0)
        assert server.started, "the HTTP server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15.0)
        if thread.is_alive():
            server.force_exit = True
            thread.join(15.0)
        sock.close()
    assert not thread.is_alive(), "the HTTP server did not stop"
