"""The five triage PUTs of the Customer API, as they change a bug (see docs/testio-api.md)."""

from __future__ import annotations

from typing import Literal, cast

from testio_mirror.sandbox.dataset import JSON, REJECT_REASONS
from testio_mirror.sandbox.errors import UnprocessableError
from testio_mirror.triage import WIRE_SEGMENT

TriageAction = Literal["accept", "reject", "mark_as_known", "mark_as_fixed", "mark_as_exported"]
TRIAGE_ACTIONS: tuple[TriageAction, ...] = (
    "accept",
    "reject",
    "mark_as_known",
    "mark_as_fixed",
    "mark_as_exported",
)


def wire_action(name: str) -> TriageAction:
    """An action named as the API does (``mark_as_known``) or as the mirror's tools do
    (``mark_known``), as the API names it.

    Raises:
        UnprocessableError: neither.
    """
    for action in TRIAGE_ACTIONS:
        if name == action:
            return action
    for agent_name, segment in WIRE_SEGMENT.items():
        if name == agent_name:
            return cast(TriageAction, segment)
    raise UnprocessableError(f"unknown bug action {name!r}; use one of {', '.join(TRIAGE_ACTIONS)}")


def apply_triage(
    bug: JSON,
    action: TriageAction,
    *,
    reason: str | None,
    comment: str | None,
    now: str,
    comment_id: int,
) -> None:
    """Change ``bug`` in place as TestIO does; ``now`` is the account's clock (ISO 8601) and
    ``comment_id`` the id a rejection's comment gets. Any status takes accept and reject (a
    rejected bug can be accepted, an accepted one rejected): the API notes name no precondition,
    so this is an assumption (docs/sandbox.md). Each reject adds its comment, a repeated one too,
    so a write applied twice shows.

    Raises:
        UnprocessableError: ``reject`` without a known reason key (the bug is left as it was).
    """
    if action == "accept":
        bug["status"] = "accepted"
        bug["auto_accepted"] = False
    elif action == "reject":
        chosen = next((r for r in REJECT_REASONS if r["key"] == reason), None)
        if chosen is None:
            keys = ", ".join(r["key"] for r in REJECT_REASONS)
            raise UnprocessableError(f"reason must be one of: {keys}")
        bug["status"] = "rejected"
        body = chosen["default_comment"] + (f"\n\n{comment}" if comment else "")
        bug["comments"].append({"id": comment_id, "body": body, "author": {"name": "API user"}})
    elif action == "mark_as_known":
        bug["known"] = True
    elif action == "mark_as_fixed":
        bug["fixed_at"] = now
    else:
        bug["exported_at"] = now
