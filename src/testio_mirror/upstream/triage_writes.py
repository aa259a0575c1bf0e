"""The triage writes: one ``PUT bugs/{id}/<action>`` per call, never repeated, and what came of it.

The API has no idempotency key and an answer that was lost may belong to a change TestIO made, so
a write is sent once and its outcome is classified by what is *proven* (docs/upstream.md):

- ``TriageApplied``: a 2xx whose body is ``{"bug": {...}}``; the bug as TestIO holds it now.
- ``TriageNotApplied``: surely not applied, send again later: no byte of the request went out
  (refused connection, connect timeout, no connection free), or a 429 (a refusal to process,
  which also paused every request of the client).
- ``TriageRefused``: will not succeed as asked: 401/403 (the token), 404 (the bug is gone), 422
  and other 4xx but 408 and 429 (an unknown reason, not allowed in this state, ...), or no token.
- ``TriageUnknown``: maybe applied: a timeout or a dropped connection after sending began, a 408,
  a 3xx, any 5xx (a proxy may answer 502/503/524 after the API applied it), a 2xx without a
  readable bug. Read the bug (``CustomerApiClient.bug``) and compare ``TriageState.shows``
  before sending again.

Reasons are our words: the request, the status, what to do; never an answer's text or a header.

Example::

    outcome = await client.send_triage(7, "reject", reason="not_reproducible", comment="iOS 18")
    match outcome:
        case TriageApplied(bug=bug): ...
        case TriageUnknown(): bug = await client.bug(7)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from testio_mirror.triage import WIRE_SEGMENT, TriageAction
from testio_mirror.upstream.bodies import body_kind, json_of, member
from testio_mirror.upstream.errors import BadResponseError
from testio_mirror.upstream.models import Bug
from testio_mirror.upstream.sending import ApiCall, SingleAttempt

OutcomeKind = Literal["applied", "not_applied", "refused", "unknown"]
RefusalCause = Literal["token", "not_found", "invalid"]


@dataclass(frozen=True, slots=True)
class TriageApplied:
    """TestIO applied the change; ``bug`` is the bug as it answered it (``bug.raw`` its JSON)."""

    kind: ClassVar[OutcomeKind] = "applied"
    bug: Bug
    status: int
    request: str  # "PUT bugs/7/accept"

    @property
    def reason(self) -> str:
        return f"{self.request}: applied (HTTP {self.status})"


@dataclass(frozen=True, slots=True)
class TriageNotApplied:
    """Surely not applied: send again later; ``retry_after`` is the pause a 429 asked for."""

    kind: ClassVar[OutcomeKind] = "not_applied"
    reason: str
    status: int | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class TriageRefused:
    """Will not succeed as asked; ``cause`` says why (the token, the bug gone, the request)."""

    kind: ClassVar[OutcomeKind] = "refused"
    reason: str
    cause: RefusalCause
    status: int | None = None


@dataclass(frozen=True, slots=True)
class TriageUnknown:
    """Maybe applied: read the bug and compare before sending again."""

    kind: ClassVar[OutcomeKind] = "unknown"
    reason: str
    status: int | None = None


TriageOutcome = TriageApplied | TriageNotApplied | TriageRefused | TriageUnknown

_CHECK_BUG = "it may have been applied: read the bug before sending it again"


def triage_call(
    bug_id: int, action: TriageAction, *, reason: str | None, comment: str | None
) -> ApiCall:
    """The PUT of one triage action; a reject carries its reason, and a comment when given."""
    body: dict[str, Any] | None = None
    if action == "reject":
        body = {"reason": reason}
        if comment:
            body["comment"] = comment
    return ApiCall("PUT", f"bugs/{bug_id}/{WIRE_SEGMENT[action]}", json_body=body)


def missing_reason(call: ApiCall) -> TriageRefused:
    """A reject without a reason, refused before anything is sent."""
    return TriageRefused(
        f"{call.where}: a rejection needs a reason (a key of GET bugs/reject_reasons); "
        "nothing was sent",
        "invalid",
    )


def no_token(call: ApiCall) -> TriageRefused:
    return TriageRefused(
        f"{call.where}: no TestIO API token, nothing was sent: set TESTIO_CUSTOMER_API_TOKEN",
        "token",
    )


def classify(call: ApiCall, attempt: SingleAttempt) -> TriageOutcome:
    """What one attempt of a triage PUT proves, in our words."""
    where = call.where
    response = attempt.response
    if response is None:
        if not attempt.sent:
            return TriageNotApplied(f"{where}: {attempt.failure} before sending; not applied")
        return TriageUnknown(f"{where}: {attempt.failure} after sending; {_CHECK_BUG}")
    status = response.status_code
    if 200 <= status < 300:
        try:
            bug = Bug.from_wire(
                member(json_of(response, "PUT", call.path), "bug", dict, "PUT", call.path)
            )
        except BadResponseError:
            # Not the error's text: it is ours, but this one line says all the caller needs.
            return TriageUnknown(
                f"{where}: HTTP {status} without a readable bug ({body_kind(response)}); "
                + _CHECK_BUG,
                status,
            )
        return TriageApplied(bug, status, where)
    if status == 429:
        return TriageNotApplied(
            f"{where}: rate limited (HTTP 429); not applied, send again after "
            f"{attempt.retry_after or 0:.0f} s",
            status,
            attempt.retry_after,
        )
    if status in (401, 403):
        return TriageRefused(
            f"{where}: TestIO refused the token (HTTP {status}): check TESTIO_CUSTOMER_API_TOKEN",
            "token",
            status,
        )
    if status == 404:
        return TriageRefused(
            f"{where}: the bug is not in TestIO (HTTP 404): it was deleted, or this token "
            "cannot see it",
            "not_found",
            status,
        )
    if 400 <= status < 500 and status != 408:
        return TriageRefused(
            f"{where}: TestIO refused it (HTTP {status}{_refusal(call, status)})", "invalid", status
        )
    return TriageUnknown(f"{where}: HTTP {status}; {_CHECK_BUG}", status)


def _refusal(call: ApiCall, status: int) -> str:
    if status != 422:
        return ""
    if call.path.endswith("/reject"):
        return ": the reject reason is unknown, or the bug cannot be rejected in its state"
    return ": the bug cannot take this action in its state"
