"""Serving the MCP server: stdio (the default) or streamable HTTP at ``/mcp``.

stdio is the SDK's own transport, which keeps stdout for the protocol alone while it serves.

HTTP binds 127.0.0.1 by default. Any address that is not loopback needs
``TESTIO_MIRROR_HTTP_TOKEN``; with a token set, every request must carry
``Authorization: Bearer <token>`` (401 otherwise). The SDK's DNS-rebinding protection checks the
``Host`` and ``Origin`` headers. Every POST body is vetted before the SDK sees it
(``http_envelope_gate``), and one client holds at most ``max_sessions_per_client`` sessions
(``http_client_sessions``).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import secrets
import socket
from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from testio_mirror.errors import MirrorError
from testio_mirror.server.http_client_sessions import ClientSessionBound
from testio_mirror.server.http_envelope_gate import EnvelopeGate
from testio_mirror.server.state import ServerState
from testio_mirror.server.stdin_relay import relayed_stdin

MCP_PATH = "/mcp"
MIN_REMOTE_TOKEN_LENGTH = 32  # about 190 bits from secrets.token_urlsafe(24); a guess is hopeless
UNAUTHORIZED = -32001  # JSON-RPC server-error range: the request lacked the bearer token
# Pages served from loopback (MCP Inspector's UI, local tools): the same ones the DNS-rebinding
# protection admits when the server binds loopback.
LOOPBACK_ORIGIN = r"^https?://(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])(:\d{1,5})?$"


@dataclass(frozen=True)
class HttpPolicy:
    """What HTTP serving admits: the bearer token, browser origins, and the session bounds."""

    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    session_idle_seconds: float = 600.0
    max_sessions: int = 100
    max_sessions_per_client: int = 10


logger = logging.getLogger("testio_mirror.server")


class ServeError(MirrorError):
    """The server cannot be served as asked; the message says why."""

    exit_code = 2


class AddressInUseError(ServeError):
    """Another program holds the HTTP address (host and port)."""

    exit_code = 5  # cli/exit_codes.EXIT_ADDRESS_IN_USE


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
            # Shaped as JSON-RPC so an MCP client shows the message instead of a parse failure.
            body = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": UNAUTHORIZED,
                        "message": "missing or wrong bearer token: send Authorization: Bearer "
                        "<TESTIO_MIRROR_HTTP_TOKEN>",
                    },
                }
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


def _rebinding_protection(
    host: str, extra_origins: tuple[str, ...]
) -> TransportSecuritySettings | None:
    """Host and Origin checks for every loopback address (the SDK only knows three of them);
    beyond loopback the bearer token guards. Configured origins pass the Origin check; the Host
    check, which is what stops DNS rebinding, never widens."""
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
            *extra_origins,
        ],
    )


def _with_cors(app: ASGIApp, host: str, origins: tuple[str, ...]) -> ASGIApp:
    """CORS outside the token gate: a preflight carries no credentials, so it is answered
    without the token; the request it announces still needs it."""
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(
        app,
        allow_origins=list(origins),
        allow_origin_regex=LOOPBACK_ORIGIN if is_loopback(host) else None,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=[
            "authorization",
            "content-type",
            "accept",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
        ],
        expose_headers=["mcp-session-id", "mcp-protocol-version", "www-authenticate"],
        max_age=600,
    )


def http_app(
    server: MCPServer[ServerState], host: str, policy: HttpPolicy | None = None
) -> ASGIApp:
    """The ASGI app for streamable HTTP: CORS, the bearer gate when a token is set, the
    envelope check of every POST body, the per-client bound on sessions, then the SDK's app.

    Raises:
        ServeError: a non-loopback host without a token, or with one shorter than
            ``MIN_REMOTE_TOKEN_LENGTH``.
    """
    policy = policy or HttpPolicy()
    token = policy.token
    if not is_loopback(host) and token is None:
        raise ServeError(
            f"refusing to serve on {host} without TESTIO_MIRROR_HTTP_TOKEN: set it (clients then "
            "send Authorization: Bearer <token>), or bind 127.0.0.1"
        )
    if not is_loopback(host) and token is not None and len(token) < MIN_REMOTE_TOKEN_LENGTH:
        raise ServeError(
            f"refusing to serve on {host}: TESTIO_MIRROR_HTTP_TOKEN has {len(token)} characters, "
            f"beyond loopback it needs at least {MIN_REMOTE_TOKEN_LENGTH} characters (make one "
            "with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        host=host,
        transport_security=_rebinding_protection(host, policy.allowed_origins),
        session_idle_timeout=policy.session_idle_seconds,
        max_sessions=policy.max_sessions,
    )
    app = ClientSessionBound(app, policy.max_sessions_per_client, policy.session_idle_seconds)
    app = EnvelopeGate(app)
    if token is not None:
        app = BearerTokenGate(app, token)
    return _with_cors(app, host, policy.allowed_origins)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket for ``host``:``port`` (0 picks a free port).

    Raises:
        AddressInUseError: another program holds the address.
        ServeError: the address cannot be bound (not this machine's, a privileged port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"{http_address(host, port)} is in use by another program: stop it, or serve "
                "on another port with --port"
            ) from None
        raise ServeError(f"cannot serve on {http_address(host, port)}: {exc.strerror}") from None


def http_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_url(host: str, sock: socket.socket) -> str:
    """The URL clients use for the server bound on ``sock``."""
    return f"http://{http_address(host, sock.getsockname()[1])}{MCP_PATH}"


def serve_http(app: ASGIApp, sock: socket.socket) -> None:
    """Serve ``app`` (from ``http_app``) on the bound ``sock`` until interrupted."""
    import uvicorn  # only HTTP serving needs it

    config = uvicorn.Config(app, log_level="warning", log_config=None)
    uvicorn.Server(config).run(sockets=[sock])


def serve_stdio(server: MCPServer[ServerState]) -> None:
    """Serve over stdin/stdout until the client closes stdin or stops reading stdout, on the
    SDK's stdio transport.

    While it serves, the SDK points fd 0 at the null device and fd 1 at stderr (the protocol
    runs on private duplicates), so a stray ``print`` or a child process cannot corrupt the wire.
    stdin reaches the SDK through ``relayed_stdin``, which answers hostile lines itself (whole
    lines on stdout, between the SDK's) and ends the session when the client stops reading
    stdout although stdin stays open.
    """
    try:
        with relayed_stdin():
            server.run("stdio")
    except* (BrokenPipeError, ConnectionResetError):
        # Nobody reads the answers any more: the session is over, as when stdin closes.
        logger.info("the client stopped reading stdout; serving ends")
