"""ASGI middleware: at most ``per_client`` MCP sessions for one HTTP client.

A client is its remote address plus a fingerprint of its ``Authorization`` header (kept in
memory only, never in clear). When an ``initialize`` opens a session beyond the client's bound,
the client's oldest session is closed before the answer leaves, through the protocol's own
session termination (a DELETE with that session's id, handed to the SDK's app). Other clients'
sessions are never touched; the SDK's global bound (``max_sessions``) still applies.

Sessions are forgotten when their client ends them (DELETE), when the SDK no longer knows them
(404), and when they have been idle (no request in flight) for the SDK's idle period.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("testio_mirror.server")

SESSION_HEADER = b"mcp-session-id"
# Headers of the opening request a termination must not carry (it has no body).
_NOT_COPIED = frozenset({SESSION_HEADER, b"content-length", b"content-type", b"transfer-encoding"})


@dataclass
class _Session:
    last_active: float = field(default_factory=time.monotonic)
    in_flight: int = 0


def client_key(scope: Scope) -> str:
    """The remote address plus a fingerprint of the bearer token the client presented."""
    client = scope.get("client")
    address = client[0] if client else "unknown"
    presented = dict(scope["headers"]).get(b"authorization")
    if presented is None:
        return address
    fingerprint = hashlib.sha256(b"testio-mirror http client\0" + presented).hexdigest()[:16]
    return f"{address}#{fingerprint}"


class ClientSessionBound:
    """Closes a client's oldest session when it opens one beyond ``per_client``."""

    def __init__(self, app: ASGIApp, per_client: int, idle_seconds: float) -> None:
        self._app = app
        self._per_client = per_client
        self._idle_seconds = idle_seconds
        self._clients: dict[str, OrderedDict[str, _Session]] = {}
        self._owners: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        raw_id = dict(scope["headers"]).get(SESSION_HEADER)
        session_id = raw_id.decode("latin-1") if raw_id else None
        if session_id is None:
            await self._app(scope, receive, self._watch_opening(scope, send))
            return
        session = self._find(session_id)
        if session is not None:
            session.in_flight += 1
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, watch)
        finally:
            if session is not None:
                session.in_flight -= 1
                session.last_active = time.monotonic()
            if status == 404 or (scope["method"] == "DELETE" and 200 <= status < 300):
                self._forget(session_id)

    def _watch_opening(self, scope: Scope, send: Send) -> Send:
        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                opened = dict(message.get("headers", [])).get(SESSION_HEADER)
                if opened:
                    await self._admit(scope, opened.decode("latin-1"))
            await send(message)

        return watch

    def _find(self, session_id: str) -> _Session | None:
        owner = self._owners.get(session_id)
        return None if owner is None else self._clients[owner].get(session_id)

    def _forget(self, session_id: str) -> None:
        owner = self._owners.pop(session_id, None)
        if owner is None:
            return
        sessions = self._clients[owner]
        sessions.pop(session_id, None)
        if not sessions:
            del self._clients[owner]

    def _forget_idle(self) -> None:
        # The SDK closes these itself; forgetting them keeps this table as small as its own.
        horizon = time.monotonic() - self._idle_seconds
        idle = [
            session_id
            for sessions in self._clients.values()
            for session_id, session in sessions.items()
            if session.in_flight == 0 and session.last_active < horizon
        ]
        for session_id in idle:
            self._forget(session_id)

    async def _admit(self, scope: Scope, session_id: str) -> None:
        self._forget_idle()
        key = client_key(scope)
        sessions = self._clients.setdefault(key, OrderedDict())
        sessions[session_id] = _Session()
        self._owners[session_id] = key
        while len(sessions) > self._per_client:
            oldest, _ = next(iter(sessions.items()))
            self._forget(oldest)
            logger.info(
                "a client opened more than %d sessions: its oldest is closed", self._per_client
            )
            await self._terminate(scope, oldest)

    async def _terminate(self, scope: Scope, session_id: str) -> None:
        """Ends ``session_id`` in the SDK as the client's own DELETE would."""
        headers = [(name, value) for name, value in scope["headers"] if name not in _NOT_COPIED]
        headers.append((SESSION_HEADER, session_id.encode("latin-1")))
        asked = False

        async def receive() -> Message:
            nonlocal asked
            if asked:
                return {"type": "http.disconnect"}
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(message: Message) -> None:
            return None

        await self._app({**scope, "method": "DELETE", "headers": headers}, receive, discard)
