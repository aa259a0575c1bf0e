"""The read-through rule every ``get_*`` follows.

Serve the mirror's copy when it is fresh. Otherwise fetch from TestIO (one fetch per key, however
many readers ask at once), store, and serve that. When TestIO fails and a copy exists, serve the
copy marked stale with the reason; with no copy, the upstream error goes up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from testio_mirror.errors import OfflineError
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.readthrough.singleflight import SingleFlight
from testio_mirror.store.records import Answer
from testio_mirror.upstream.errors import NotFoundError, UpstreamError

logger = logging.getLogger("testio_mirror.store")

T = TypeVar("T")


@dataclass(frozen=True)
class Local(Generic[T]):
    """A copy found in the mirror, when it was fetched, and how long it stays fresh."""

    value: T
    fetched_at: datetime | None
    ttl: float | None  # None: never stale


async def read_through(
    key: Hashable,
    policy: FreshnessPolicy,
    flights: SingleFlight[Hashable, None],
    load: Callable[[], Awaitable[Local[T] | None]],
    refresh: Callable[[], Awaitable[None]] | None,
    on_gone: Callable[[], Awaitable[None]] | None = None,
) -> Answer[T]:
    """Answer ``key`` from the mirror or, when missing or stale, through ``refresh``.

    ``refresh`` fetches from TestIO and stores (None when offline); ``on_gone`` runs when TestIO
    says the thing no longer exists (to tombstone it) before the NotFoundError goes up.

    Raises:
        OfflineError: nothing in the mirror and no TestIO client to fetch it.
        UpstreamError: nothing usable in the mirror and TestIO could not provide it.
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
        await flights.run(key, refresh)
    except NotFoundError:
        if local is not None and on_gone is not None:
            await on_gone()
        raise
    except UpstreamError as exc:
        if local is None:
            raise
        logger.warning("serving a stale copy of %s: %s", key, exc)
        reason = f"TestIO could not be reached to refresh it: {exc}"
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
