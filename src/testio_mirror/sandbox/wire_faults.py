"""How the sandbox delivers an injected fault on the wire, below Starlette, as raw ASGI messages:
a hang that notices the client hanging up, an answer cut half-way, a connection dropped after the
status line, a status with the body a proxy would send, an answer trickled a few bytes at a time
(slow-loris), an error that echoes a secret back, an answer lost after the request was applied."""

from __future__ import annotations

import asyncio
import contextlib
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
        await _send_error(fault.status, send)
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


async def _send_error(status: int, send: Send) -> None:
    if status == 524:
        # What a proxy in front of the API answers: HTML, not JSON.
        body = b"<html><body><h1>524: A timeout occurred</h1></body></html>"
        await send_raw(send, 524, [(b"content-type", b"text/html")], body)
    else:
        body = json.dumps({"error": f"injected {status}"}).encode()
        await send_raw(send, status, [(b"content-type", b"application/json")], body)


async def send_after_applying(
    respond: Callable[[Send], Awaitable[None]], send: Send, fault: FaultRule, receive: Receive
) -> None:
    """Let ``respond`` answer (a write is applied), then lose its answer as ``fault`` says:
    hold it ``hang_seconds`` (sent after, if the client still waits), answer ``status``
    instead, or send the status line and cut the connection."""
    messages: list[Message] = []

    async def buffer(message: Message) -> None:
        messages.append(message)

    await respond(buffer)
    if fault.kind == "apply_then_error":
        await _send_error(fault.status, send)
    elif fault.kind == "apply_then_disconnect":
        await send(messages[0])
        raise DeliberateDisconnectError
    elif await hang(fault.hang_seconds, receive) is not None:
        for message in messages:
            await send(message)


def echo_body(fault: FaultRule, presented: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """What an ``echo_secret`` fault answers: its status, with the secret (altered as the rule
    says) in every place a server could put it: the error field, a message, a key, and for a
    429 the ``Retry-After`` header; a 200 is plain text, as a misconfigured proxy would send."""
    echoed = fault.echoed(presented)
    if fault.status == 200:
        return 200, [(b"content-type", b"text/plain")], f"bad token {echoed}".encode()
    headers = [(b"content-type", b"application/json")]
    if fault.status == 429:
        headers.append((b"retry-after", echoed.encode("latin-1")))
    body = {
        "error": f"invalid token {echoed}",
        "message": f"the token {echoed} was refused",
        echoed: "the token",
    }
    return fault.status, headers, json.dumps(body).encode()


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


async def send_trickled(
    respond: Callable[[Send], Awaitable[None]], send: Send, fault: FaultRule, receive: Receive
) -> None:
    """Send the answer ``respond`` gives ``fault.trickle_bytes`` at a time, waiting
    ``fault.trickle_interval`` seconds before each piece; stops when the client hangs up."""
    messages: list[Message] = []

    async def buffer(message: Message) -> None:
        messages.append(message)

    await respond(buffer)
    body = b"".join(m.get("body", b"") for m in messages[1:])
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        await send(messages[0])
        step = fault.trickle_bytes
        for start in range(0, len(body), step):
            # The pause ends early when the client hangs up: nothing more is sent.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), fault.trickle_interval)
            if gone.is_set():
                return
            last = start + step >= len(body)
            piece = body[start : start + step]
            await send({"type": "http.response.body", "body": piece, "more_body": not last})
        if not body:
            await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


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
