"""ASGI middleware: a POST body that is not one JSON-RPC message MCP accepts is answered here
(HTTP 400 with the JSON-RPC error from ``jsonrpc_envelope.vet_message``) and never reaches the
SDK, which would answer some of them with a code that does not say what was wrong, or an id of
null where the message had one."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from testio_mirror.server.jsonrpc_envelope import vet_message

logger = logging.getLogger("testio_mirror.server")


class EnvelopeGate:
    """Vets every POST body before the app sees it; the body is replayed to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before it finished sending
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        rejection = vet_message(body)
        if rejection is not None:
            logger.debug("refused a message from an HTTP client: %s", rejection.message)
            answer = rejection.answer()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(answer)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": answer})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)
