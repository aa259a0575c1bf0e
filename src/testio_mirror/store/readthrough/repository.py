"""What every read-through repository shares: the database, the client, the freshness policy,
one single-flight per repository, and tombstoning what TestIO says is gone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol, TypeVar

from testio_mirror.errors import RemovedError
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.readthrough.singleflight import SingleFlight
from testio_mirror.store.records import Answer
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import tombstone
from testio_mirror.upstream.client import CustomerApiClient

_TOMBSTONABLE = frozenset({"products", "features", "tests", "bugs"})


class _Tombstonable(Protocol):
    @property
    def deleted(self) -> bool: ...


R = TypeVar("R", bound=_Tombstonable)


def removed(what: str) -> RemovedError:
    """The error for ``what`` ("test 12") when the mirror holds it only as a tombstone."""
    return RemovedError(
        f"{what} was removed from the TestIO account (it, or its product, is gone from TestIO; "
        "the mirror keeps it only as a tombstone); a sync brings it back if it returns"
    )


def live(answer: Answer[R], what: str) -> Answer[R]:
    """``answer`` when it holds a live thing.

    Raises:
        RemovedError: the thing is tombstoned.
    """
    if answer.value.deleted:
        raise removed(what)
    return answer


class ReadThroughRepository:
    """Base of the repositories whose ``get_*`` read through to TestIO."""

    def __init__(
        self, db: Database, client: CustomerApiClient | None, policy: FreshnessPolicy
    ) -> None:
        self._db = db
        self._client = client
        self._policy = policy
        self._flights: SingleFlight[Hashable, None] = SingleFlight()

    def _online(
        self, refresh: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]] | None:
        """``refresh`` when a TestIO client is configured, else None (serve the mirror only)."""
        return refresh if self._client is not None else None

    async def _tombstone(self, table: str, entity_id: int) -> None:
        """Mark one entity as vanished upstream (TestIO answered 404 for it)."""
        assert table in _TOMBSTONABLE
        async with self._db.transaction() as conn:
            await tombstone(conn, table, [entity_id], self._policy.stamp())
