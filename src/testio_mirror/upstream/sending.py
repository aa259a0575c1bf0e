"""Sending one call to TestIO, in layers, outermost first (the shape of httpx's own ``send``):

- ``Sender.send``: refuses a call without a token, then hands it to the retries;
- retries: more attempts per the ``RetryPolicy`` after a 5xx, a timeout or a broken connection
  (with backoff) or a 429 (after the pause it sets), and the final error once they run out;
- pacing: the client-wide pause after a 429, then a place among the requests in flight;
- one attempt: the exchange, its metrics and log line, its answer mapped to a response or to
  the errors of ``errors.py``.

A call that may not be repeated (``retry="unsent-only"``) is retried only when it surely never
reached TestIO; a call made with ``raise_when_slow`` raises ``TooSlowError`` on a 524 or a
timeout instead of retrying, so that its caller can ask for less.

Example::

    sender = Sender(http_client_for(settings), token=token, policy=policy, max_in_flight=10,
                    tally=lambda: metrics)
    response = await sender.send(ApiCall("GET", "products"))
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from testio_mirror import __version__
from testio_mirror.settings import Settings
from testio_mirror.upstream.bodies import error_text
from testio_mirror.upstream.errors import (
    AuthError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    UpstreamError,
    UpstreamUnavailableError,
)
from testio_mirror.upstream.metrics import RequestMetrics
from testio_mirror.upstream.retry import RetryPolicy

logger = logging.getLogger("testio_mirror.upstream")

USER_AGENT = f"testio-mirror/{__version__} (+httpx/{httpx.__version__})"
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

Retry = Literal["always", "unsent-only"]


def redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to log: credentials replaced by ``[redacted]``."""
    return {
        name: "[redacted]" if name.lower() in _SENSITIVE_HEADERS else value
        for name, value in headers.items()
    }


