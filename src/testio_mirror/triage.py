"""The vocabulary of bug triage that the layers share: the actions an agent asks for, the API path
each one PUTs, the states a change in the outbox moves through, the conflict strategies, and the
part of a bug a triage decision changes (what a conflict compares). Imports nothing of ours, so
the store, the upstream client, the sync and the server all speak the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

TriageAction = Literal["accept", "reject", "mark_known", "mark_fixed", "mark_exported"]
TRIAGE_ACTIONS: tuple[TriageAction, ...] = (
    "accept",
    "reject",
    "mark_known",
    "mark_fixed",
    "mark_exported",
)

# The last segment of ``PUT bugs/{id}/<segment>`` per action (docs/testio-api.md): the agent-facing
# names drop the API's ``as``, which reads as noise in a tool's arguments.
WIRE_SEGMENT: Mapping[TriageAction, str] = {
    "accept": "accept",
    "reject": "reject",
    "mark_known": "mark_as_known",
    "mark_fixed": "mark_as_fixed",
    "mark_exported": "mark_as_exported",
}

# One call decides at most this many bugs: a confirmation form stays readable, a push short.
MAX_CHANGES_PER_CALL = 50

ChangeState = Literal["pending", "sending", "applied", "conflict", "failed", "cancelled"]
CHANGE_STATES: tuple[ChangeState, ...] = (
    "pending",
    "sending",
    "applied",
    "conflict",
    "failed",
    "cancelled",
)
# A change in one of these states is settled: nothing more is sent for it.
SETTLED_STATES: frozenset[ChangeState] = frozenset({"applied", "failed", "cancelled"})

ConflictStrategy = Literal["manual", "server_wins", "local_wins", "latest"]
CONFLICT_STRATEGIES: tuple[ConflictStrategy, ...] = (
    "manual",
    "server_wins",
    "local_wins",
    "latest",
)

ConflictResolution = Literal["keep_local", "keep_server"]


@dataclass(frozen=True, slots=True)
class TriageState:
    """What a triage decision changes on a bug. TestIO has no version or ETag, so two reads of a
    bug are "the same" for triage when these four agree (docs/testio-api.md)."""

    status: str | None
    known: bool
    fixed: bool
    exported: bool

    @classmethod
    def of_bug(cls, bug: Mapping[str, object]) -> TriageState:
        """The triage state of a bug as the API sends it (``fixed_at``/``exported_at`` set means
        marked fixed/exported)."""
        status = bug.get("status")
        return cls(
            status=status if isinstance(status, str) else None,
            known=bug.get("known") is True,
            fixed=bug.get("fixed_at") is not None,
            exported=bug.get("exported_at") is not None,
        )

    def shows(self, action: TriageAction) -> bool:
        """Whether a bug in this state already carries ``action``'s effect: how a change whose
        answer was lost is reconciled without sending it again."""
        if action == "accept":
            return self.status == "accepted"
        if action == "reject":
            return self.status == "rejected"
        if action == "mark_known":
            return self.known
        if action == "mark_fixed":
            return self.fixed
        return self.exported
