"""The five triage PUTs of the Customer API, as they change a bug (see docs/testio-api.md)."""

from __future__ import annotations

from typing import Literal

from testio_mirror.sandbox.dataset import JSON, REJECT_REASONS
from testio_mirror.sandbox.errors import UnprocessableError

TriageAction = Literal["accept", "reject", "mark_as_known", "mark_as_fixed", "mark_as_exported"]
TRIAGE_ACTIONS: tuple[TriageAction, ...] = (
    "accept",
    "reject",
    "mark_as_known",
    "mark_as_fixed",
    "mark_as_exported",
)


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
    ``comment_id`` the id a rejection's comment gets.

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
