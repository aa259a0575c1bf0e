"""Talking to ``testio-mirror serve`` as its clients do: the child's environment and command
line, the child itself with piped stdio, the tools it must list, raw JSON-RPC messages sent to
it, and the check of a line it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
}
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
