"""Serving the MCP server: stdio (the default) or streamable HTTP at ``/mcp``.

stdio is the SDK's own transport, which keeps stdout for the protocol alone while it serves.

HTTP binds 127.0.0.1 by default. Any address that is not loopback needs
``TESTIO_MIRROR_HTTP_TOKEN``; with a token set, every request must carry
``Authorization: Bearer <token>`` (401 otherwise). The SDK's DNS-rebinding protection checks the
``Host`` and ``Origin`` headers.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from testio_mirror.errors import MirrorError
from testio_mirror.server.state import ServerState
from testio_mirror.server.stdin_relay import relayed_stdin

MCP_PATH = "/mcp"

logger = logging.getLogger("testio_mirror.server")


class ServeError(MirrorError):
    """The server cannot be served as asked; the message says why."""

    exit_code = 2


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerTokenGate:
    """ASGI middleware: every HTTP request must present ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = token.encode()

    def _authorized(self, scope: Scope) -> bool:
        # The scheme is case-insensitive (RFC 7235); one space, then the token exactly, compared in
        # constant time.
        header: bytes = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(presented, self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            body = json.dumps(
                {"error": "missing or wrong bearer token: send Authorization: Bearer <token>"}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)


def _rebinding_protection(host: str) -> TransportSecuritySettings | None:
    """Host and Origin checks for every loopback address (the SDK only knows three of them);
    beyond loopback the bearer token guards."""
    if not is_loopback(host):
        return None
    named = f"[{host}]" if ":" in host else host
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", f"{named}:*"],
        allowed_origins=[
            "http://127.0.0.1:*",
            "http://localhost:*",
            "http://[::1]:*",
            f"http://{named}:*",
        ],
    )


def http_app(server: MCPServer[ServerState], host: str, token: str | None) -> ASGIApp:
    """The ASGI app for streamable HTTP, behind the bearer gate when a token is set.

    Raises:
        ServeError: a non-loopback host without a token.
    """
    if not is_loopback(host) and token is None:
        raise ServeError(
            f"refusing to serve on {host} without TESTIO_MIRROR_HTTP_TOKEN: set it (clients then "
            "send Authorization: Bearer <token>), or bind 127.0.0.1"
        )
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH, host=host, transport_security=_rebinding_protection(host)
    )
    return BearerTokenGate(app, token) if token is not None else app


def serve_http(server: MCPServer[ServerState], host: str, port: int, token: str | None) -> None:
    """Serve streamable HTTP until interrupted.

    Raises:
        ServeError: a non-loopback host without a token.
    """
    app = http_app(server, host, token)
    import uvicorn  # only HTTP serving needs it

    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None)


def serve_stdio(server: MCPServer[ServerState]) -> None:
    """Serve over stdin/stdout until the client closes stdin or stops reading stdout, on the
    SDK's stdio transport.

    While it serves, the SDK points fd 0 at the null device and fd 1 at stderr (the protocol
    runs on private duplicates), so a stray ``print`` or a child process cannot corrupt the wire.
    stdin reaches the SDK through ``relayed_stdin``, which ends the session when the client stops
    reading stdout although stdin stays open.
    """
    try:
        with relayed_stdin():
            server.run("stdio")
    except* (BrokenPipeError, ConnectionResetError):
        # Nobody reads the answers any more: the session is over, as when stdin closes.
        logger.info("the client stopped reading stdout; serving ends")
