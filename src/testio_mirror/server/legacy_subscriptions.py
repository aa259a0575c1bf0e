"""``resources/subscribe`` for handshake-era clients (protocol 2025-11-25 and older).

``MCPServer`` serves subscriptions only the 2026-07-28 way, ``subscriptions/listen`` fed by its
``SubscriptionBus``; it registers no ``resources/subscribe`` handler, and the SDK derives
``capabilities.resources.subscribe`` at handshake versions from that handler being there. So
under 2025-11-25 (what Inspector and today's desktop clients negotiate) ``initialize`` said
``subscribe: false`` and ``resources/subscribe`` answered -32601. ``MCPServer`` offers no
public way to add a spec method's handler, but its public middleware seam wraps every request,
``initialize`` and the method lookup included; ``HandshakeSubscriptions.middleware`` answers
``resources/subscribe`` and ``resources/unsubscribe`` there, and says ``subscribe: true`` in
the ``initialize`` result.

A subscription is kept per connection (its ``ServerSession``, whose notifications go on the
connection's standalone channel: the stdio pipe, HTTP's GET stream). As with ``subscriptions/
listen``, any URI is honoured; only the ones the server publishes ever fire. Bounded: at most
``max_connections`` connections (the oldest is dropped beyond) and ``max_uris`` URIs each.

Example::

    subscriptions = HandshakeSubscriptions()
    server.middleware.append(subscriptions.middleware)
    await subscriptions.publish("testio://sync/status")
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, SubscribeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

logger = logging.getLogger("testio_mirror.server")

SUBSCRIBE = "resources/subscribe"
UNSUBSCRIBE = "resources/unsubscribe"


class _Subscriber:
    def __init__(self, session: ServerSession) -> None:
        self.session = session
        self.uris: set[str] = set()


class HandshakeSubscriptions:
    """Who subscribed to what on handshake-era connections, and the delivery of updates."""

    def __init__(self, *, max_connections: int = 1024, max_uris: int = 64) -> None:
        self._max_connections = max_connections
        self._max_uris = max_uris
        # Keyed by the connection's initialize params: one object per connection, the same for
        # each of its requests (each request has its own ServerSession).
        self._subscribers: OrderedDict[int, _Subscriber] = OrderedDict()

    async def middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """The ``MCPServer.middleware`` entry: subscriptions, and the capability that says so."""
        if ctx.method == "initialize":
            return _says_subscribe(await call_next(ctx))
        if (
            ctx.method in (SUBSCRIBE, UNSUBSCRIBE)
            and ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        ):
            uri = _uri_of(ctx.params)
            if ctx.method == SUBSCRIBE:
                self._subscribe(ctx.session, uri)
            else:
                self._unsubscribe(ctx.session, uri)
            return {}
        return await call_next(ctx)

    def _subscribe(self, session: ServerSession, uri: str) -> None:
        key = _connection_key(session)
        subscriber = self._subscribers.get(key)
        if subscriber is None:
            while len(self._subscribers) >= self._max_connections:
                self._subscribers.popitem(last=False)
                logger.warning("too many subscribed connections; the oldest one's were dropped")
            subscriber = self._subscribers[key] = _Subscriber(session)
        if uri not in subscriber.uris and len(subscriber.uris) >= self._max_uris:
            raise MCPError(INTERNAL_ERROR, f"at most {self._max_uris} subscriptions per session")
        subscriber.uris.add(uri)

    def _unsubscribe(self, session: ServerSession, uri: str) -> None:
        key = _connection_key(session)
        subscriber = self._subscribers.get(key)
        if subscriber is not None:
            subscriber.uris.discard(uri)
            if not subscriber.uris:
                del self._subscribers[key]

    async def publish(self, uri: str) -> None:
        """Send ``notifications/resources/updated`` for ``uri`` to every connection subscribed
        to it; a connection that has gone is forgotten."""
        for key, subscriber in list(self._subscribers.items()):
            if uri not in subscriber.uris:
                continue
            try:
                await subscriber.session.send_resource_updated(uri)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, BrokenPipeError):
                logger.debug("a subscribed connection has closed; forgetting it")
                self._subscribers.pop(key, None)

    def __len__(self) -> int:
        return len(self._subscribers)


def _connection_key(session: ServerSession) -> int:
    params = session.client_params
    if params is None:  # only before initialize, which the SDK's gate would refuse too
        raise MCPError(INVALID_PARAMS, "initialize first, then subscribe")
    return id(params)


def _uri_of(params: Any) -> str:
    try:
        return str(SubscribeRequestParams.model_validate(params or {}, by_name=False).uri)
    except ValidationError:
        raise MCPError(INVALID_PARAMS, "params.uri must be a resource URI string") from None


def _says_subscribe(result: HandlerResult) -> HandlerResult:
    """The ``initialize`` result with ``capabilities.resources.subscribe`` true."""
    if isinstance(result, dict):
        resources = result.get("capabilities", {}).get("resources")
        if isinstance(resources, dict):
            resources["subscribe"] = True
    return result