def http_client_for(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The pooled ``httpx.AsyncClient`` of one API client: base URL, headers (the token
    included), timeouts and connection limits from ``settings``."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    secret = settings.customer_api_token
    if secret is not None:
        headers["Authorization"] = f"Token {secret.get_secret_value()}"
    base_url = str(settings.customer_api_base_url).rstrip("/") + "/"
    return httpx.AsyncClient(
        base_url=base_url,
        # Certificates are checked for https (TestIO). A plain-http base URL (the sandbox on
        # loopback) never speaks TLS, so it skips loading the CA bundle at every start.
        verify=not base_url.startswith("http://"),
        headers=headers,
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        limits=httpx.Limits(
            max_connections=settings.max_concurrent_requests,
            max_keepalive_connections=settings.max_concurrent_requests,
        ),
        transport=transport,
    )


def describe(exc: httpx.TransportError) -> str:
    """A transport failure in a few words, without its message (which may quote anything)."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"connection failed ({type(exc).__name__})"


@dataclass(frozen=True)
class ApiCall:
    """One call to the API, as the sending layers need it."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json_body: Any = None
    retry: Retry = "always"
    raise_when_slow: bool = False  # a 524 or a timeout raises TooSlowError, never retried
    timeout: float | None = None  # None: the client's timeout

    @property
    def where(self) -> str:
        """``"GET products/1"``: how messages name the call."""
        return f"{self.method} {self.path}"


class TooSlowError(Exception):
    """A call made with ``raise_when_slow`` met a 524 or a timeout: ask for less instead."""


class _ThrottledError(Exception):
    """One attempt was answered 429."""

    def __init__(self, retry_after: str | None) -> None:
        super().__init__("HTTP 429")
        self.retry_after = retry_after  # the raw header, if any


class _AttemptFailedError(Exception):
    """One attempt failed in a way another may not: a 5xx, a timeout, a broken connection."""

    def __init__(self, problem: str, status: int | None, *, slow: bool, maybe_sent: bool) -> None:
        super().__init__(problem)
        self.problem = problem
        self.status = status  # the HTTP status, None when no answer came
        self.slow = slow  # a 524 or a timeout
        self.maybe_sent = maybe_sent  # TestIO may have received (and applied) the request


class RateLimitPause:
    """The moment before which no request of a client is sent, moved on by each 429."""

    def __init__(self) -> None:
        self._resume_at = 0.0  # time.monotonic()

    def extend(self, seconds: float) -> None:
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self._resume_at - time.monotonic()


class Sender:
    """Sends ``ApiCall``s through ``http`` for one API client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token: str | None,
        policy: RetryPolicy,
        max_in_flight: int,
        tally: Callable[[], RequestMetrics],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """``tally()`` answers where a request made now is counted; ``sleep`` and ``rng`` exist
        for tests (no real waits, known jitter)."""
        self._http = http
        self._token = token
        self._policy = policy
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pause = RateLimitPause()
        self._tally = tally
        self._sleep = sleep
        self._rng = rng or random.Random()

    def scrub(self, text: str) -> str:
        """``text`` with the token cut out, in case a server echoes it back."""
        return text.replace(self._token, "[redacted]") if self._token else text

    async def send(self, call: ApiCall) -> httpx.Response:
        """The answer to ``call``, with a status below 400.

        Raises:
            AuthError, NotFoundError, RequestRejectedError: refused (no token, or a 4xx).
            RateLimitedError, UpstreamUnavailableError: still failing after every attempt.
            TooSlowError: a 524 or a timeout, when ``call.raise_when_slow``.
        """
        if self._token is None:
            raise AuthError(
                "no TestIO API token: set TESTIO_CUSTOMER_API_TOKEN",
                method=call.method,
                path=call.path,
            )
        return await self._send_retrying(call)

    async def send_unchecked(self, call: ApiCall) -> httpx.Response:
        """One attempt inside the bound on requests in flight, counted, whatever its status:
        no pause, no retries (the health check judges the answer itself).

        Raises:
            httpx.TransportError: no answer came.
        """
        async with self._in_flight:
            return await self._exchange(call)

    # -- retries -----------------------------------------------------------------------------

    async def _send_retrying(self, call: ApiCall) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._send_paced(call)
            except (_ThrottledError, _AttemptFailedError) as exc:
                failure = exc
            # Outside the handler: the final errors carry no chain back to httpx's exceptions,
            # whose messages may quote what the server sent.
            if isinstance(failure, _ThrottledError):
                self._pause_after_429(call, failure, attempt)
            else:
                await self._back_off(call, failure, attempt)

    def _pause_after_429(self, call: ApiCall, throttled: _ThrottledError, attempt: int) -> None:
        delay = self._policy.rate_limit_delay(throttled.retry_after)
        if attempt >= self._policy.max_attempts:
            raise RateLimitedError(
                f"{call.where}: still rate limited (429) after {attempt} attempts; wait "
                f"{delay:.0f} s and try again, or lower TESTIO_MAX_CONCURRENT_REQUESTS",
                method=call.method,
                path=call.path,
                retry_after=delay,
            )
        self._tally().retries += 1
        # Every request of this client waits, not only this one: hammering on is what got us here.
        self._pause.extend(delay)
        logger.warning(
            "%s: rate limited (429, Retry-After %r); pausing requests for %.2f s",
            call.where,
            throttled.retry_after,
            delay,
        )

    async def _back_off(self, call: ApiCall, failed: _AttemptFailedError, attempt: int) -> None:
        if failed.slow and call.raise_when_slow:
            raise TooSlowError(call.where)
        if failed.maybe_sent and call.retry == "unsent-only":
            raise UpstreamUnavailableError(
                f"{call.where}: {failed.problem}; not retried because it may have been applied: "
                "check the bug before trying again",
                method=call.method,
                path=call.path,
                status=failed.status,
            )
        if attempt >= self._policy.max_attempts:
            raise UpstreamUnavailableError(
                f"{call.where}: {failed.problem} after {attempt} attempts; TestIO is unavailable "
                "or unreachable: try again later, and check the network and "
                "TESTIO_CUSTOMER_API_BASE_URL",
                method=call.method,
                path=call.path,
                status=failed.status,
                connected=failed.maybe_sent,
            )
        delay = self._policy.backoff(attempt, self._rng)
        self._tally().retries += 1
        logger.warning(
            "%s: %s; retry %d of %d in %.2f s",
            call.where,
            failed.problem,
            attempt,
            self._policy.max_attempts - 1,
            delay,
        )
        await self._sleep(delay)

    # -- pacing ------------------------------------------------------------------------------

    async def _send_paced(self, call: ApiCall) -> httpx.Response:
        wait = self._pause.remaining()
        if wait > 0:
            self._tally().rate_limit_wait_seconds += wait
            await self._sleep(wait)
        async with self._in_flight:
            return await self._send_once(call)

    # -- one attempt -------------------------------------------------------------------------

    async def _send_once(self, call: ApiCall) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._exchange(call)
        except httpx.TransportError as exc:
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            slow = isinstance(exc, httpx.TimeoutException)
            raise _AttemptFailedError(
                describe(exc), None, slow=slow, maybe_sent=not unsent
            ) from None
        logger.debug(
            "%s %s -> %d in %.1f ms (%d B)",
            call.where,
            dict(call.params or {}),
            response.status_code,
            (time.perf_counter() - started) * 1000,
            response.num_bytes_downloaded,
        )
        return self._checked(call, response)

    async def _exchange(self, call: ApiCall) -> httpx.Response:
        """One request, counted in the metrics (a transport failure as a failure)."""
        timeout = httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json_body, timeout=timeout
            )
        except httpx.TransportError:
            metrics = self._tally()
            metrics.requests += 1
            metrics.failures += 1
            raise
        _count(self._tally(), response)
        return response

    def _checked(self, call: ApiCall, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status < 400:
            return response
        if status == 429:
            raise _ThrottledError(response.headers.get("retry-after"))
        if status < 500:
            raise self._refusal(call, response)
        raise _AttemptFailedError(f"HTTP {status}", status, slow=status == 524, maybe_sent=True)

    def _refusal(self, call: ApiCall, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        where, method, path = call.where, call.method, call.path
        if status in (401, 403):
            logger.debug("%s refused with headers %s", where, redacted(response.request.headers))
            return AuthError(
                f"{where}: TestIO refused the token (HTTP {status}): check "
                "TESTIO_CUSTOMER_API_TOKEN",
                method=method,
                path=path,
                status=status,
            )
        if status == 404:
            return NotFoundError(
                f"{where}: not found (HTTP 404)", method=method, path=path, status=status
            )
        return RequestRejectedError(
            f"{where}: TestIO refused the request (HTTP {status}): "
            f"{error_text(response, self.scrub)}",
            method=method,
            path=path,
            status=status,
        )


def _count(metrics: RequestMetrics, response: httpx.Response) -> None:
    metrics.requests += 1
    metrics.statuses[response.status_code] += 1
    metrics.bytes_received += response.num_bytes_downloaded
    if response.status_code == 429:
        metrics.rate_limited += 1
    elif response.status_code >= 500:
        metrics.failures += 1
