"""The read-through rule every ``get_*`` follows.

Serve the mirror's copy when it is fresh. Otherwise fetch from TestIO (one fetch per key, however
many readers ask at once), store, and serve that. When TestIO fails and a copy exists, serve the
copy marked stale with the reason; with no copy, the upstream error goes up.

A fetch is bounded by the ``ReadThroughGate``: a reader waits at most its deadline, then is
answered from the copy while the fetch goes on in the background (it stores what it gets; later
readers of the key join it). While TestIO is known down (``UpstreamHealth``) nothing is asked of
it, except one probe per interval: readers get the copy at once, or at once an error saying so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from testio_mirror.errors import OfflineError
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.readthrough.singleflight import SingleFlight
from testio_mirror.store.records import Answer
from testio_mirror.upstream.errors import (
    BadResponseError,
    NotFoundError,
    UpstreamError,
    UpstreamUnavailableError,
)
from testio_mirror.upstream.health import Outage, UpstreamHealth

logger = logging.getLogger("testio_mirror.store")

T = TypeVar("T")

SERVED_FROM_COPY = "answered from the mirror's copy"


@dataclass(frozen=True)
class Local(Generic[T]):
    """A copy found in the mirror, when it was fetched, and how long it stays fresh."""

    value: T
    fetched_at: datetime | None
    ttl: float | None  # None: never stale


@dataclass(frozen=True)
class ReadThroughGate:
    """How a read-through may ask TestIO: what is known of its health, and how long a reader
    waits (``TESTIO_READ_THROUGH_TIMEOUT_SECONDS``)."""

    health: UpstreamHealth
    deadline: float


class NotAskedError(UpstreamUnavailableError):
    """TestIO is known down and it is not yet time to probe it: no request was sent."""

    def __init__(self, what: str, outage: Outage, next_probe_at: datetime | None) -> None:
        again = f"; it is asked again after {_when(next_probe_at)}" if next_probe_at else ""
        super().__init__(
            f"TestIO has been unreachable since {_when(outage.since)} ({outage.detail}), so "
            f"{what} was not asked for{again}"
        )
        self.outage = outage


class DeadlineError(UpstreamUnavailableError):
    """TestIO did not answer within the read-through deadline; the fetch goes on."""

    def __init__(self, what: str, deadline: float) -> None:
        super().__init__(
            f"TestIO did not answer for {what} within {deadline:g} s "
            "(TESTIO_READ_THROUGH_TIMEOUT_SECONDS); the fetch goes on in the background, so "
            "asking again in a moment may find it in the mirror"
        )
        self.deadline = deadline


def describe_key(key: Hashable) -> str:
    """``("test", 5)`` -> ``"test 5"``, ``("bugs of tests", (1, 2))`` -> ``"bugs of tests 1, 2"``:
    how messages name what was asked for."""
    if isinstance(key, tuple):
        return " ".join(
            describe_key(part) if not isinstance(part, tuple) else ", ".join(map(str, part))
            for part in key
        )
    return str(key)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stale_reason(exc: UpstreamError, health: UpstreamHealth | None) -> str:
    """Why a copy is served instead of TestIO's answer, for ``Freshness.stale_reason``."""
    if isinstance(exc, DeadlineError):
        return (
            f"TestIO did not answer within {exc.deadline:g} s; {SERVED_FROM_COPY} (the refresh "
            "goes on in the background)"
        )
    if isinstance(exc, UpstreamUnavailableError):
        outage = exc.outage if isinstance(exc, NotAskedError) else None
        if outage is None and health is not None:
            outage = health.outage()
        if outage is not None:
            return f"TestIO unreachable since {_when(outage.since)} ({outage.detail}); " + (
                SERVED_FROM_COPY
            )
    return f"TestIO could not be reached to refresh it: {exc}; {SERVED_FROM_COPY}"


