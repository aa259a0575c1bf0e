"""What start-up leaves unloaded, and why: imports dependencies make that testio-mirror never uses.

Each function here is a workaround for a known upstream start-up cost, named in its docstring.
Each changes only what gets imported, never what the running code does, and each leaves things as
they are when its condition does not hold (the module already loaded, logging not yet set up).
"""

from __future__ import annotations

import sys


def skip_httpx_cli() -> None:
    """Keep httpx from importing its own command-line client.

    ``import httpx`` loads ``httpx._main`` (click, pygments and parts of rich: 40 to 90 ms here)
    whenever those packages are installed, as they are next to testio-mirror: rich for this CLI,
    click for uvicorn. Nothing here runs httpx's CLI. A ``None`` entry in ``sys.modules`` makes
    that import fail as if the packages were missing, and httpx keeps a stub ``httpx.main``.
    A known upstream cost: encode/httpx#3547 moves the import to ``python -m httpx``."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def skip_mcp_client_stack() -> None:
    """Let ``testio-mirror serve`` import the MCP SDK's server without its client.

    Importing any ``mcp`` module first runs ``mcp/__init__.py``, which imports the SDK's client
    side (sessions, session groups, the stdio and HTTP clients and httpx2): 0.1 to 0.2 s of the
    server's start-up here, for code a server never runs (modelcontextprotocol/python-sdk#1617).
    This registers the ``mcp`` package without running its ``__init__``; its submodules then
    import as usual. The server's modules import only submodules (``from mcp.types import ...``,
    never ``from mcp import Client``): ``tests/test_lean_imports.py`` builds the server this way,
    and the transport tests run ``serve`` itself over stdio and HTTP.
    Only the ``serve`` command calls this: a process that also wants ``mcp.Client`` must not."""
    if "mcp" in sys.modules:
        return
    import importlib.util  # here: every command imports this module, only serve needs this

    spec = importlib.util.find_spec("mcp")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not an installed package as expected: import it the usual way later
    sys.modules["mcp"] = importlib.util.module_from_spec(spec)


def skip_sdk_logging_setup() -> None:
    """Keep the SDK's server from importing rich to set up logging that is already set up.

    ``MCPServer()`` calls the SDK's ``configure_logging``, which imports rich (30 to 40 ms here)
    and builds a rich handler only to pass it to ``logging.basicConfig``; ``basicConfig`` does
    nothing when the root logger already has a handler, as it has once ``serve`` has configured
    logging. When that is so, the SDK's server module gets a set-up that does the same nothing
    without the import (modelcontextprotocol/python-sdk#420 asks for a way to skip it)."""
    import logging

    if not logging.getLogger().handlers:
        return  # the SDK's set-up would configure logging: leave it as it is
    from mcp.server.mcpserver import server as sdk_server

    if callable(getattr(sdk_server, "configure_logging", None)):
        # The module imports the name without re-exporting it; this replaces that binding.
        sdk_server.configure_logging = _logging_already_configured  # type: ignore[attr-defined]


def _logging_already_configured(level: str = "INFO") -> None:
    """The SDK's ``configure_logging`` when the root logger has a handler: nothing to do."""
