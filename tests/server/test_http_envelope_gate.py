"""The envelope check in front of the SDK's HTTP app, with a stand-in app."""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.types import Message, Receive, Scope, Send

from testio_mirror.server.http_envelope_gate import EnvelopeGate

PING = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'


class RecordingApp:
    """Answers 200 and keeps the bodies it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _call(app: Any, chunks: list[bytes], method: str = "POST") -> list[Message]:
    sent: list[Message] = []
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/mcp", "headers": []}
    anyio.run(app, scope, receive, send)
    return sent


def test_a_good_body_reaches_the_app_whole() -> None:
    inner = RecordingApp()
    sent = _call(EnvelopeGate(inner), [PING[:10], PING[10:]])
    assert inner.bodies == [PING]
    assert sent[0]["status"] == 200


def test_a_hostile_body_is_answered_400_and_never_reaches_the_app() -> None:
    inner = RecordingApp()
    sent = _call(EnvelopeGate(inner), [b"[" + PING + b"]"])
    assert inner.bodies == []
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": json.loads(sent[1]["body"])["error"]["message"]},
    }


def test_other_methods_pass_untouched() -> None:
    inner = RecordingApp()
    _call(EnvelopeGate(inner), [b"not json"], method="DELETE")
    assert inner.bodies == [b"not json"]
