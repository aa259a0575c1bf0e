"""Fault injection and the request log: the sandbox's knobs for testing a client under stress.

A ``FaultRule`` matches requests by path pattern (``fnmatch`` against the path below
``/customer/v2/``, e.g. ``"bugs"`` or ``"products/*/exploratory_tests"``) and optional method, and
fires a given number of times (``times=None``: until cleared). Rules are checked in the order they
were added; the first one with shots left fires.

Example::

    plan = FaultPlan()
    plan.add(FaultRule(kind="rate_limit", path="products/*", times=2, retry_after="1"))
    plan.add(FaultRule(kind="error", path="bugs", status=524, times=1))
    plan.add(FaultRule(kind="trickle", path="bugs", trickle_bytes=36, trickle_interval=0.35))
    plan.add(FaultRule(kind="echo_secret", status=422, echo_form="base64"))
    plan.add(FaultRule(kind="apply_then_error", method="PUT", path="bugs/*/accept", status=503))
"""

from __future__ import annotations

import base64
import fnmatch
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "rate_limit",
    "error",
    "hang",
    "malformed",
    "truncated",
    "disconnect",
    "trickle",
    "echo_secret",
    "apply_then_hang",
    "apply_then_error",
    "apply_then_disconnect",
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limit",  # 429, with Retry-After when retry_after is set
    "error",  # any status, 500 by default (502, 503, 524 ...)
    "hang",  # wait hang_seconds before answering normally: longer than a client's timeout
    "malformed",  # 200 with a body that is not JSON
    "truncated",  # 200 whose body stops halfway, then the connection closes
    "disconnect",  # the status line and headers, then the connection closes: no body
    "trickle",  # the normal answer, trickle_bytes every trickle_interval seconds (slow-loris)
    "echo_secret",  # an error whose body echoes a secret in the form echo_form (a leaky server)
    # The request is answered (a write is applied), then the answer is lost: held hang_seconds
    # (longer than a client's deadline), replaced by an error of status, or cut off.
    "apply_then_hang",
    "apply_then_error",
    "apply_then_disconnect",
)
APPLYING_KINDS: frozenset[FaultKind] = frozenset(
    {"apply_then_hang", "apply_then_error", "apply_then_disconnect"}
)

# How an ``echo_secret`` fault alters the secret it echoes, as leaky servers and proxies do.
EchoForm = Literal["plain", "base64", "suffix", "upper", "lower", "reversed"]
ECHO_FORMS: tuple[EchoForm, ...] = ("plain", "base64", "suffix", "upper", "lower", "reversed")
SUFFIX_LENGTH = 12  # the "suffix" form: the secret's last characters


@dataclass
class FaultRule:
    """One fault to inject: what, where, how many times."""

    kind: FaultKind
    path: str = "*"
    method: str | None = None
    times: int | None = 1
    status: int = 500
    retry_after: str | None = None
    hang_seconds: float = 60.0
    trickle_bytes: int = 36
    trickle_interval: float = 0.35
    echo_form: EchoForm = "plain"
    echo_text: str | None = None  # the secret to echo; None: the token the request presented
    fired: int = field(default=0)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1, or None for a fault that never runs out")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.hang_seconds < 0:
            raise ValueError("hang_seconds must be >= 0")
        if self.trickle_bytes < 1 or self.trickle_interval < 0:
            raise ValueError("trickle_bytes must be >= 1 and trickle_interval >= 0")
        if self.echo_form not in ECHO_FORMS:
            raise ValueError(f"unknown echo_form {self.echo_form!r}; use one of {ECHO_FORMS}")
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            # JSON callers send numbers; a header value is text.
            if isinstance(self.retry_after, bool) or not isinstance(self.retry_after, int):
                raise ValueError("retry_after must be seconds or an HTTP date")
            self.retry_after = str(self.retry_after)
        self.path = self.path.strip("/")
        self.method = self.method.upper() if self.method else None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def echoed(self, presented: str) -> str:
        """The secret an ``echo_secret`` fault sends back (``echo_text``, else the token
        ``presented``), altered as ``echo_form`` says."""
        secret = self.echo_text if self.echo_text is not None else presented
        match self.echo_form:
            case "base64":
                return base64.b64encode(secret.encode()).decode()
            case "suffix":
                return secret[-SUFFIX_LENGTH:]
            case "upper":
                return secret.upper()
            case "lower":
                return secret.lower()
            case "reversed":
                return secret[::-1]
        return secret

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """The active fault rules, safe to change from any thread while the server runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this request, with its shot counted, or None."""
        with self._lock:
            for rule in self._rules:
                if not rule.exhausted and rule.matches(method, path):
                    rule.fired += 1
                    return rule
            return None


@dataclass(frozen=True)
class RequestRecord:
    """One API request the sandbox answered; ``path`` is below ``/customer/v2/``, ``status`` is 0
    when the connection closed before a status line, ``at`` is the Unix time it arrived."""

    method: str
    path: str
    query: str
    status: int
    ms: float
    fault: str | None
    at: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Every API request, in arrival order (admin requests are not logged)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def writes(self, bug_id: int | None = None) -> list[RequestRecord]:
        """The ``PUT`` requests (the triage writes), or those to one bug."""
        pattern = "bugs/*/*" if bug_id is None else f"bugs/{bug_id}/*"
        return [r for r in self.records(pattern) if r.method == "PUT"]

    def records(self, path: str | None = None) -> list[RequestRecord]:
        """All records, or those whose path matches the ``fnmatch`` pattern ``path``."""
        with self._lock:
            records = list(self._records)
        if path is None:
            return records
        return [r for r in records if fnmatch.fnmatchcase(r.path, path)]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