async def fetch_in_time(
    key: Hashable,
    flights: SingleFlight[Hashable, None],
    refresh: Callable[[], Awaitable[None]],
    gate: ReadThroughGate | None,
) -> None:
    """Run ``refresh`` for ``key`` (joining a fetch of it already running) within the gate.

    Without a gate the fetch is awaited to its end.

    Raises:
        NotAskedError: TestIO is known down and it is not time to probe it (nothing was sent).
        DeadlineError: no answer within the deadline (the fetch goes on in the background).
        UpstreamError: what ``refresh`` raised.
    """
    if gate is None:
        await flights.run(key, refresh)
        return
    health = gate.health
    outage = health.outage()
    if outage is not None and not health.may_probe():
        raise NotAskedError(describe_key(key), outage, health.next_probe_at())
    try:
        async with asyncio.timeout(gate.deadline) as limit:
            # The flight runs in its own task (SingleFlight): leaving at the deadline cancels
            # this wait only, so the fetch finishes in the background and stores what it gets.
            await flights.run(key, lambda: _observed(key, refresh, health))
    except TimeoutError:
        if not limit.expired():
            raise
        health.failed(f"no answer within {gate.deadline:g} s")
        logger.warning(
            "TestIO did not answer for %s within %g s: the query goes on without it",
            describe_key(key),
            gate.deadline,
        )
        raise DeadlineError(describe_key(key), gate.deadline) from None


async def _observed(
    key: Hashable, refresh: Callable[[], Awaitable[None]], health: UpstreamHealth
) -> None:
    """``refresh``, telling ``health`` how TestIO answered (also when nobody waits any more)."""
    try:
        await refresh()
    except UpstreamUnavailableError as exc:
        if health.outage() is None:
            logger.warning("TestIO looks down (%s): queries answer from the mirror", exc)
        # The first clause names the request and what it met; the rest is advice.
        health.failed(str(exc).split(";", 1)[0])
        raise
    except BadResponseError as exc:
        health.succeeded()  # TestIO (or something in its place) answered, wrongly
        # One line, no traceback: an expected upstream failure, named in our own words.
        logger.warning("read-through of %s: %s", describe_key(key), str(exc).split(";", 1)[0])
        raise
    except UpstreamError:
        health.succeeded()  # a 404, 401 or 429 is TestIO answering
        raise
    # Cancelled (the mirror closing) or a bug: that says nothing about TestIO.
    health.succeeded()
    logger.debug("read-through of %s done", describe_key(key))


async def read_through(
    key: Hashable,
    policy: FreshnessPolicy,
    flights: SingleFlight[Hashable, None],
    load: Callable[[], Awaitable[Local[T] | None]],
    refresh: Callable[[], Awaitable[None]] | None,
    on_gone: Callable[[], Awaitable[None]] | None = None,
    gate: ReadThroughGate | None = None,
) -> Answer[T]:
    """Answer ``key`` from the mirror or, when missing or stale, through ``refresh``.

    ``refresh`` fetches from TestIO and stores (None when offline); ``on_gone`` runs when TestIO
    says the thing no longer exists (to tombstone it) before the NotFoundError goes up; ``gate``
    bounds the wait (see ``fetch_in_time``).

    Raises:
        OfflineError: nothing in the mirror and no TestIO client to fetch it.
        UpstreamError: nothing usable in the mirror and TestIO could not provide it (at once
            when TestIO is known down, ``NotAskedError``; after the deadline, ``DeadlineError``).
    """
    local = await load()
    if local is not None and policy.is_fresh(local.fetched_at, local.ttl):
        return Answer(value=local.value, freshness=policy.mirror(local.fetched_at, local.ttl))
    if refresh is None:
        if local is None:
            raise OfflineError(f"{_is(key)} not in the mirror and no TestIO token is configured")
        reason = "stale, and no TestIO token is configured to refresh it"
        return Answer(
            value=local.value, freshness=policy.mirror(local.fetched_at, local.ttl, reason)
        )
    try:
        await fetch_in_time(key, flights, refresh, gate)
    except NotFoundError:
        if local is not None and on_gone is not None:
            await on_gone()
        raise
    except UpstreamError as exc:
        if local is None:
            raise
        logger.info("serving a stale copy of %s: %s", describe_key(key), exc)
        reason = stale_reason(exc, gate.health if gate else None)
        return Answer(
            value=local.value, freshness=policy.mirror(local.fetched_at, local.ttl, reason)
        )
    fresh = await load()
    if fresh is None:
        raise NotFoundError(f"{_is(key)} fetched but not in the mirror")
    return Answer(value=fresh.value, freshness=policy.api(fresh.fetched_at))


def _is(key: Hashable) -> str:
    """A key in words with its verb, for messages: ("test", 7) -> "test 7 is"."""
    match key:
        case ("products",):
            return "the product list is"
        case ("features", product_id):
            return f"the features of product {product_id} are"
        case (str(kind), *ids):
            return " ".join([kind, *map(str, ids)]) + " is"
    return f"{key} is"
