"""What every read-through repository shares: the database, the client, the freshness policy,
the gate that bounds a fetch, one single-flight per repository, and tombstoning what TestIO says
is gone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol, TypeVar

from testio_mirror.errors import RemovedError
from testio_mirror.store.readthrough.freshness import FreshnessPolicy
from testio_mirror.store.readthrough.rule import ReadThroughGate
from testio_mirror.store.readthrough.singleflight import SingleFlight
from testio_mirror.store.records import Answer
from testio_mirror.store.sqlite.db import Database
from testio_mirror.store.sqlite.upsert import tombstone
from testio_mirror.upstream.client import CustomerApiClient

_TOMBSTONABLE = frozenset({"products", "features", "tests", "bugs"})

# A client, or what makes one on first use (the App's read-through client costs nothing until a
# query needs TestIO).
ClientSource = CustomerApiClient | Callable[[], CustomerApiClient]


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
        self,
        db: Database,
        client: ClientSource | None,
        policy: FreshnessPolicy,
        gate: ReadThroughGate | None = None,
    ) -> None:
        """``gate`` None: a fetch is awaited to its end, whatever TestIO's health."""
        self._db = db
        self._client_source = client
        self._policy = policy
        self._gate = gate
        self._flights: SingleFlight[Hashable, None] = SingleFlight()

    @property
    def _client(self) -> CustomerApiClient | None:
        source = self._client_source
        if source is None or isinstance(source, CustomerApiClient):
            return source
        return source()

    def _online(
        self, refresh: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]] | None:
        """``refresh`` when a TestIO client is configured, else None (serve the mirror only)."""
        return refresh if self._client_source is not None else None

    async def _tombstone(self, table: str, entity_id: int) -> None:
        """Mark one entity as vanished upstream (TestIO answered 404 for it)."""
        assert table in _TOMBSTONABLE
        async with self._db.transaction() as conn:
            await tombstone(conn, table, [entity_id], self._policy.stamp())

    async def close(self) -> None:
        """Stop the fetches still running in the background (before the database closes)."""
        await self._flights.cancel_all()
