"""``testio-mirror serve``: the MCP server over stdio or HTTP, optionally on a built-in sandbox.

In stdio mode stdout belongs to the protocol: nothing else is ever written there.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from testio_mirror.cli.interpreter import tune_interpreter
from testio_mirror.logs import configure_server_logging
from testio_mirror.settings import Settings, load_settings

SANDBOX_DIR = "sandbox"


def run_serve(
    *,
    transport: str,
    host: str,
    port: int,
    sandbox: bool,
    sandbox_latency_ms: float,
    initial_sync: bool,
) -> int:
    """Serve until the client or a signal stops it; returns the exit code.

    Raises:
        SettingsError, ServeError: the configuration cannot be served.
    """
    settings = load_settings()
    configure_server_logging(settings.log_level)
    # Imported after logging is set: the SDK configures logging only when nobody has.
    from testio_mirror.server import build_server
    from testio_mirror.server.transport import serve_stdio

    with _maybe_sandbox(settings, sandbox, sandbox_latency_ms) as effective:
        server = build_server(effective, initial_sync=initial_sync)
        tune_interpreter()
        if transport == "http":
            _serve_http(server, effective, host, port)
        else:
            serve_stdio(server)
    return 0


def _serve_http(server: Any, settings: Settings, host: str, port: int) -> None:
    from testio_mirror.server.transport import HttpPolicy, bind, http_app, http_url, serve_http

    token = settings.mirror_http_token
    policy = HttpPolicy(
        token=token.get_secret_value() if token else None,
        allowed_origins=settings.http_allowed_origins,
        session_idle_seconds=settings.mirror_http_session_idle_seconds,
        max_sessions=settings.mirror_http_max_sessions,
        max_sessions_per_client=settings.mirror_http_max_sessions_per_client,
    )
    app = http_app(server, host, policy)  # refuses a weak or missing token before binding
    sock = bind(host, port)
    gate = (
        "token required: clients send Authorization: Bearer <TESTIO_MIRROR_HTTP_TOKEN>"
        if token
        else "no token required (loopback only)"
    )
    print(f"testio-mirror: serving MCP at {http_url(host, sock)}; {gate}", file=sys.stderr)
    serve_http(app, sock)


@contextlib.contextmanager
def _maybe_sandbox(settings: Settings, enabled: bool, latency_ms: float) -> Iterator[Settings]:
    if not enabled:
        yield settings
        return
    import logging

    from testio_mirror.sandbox import SandboxConfig, SandboxKnobs, SandboxServer
    from testio_mirror.sandbox.dataset import preset
    from testio_mirror.store.account import adopt_account

    logging.getLogger("testio_mirror.sandbox").setLevel(logging.WARNING)
    config = SandboxConfig(dataset=preset("demo"), knobs=SandboxKnobs(latency_ms=latency_ms))
    with SandboxServer(config) as sandbox:
        # A mirror of the sandbox must never mix with a mirror of the real account.
        effective = load_settings(
            customer_api_token=sandbox.token,
            customer_api_base_url=sandbox.base_url,
            mirror_home=settings.mirror_home / SANDBOX_DIR,
        )
        # The same simulated account at every start, at a new port with a new token: its
        # mirror is rebound to this start's sandbox rather than refused as another account's.
        asyncio.run(adopt_account(effective))
        yield effective
