"""Start-up skips what testio-mirror never runs, and what it serves stays the same.

Each probe runs in a child process: what a process has imported cannot be undone in this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HTTPX_CLI_PROBE = """
import sys
from testio_mirror.lean_imports import skip_httpx_cli
skip_httpx_cli()
import httpx
with httpx.Client() as client:
    pass
print(sorted(name for name in ("click", "pygments", "httpx._main") if sys.modules.get(name)))
"""

# Serve's own order: logging first, then the skips, then the server.
SERVER_PROBE = """
import asyncio, json, logging, sys
from testio_mirror.logs import configure_server_logging
from testio_mirror.lean_imports import skip_mcp_client_stack, skip_sdk_logging_setup
from testio_mirror.settings import load_settings
if SKIP:
    configure_server_logging("INFO")
    skip_mcp_client_stack()
    skip_sdk_logging_setup()
from testio_mirror.server import build_server
server = build_server(load_settings(), initial_sync=False)
loaded = [name for name in ("mcp.client", "rich") if name in sys.modules]
tools = sorted(tool.name for tool in asyncio.run(server.list_tools()))
handlers = [type(h).__name__ for h in logging.getLogger().handlers]
print(json.dumps({"loaded": loaded, "tools": tools, "handlers": handlers}))
"""


def _probe(code: str, home: Path) -> str:
    env = {"TESTIO_MIRROR_HOME": str(home), "PATH": "/usr/bin:/bin"}
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert probe.returncode == 0, probe.stderr
    return probe.stdout.strip().splitlines()[-1]


def test_httpx_does_not_load_its_own_command_line_client(tmp_path: Path) -> None:
    assert _probe(HTTPX_CLI_PROBE, tmp_path) == "[]"


def test_serve_builds_the_same_server_without_the_sdk_client_or_rich(tmp_path: Path) -> None:
    lean = json.loads(_probe(SERVER_PROBE.replace("SKIP", "True"), tmp_path))
    usual = json.loads(_probe(SERVER_PROBE.replace("SKIP", "False"), tmp_path))

    assert lean["loaded"] == []
    assert "mcp.client" in usual["loaded"]  # without the skip, the SDK's __init__ loads it
    assert "rich" in usual["loaded"]  # and the SDK's logging set-up loads rich
    assert lean["tools"] == usual["tools"]
    assert "list_bugs" in lean["tools"]
    assert lean["handlers"] == ["StreamHandler"]  # serve's own handler, to stderr


def test_the_sdk_logging_set_up_is_left_alone_while_logging_is_not_configured(
    tmp_path: Path,
) -> None:
    code = """
from testio_mirror.lean_imports import skip_sdk_logging_setup
skip_sdk_logging_setup()
from mcp.server.mcpserver import server as sdk_server
print(sdk_server.configure_logging.__module__)
"""
    assert _probe(code, tmp_path) == "mcp.server.mcpserver.utilities.logging"
