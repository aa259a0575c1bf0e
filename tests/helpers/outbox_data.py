"""The outbox tests' data: a mirror of the small account with a clock that moves on at every
stamp (so every step has its own time), bugs chosen by status, and a bug as TestIO would answer
it after a triage change."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from testio_mirror.store.bugs import write_bugs
from testio_mirror.store.mirror import Mirror
from testio_mirror.upstream.models import Bug

JSON = dict[str, Any]


class TickingClock:
    """A clock one second later at every reading."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class OutboxMirror:
    mirror: Mirror
    snap: JSON

    def bug_ids(self, status: str, known: bool | None = None) -> list[int]:
        """Bugs of the account in ``status`` (and with ``known`` if given), by id."""
        return sorted(
            bug["id"]
            for bug in self.snap["bugs"].values()
            if bug["status"] == status and (known is None or bug.get("known") is known)
        )

    def raw(self, bug_id: int, **changes: Any) -> JSON:
        """The bug as the account holds it, with ``changes`` applied (as TestIO would answer)."""
        bug = copy.deepcopy(self.snap["bugs"][bug_id])
        bug.update(changes)
        return bug

    async def sync_bug(self, bug_id: int, **changes: Any) -> None:
        """A sync (or read-through) brings the bug as TestIO holds it now."""
        async with self.mirror.db.transaction() as conn:
            await write_bugs(conn, [Bug.from_wire(self.raw(bug_id, **changes))], self.stamp())

    def stamp(self) -> str:
        return self.mirror.policy.stamp()

    async def column(self, sql: str, *params: Any) -> list[Any]:
        """The first column of a query's rows."""
        async with self.mirror.db.reader() as conn:
            return [row[0] for row in await conn.execute_fetchall(sql, params)]
