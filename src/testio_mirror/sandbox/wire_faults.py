"""How the sandbox delivers an injected fault on the wire, below Starlette, as raw ASGI messages:
a hang that notices the client hanging up, an answer cut half-way, a connection dropped after the
status line, a status with the body a proxy would send."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Send

from testio_mirror.sandbox.faults import FaultRule


class DeliberateDisconnectError(Exception):
    """Raised inside the app to make uvicorn drop a connection on purpose (a fault)."""


class _QuietDeliberateDisconnects(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DeliberateDisconnectError))


def quiet_deliberate_disconnects() -> None:
    """Keep uvicorn from logging a traceback for every injected disconnect."""
    target = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDeliberateDisconnects) for f in target.filters):
        target.addFilter(_QuietDeliberateDisconnects())


async def send_fault(fault: FaultRule, send: Send) -> None:
    """Answer as the fault says: a 429, an error status, malformed JSON, or a connection cut
    after the status line."""
    if fault.kind == "rate_limit":
        headers = [(b"content-type", b"application/json")]
        if fault.retry_after is not None:
            headers.append((b"retry-after", fault.retry_after.encode("latin-1")))
        await send_raw(send, 429, headers, b'{"error": "rate limit exceeded"}')
    elif fault.kind == "error":
        if fault.status == 524:
            # What a proxy in front of the API answers: HTML, not JSON.
            body = b"<html><body><h1>524: A timeout occurred</h1></body></html>"
            await send_raw(send, 524, [(b"content-type", b"text/html")], body)
        else:
            body = json.dumps({"error": f"injected {fault.status}"}).encode()
            await send_raw(send, fault.status, [(b"content-type", b"application/json")], body)
    elif fault.kind == "malformed":
        body = b'{"error": "this is not valid JSON'
        await send_raw(send, 200, [(b"content-type", b"application/json")], body)
    else:  # disconnect: a status line promising a body that never comes
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        raise DeliberateDisconnectError


async def send_half(respond: Callable[[Send], Awaitable[None]], send: Send) -> None:
    """Send the first half of the answer ``respond`` gives, then cut the connection."""
    messages: list[Message] = []

    async def buffer(message: Message) -> None:
        messages.append(message)

    await respond(buffer)
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    await send(start)
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    raise DeliberateDisconnectError


async def hang(seconds: float, receive: Receive) -> Receive | None:
    """Wait ``seconds`` unless the client hangs up first (then None); the receive returned
    replays the request body read while waiting."""
    body: list[Message] = []

    async def until_disconnect() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.append(message)

    try:
        await asyncio.wait_for(until_disconnect(), seconds)
    except TimeoutError:

        async def replay() -> Message:
            return body.pop(0) if body else await receive()

        return replay
    return None


async def send_raw(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
