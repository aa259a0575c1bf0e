"""Resource subscriptions on every protocol version the SDK serves.

Handshake-era clients (2025-11-25 and older: Inspector, today's desktop clients) subscribe with
``resources/subscribe`` and hear ``notifications/resources/updated`` on the session; 2026-07-28
clients use ``subscriptions/listen`` (``test_init_status_resource.py``). Both hear that
testio://sync/status changed when a sync run ends.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from testio_mirror.sandbox import DatasetSpec
from testio_mirror.server import STATUS_URI, build_server
from tests.conftest import SandboxFactory
from tests.helpers.serving import INITIALIZED, child_env, protocol_line, send_messages, serve_args
from tests.helpers.settings import make_settings

TINY = DatasetSpec(products=2, section_products=0, tests_per_product=6, bugs_per_test=1)


async def test_a_2025_11_25_client_subscribes_and_hears_the_status_updated(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    updated: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            await updated.put(message.params.uri)

    sandbox = make_sandbox(dataset=TINY)
    server = build_server(make_settings(sandbox, tmp_path / "home"), initial_sync=False)
    async with Client(server, mode="legacy", message_handler=on_message) as client:
        assert client.protocol_version == "2025-11-25"
        resources = client.session.server_capabilities.resources  # type: ignore[union-attr]
        assert resources is not None
        assert resources.subscribe is True
        with warnings.catch_warnings():
            # The client marks resources/subscribe deprecated for 2026-07-28; this is 2025-11-25.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            assert await client.subscribe_resource(STATUS_URI) is not None
        result = await client.call_tool("sync_data", {})
        assert not result.is_error, result.content
        assert await asyncio.wait_for(updated.get(), timeout=10) == STATUS_URI


def _lines_until(process: subprocess.Popen[bytes], request_id: int) -> list[dict[str, Any]]:
    """Every message on stdout up to and including the answer to ``request_id``."""
    assert process.stdout is not None
    seen: list[dict[str, Any]] = []
    while line := process.stdout.readline():
        seen.append(protocol_line(line))
        if seen[-1].get("id") == request_id:
            return seen
    raise AssertionError(f"stdout ended before the answer to {request_id}: {seen}")


def _request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def _updates(messages: list[dict[str, Any]]) -> list[str]:
    return [
        m["params"]["uri"] for m in messages if m.get("method") == "notifications/resources/updated"
    ]


@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18", "2025-11-25"])
def test_a_stdio_client_of_an_older_version_subscribes_and_unsubscribes(
    tmp_path: Path, version: str
) -> None:
    process = subprocess.Popen(
        [sys.executable, *serve_args("--sandbox", "--no-initial-sync")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(tmp_path),
        cwd=tmp_path,
    )
    try:
        hello = {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "old-client", "version": "0"},
        }
        send_messages(process, _request(1, "initialize", hello))
        init = _lines_until(process, 1)[-1]["result"]
        assert init["protocolVersion"] == version
        assert init["capabilities"]["resources"]["subscribe"] is True
        send_messages(process, INITIALIZED, _request(2, "resources/subscribe", {"uri": STATUS_URI}))
        assert _lines_until(process, 2)[-1] == {"jsonrpc": "2.0", "id": 2, "result": {}}
        send_messages(process, _request(3, "tools/call", {"name": "sync_data", "arguments": {}}))
        first_run = _lines_until(process, 3)
        assert "error" not in first_run[-1], first_run[-1]
        assert _updates(first_run) == [STATUS_URI]
        # The update is sent before the tool answers, so after the answer none can follow.
        send_messages(process, _request(4, "resources/unsubscribe", {"uri": STATUS_URI}))
        assert _lines_until(process, 4)[-1] == {"jsonrpc": "2.0", "id": 4, "result": {}}
        send_messages(process, _request(5, "tools/call", {"name": "sync_data", "arguments": {}}))
        second_run = _lines_until(process, 5)
        assert "error" not in second_run[-1], second_run[-1]
        assert _updates(second_run) == []
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
