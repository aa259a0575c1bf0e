"""The per-client bound on HTTP sessions, with a stand-in for the SDK's app."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
from starlette.types import Message, Receive, Scope, Send

from testio_mirror.server.http_client_sessions import ClientSessionBound, client_key

TOKEN = b"Bearer secret-token-for-tests"


class SessionApp:
    """Opens a session on a POST without a session id; DELETE ends one; unknown ids get 404."""

    def __init__(self) -> None:
        self.open: set[str] = set()
        self._ids = (f"s{n}" for n in itertools.count())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = dict(scope["headers"]).get(b"mcp-session-id")
        headers: list[tuple[bytes, bytes]] = []
        if session is None:
            opened = next(self._ids)
            self.open.add(opened)
            status, headers = 200, [(b"mcp-session-id", opened.encode())]
        elif session.decode() not in self.open:
            status = 404
        elif scope["method"] == "DELETE":
            self.open.discard(session.decode())
            status = 200
        else:
            status = 200
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _request(
    app: Any, address: str, method: str = "POST", session: str | None = None, token: bytes = b""
) -> Message:
    headers = [(b"host", b"127.0.0.1")]
    if session is not None:
        headers.append((b"mcp-session-id", session.encode()))
    if token:
        headers.append((b"authorization", token))
    scope = {
        "type": "http",
        "method": method,
        "path": "/mcp",
        "headers": headers,
        "client": (address, 5000),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent[0]


def _opened(start: Message) -> str:
    return dict(start["headers"])[b"mcp-session-id"].decode()


def test_a_client_over_its_bound_loses_its_oldest_session_only() -> None:
    inner = SessionApp()
    app = ClientSessionBound(inner, per_client=2, idle_seconds=600)
    theirs = _opened(_request(app, "10.0.0.2"))
    mine = [_opened(_request(app, "10.0.0.1")) for _ in range(5)]
    assert inner.open == {theirs, *mine[-2:]}


def test_the_token_fingerprint_makes_another_client() -> None:
    inner = SessionApp()
    app = ClientSessionBound(inner, per_client=1, idle_seconds=600)
    with_token = _opened(_request(app, "10.0.0.1", token=TOKEN))
    without = _opened(_request(app, "10.0.0.1"))
    assert inner.open == {with_token, without}


def test_sessions_the_client_ended_no_longer_count() -> None:
    inner = SessionApp()
    app = ClientSessionBound(inner, per_client=2, idle_seconds=600)
    first = _opened(_request(app, "10.0.0.1"))
    second = _opened(_request(app, "10.0.0.1"))
    assert _request(app, "10.0.0.1", "DELETE", first)["status"] == 200
    third = _opened(_request(app, "10.0.0.1"))
    assert inner.open == {second, third}


def test_the_key_never_holds_the_token() -> None:
    scope = {"headers": [(b"authorization", TOKEN)], "client": ("10.0.0.1", 1)}
    key = client_key(scope)
    assert key.startswith("10.0.0.1#")
    assert "secret" not in key
    assert client_key({"headers": [], "client": None}) == "unknown"
