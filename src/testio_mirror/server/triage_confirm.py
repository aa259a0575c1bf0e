"""A person confirms triage writes (``TESTIO_MIRROR_WRITES=confirm``).

A client that declares the elicitation capability gets a form listing the bugs and actions (the
SDK's ``Resolve``/``Elicit`` asks it in the protocol the client speaks: a request mid-call before
2026-07-28, an ``input_required`` round from then on). A client without it gets
``needs_confirmation``: a summary and a one-time token bound to exactly that change set, valid
``TOKEN_LIFETIME``, which the agent passes back as ``confirm`` once the person agreed.

Tokens live in the server's memory only: a restart forgets them (a confirmation, not data), and
they are kept as digests, so a token is never held in clear after it is handed out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit
from pydantic import BaseModel, Field

TOKEN_LIFETIME = timedelta(minutes=10)
MAX_TOKENS = 1000  # outstanding tokens kept; the oldest go first

# Why no question was put to the person: a resolver's plain answer.
NoQuestionReason = Literal["writes_on", "dry_run", "token_given", "no_elicitation", "invalid"]


class NoQuestion(BaseModel):
    """The confirmation resolver decided not to ask, and why."""

    why: NoQuestionReason


class TriageConfirmation(BaseModel):
    """The form a person fills in: one box to tick."""

    send: bool = Field(description="Send these triage changes to TestIO")


def elicitation_declared(ctx: Context[Any, Any]) -> bool:
    """Whether the client declared form elicitation (a bare ``elicitation: {}`` counts)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def ask(lines: Sequence[str], *, heading: str) -> Elicit[TriageConfirmation]:
    """The question for ``lines`` (one per change)."""
    body = "\n".join(f"- {line}" for line in lines)
    return Elicit(f"{heading}\n{body}", TriageConfirmation)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


class ConfirmationTokens:
    """One-time tokens, each bound to the digest of one change set."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._live: dict[str, tuple[str, float]] = {}  # sha256(token) -> (digest, deadline)

    def issue(self, digest: str) -> IssuedToken:
        self._forget_expired()
        while len(self._live) >= MAX_TOKENS:
            self._live.pop(next(iter(self._live)))
        token = secrets.token_urlsafe(18)
        self._live[_key(token)] = (digest, self._monotonic() + TOKEN_LIFETIME.total_seconds())
        return IssuedToken(token, datetime.now(UTC) + TOKEN_LIFETIME)

    def redeem(self, token: str, digest: str) -> bool:
        """Whether ``token`` was issued for ``digest`` and is still valid; used up either way
        when it matches a token, so a wrong change set cannot be tried twice with it."""
        self._forget_expired()
        entry = self._live.pop(_key(token), None)
        return entry is not None and secrets.compare_digest(entry[0], digest)

    def _forget_expired(self) -> None:
        now = self._monotonic()
        for key in [k for k, (_, deadline) in self._live.items() if deadline <= now]:
            del self._live[key]


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
