"""Sending one call to TestIO, in layers, outermost first (the shape of httpx's own ``send``):

- ``Sender.send``: refuses a call without a token, then hands it to the retries;
- retries: more attempts per the ``RetryPolicy`` after a 5xx, a timeout or a broken connection
  (with backoff) or a 429 (after the pause it sets), and the final error once they run out;
- pacing: a place among the requests in flight, then the client-wide pause after a 429
  (checked once the place is taken, so requests that queued before the 429 wait too);
- one attempt: the exchange under one deadline (connect, headers and the whole body: a server
  trickling its answer cannot hold it longer), its metrics and log line, its answer mapped to a
  response or to the errors of ``errors.py``.

A write (``send_single``) is one attempt and never repeated: it waits out the 429 pause inside the
bound on requests in flight like any call, a 429 it meets pauses the others, and it tells whether
any byte of the request may have gone out (httpx's ``trace`` extension), which is how the caller
knows a failed write surely was not applied. A call made with ``raise_on_524`` raises
``TooBigError`` on a 524 instead of retrying, so that its caller can ask for less; calls that
share a ``TimeoutBudget`` stop with ``EndpointDownError`` once they met its number of timeouts.

Error messages are ours: the request, the status and a reason in our words. No text of an
answer (body or header) is ever copied into a message or a log line, so nothing a server echoes
back (a token in any form) can reach a user.

Example::

    sender = Sender(http_client_for(settings), token=token, policy=policy, max_in_flight=10,
                    tally=lambda: metrics, deadline=settings.http_timeout_seconds)
    response = await sender.send(ApiCall("GET", "products"))
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from testio_mirror import __version__
from testio_mirror.settings import Settings
from testio_mirror.upstream.errors import (
    AuthError,
    EndpointDownError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    UpstreamError,
    UpstreamUnavailableError,
)
from testio_mirror.upstream.metrics import RequestMetrics
from testio_mirror.upstream.retry import RetryPolicy, TimeoutBudget, parse_retry_after

logger = logging.getLogger("testio_mirror.upstream")

USER_AGENT = f"testio-mirror/{__version__} (+httpx/{httpx.__version__})"
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


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


class AnswerTooLateError(Exception):
    """No complete answer within the attempt's deadline (a server trickling its body)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds


def describe(exc: httpx.TransportError | AnswerTooLateError) -> str:
    """A transport failure in a few words, without its message (which may quote anything)."""
    if isinstance(exc, AnswerTooLateError):
        return f"timed out ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"connection failed ({type(exc).__name__})"


# A refusal's reason, in our words: the API's error texts are not copied (see the module).
_REFUSALS = {
    400: "the request was malformed",
    405: "the method is not allowed there",
    409: "it conflicts with the current state",
    410: "it is gone",
    413: "the request is too large",
    422: "it cannot be done as asked",
}


@dataclass(frozen=True)
class ApiCall:
    """One call to the API, as the sending layers need it."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json_body: Any = None
    raise_on_524: bool = False  # a 524 raises TooBigError, never retried
    timeout: float | None = None  # None: the client's timeout
    timeouts: TimeoutBudget | None = None  # shared by calls to one endpoint (see the module)

    @property
    def where(self) -> str:
        """``"GET products/1"``: how messages name the call."""
        return f"{self.method} {self.path}"


class TooBigError(Exception):
    """A call made with ``raise_on_524`` was answered 524 (the API's "too big"): ask for
    less instead."""


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


@dataclass(frozen=True)
class SingleAttempt:
    """What one attempt of ``Sender.send_single`` came to: an answer (any status), or a failure
    in our words; ``sent`` is False only when no byte of the request can have gone out;
    ``retry_after`` is the pause a 429 set."""

    response: httpx.Response | None
    failure: str | None
    sent: bool
    retry_after: float | None = None


class _SendWatch:
    """httpx's ``trace`` extension for one request: notes whether sending its headers began."""

    def __init__(self) -> None:
        self.traced = False  # the transport reports its steps (httpcore does; a mock does not)
        self.sending = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        self.traced = True
        if ".send_request_headers." in event:
            self.sending = True

    def maybe_sent(self, exc: httpx.TransportError | AnswerTooLateError) -> bool:
        """Whether any byte of the request may have reached the server before ``exc``."""
        if self.traced:
            return self.sending
        # A transport that does not report: only failures before any connection prove it.
        return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


class RateLimitPause:
    """The moment before which no request of a client is sent, moved on by each 429."""

    def __init__(self) -> None:
        self.resume_at = 0.0  # time.monotonic()

    def extend(self, seconds: float) -> None:
        self.resume_at = max(self.resume_at, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.resume_at - time.monotonic()


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
        deadline: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """``tally()`` answers where a request made now is counted; ``deadline`` is the most
        one attempt may take, connect to last byte (a call's own ``timeout`` replaces it);
        ``sleep`` and ``rng`` exist for tests (no real waits, known jitter)."""
        self._http = http
        self._deadline = deadline
        self._token = token
        self._policy = policy
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pause = RateLimitPause()
        self._tally = tally
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def send(self, call: ApiCall) -> httpx.Response:
        """The answer to ``call``, with a status below 400.

        Raises:
            AuthError, NotFoundError, RequestRejectedError: refused (no token, or a 4xx).
            RateLimitedError, UpstreamUnavailableError: still failing after every attempt.
            TooBigError: a 524, when ``call.raise_on_524``.
            EndpointDownError: ``call.timeouts`` ran out (an ``UpstreamUnavailableError``).
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
            httpx.TransportError, AnswerTooLateError: no (complete) answer came.
        """
        async with self._in_flight:
            return await self._exchange(call)

    async def send_single(self, call: ApiCall) -> SingleAttempt:
        """One attempt, never repeated (a write): the token check, a place among the requests in
        flight, the 429 pause waited out, one exchange under the deadline, counted. A 429 answer
        pauses every request of this client, as a read's does. Returns the answer whatever its
        status, or the failure and whether any byte of the request may have gone out.

        Raises:
            AuthError: no token (nothing was sent).
        """
        if self._token is None:
            raise AuthError(
                "no TestIO API token: set TESTIO_CUSTOMER_API_TOKEN",
                method=call.method,
                path=call.path,
            )
        watch = _SendWatch()
        failed: SingleAttempt | None = None
        async with self._in_flight:
            await self._wait_out_pause()
            try:
                response = await self._exchange(call, trace=watch)
            except (httpx.TransportError, AnswerTooLateError) as exc:
                failed = SingleAttempt(None, describe(exc), sent=watch.maybe_sent(exc))
        if failed is not None:
            # Returned outside the handler: no chain back to httpx's exception and its text.
            return failed
        if response.status_code == 429:
            delay = self._pause_for(call, response.headers.get("retry-after"))
            return SingleAttempt(response, None, sent=True, retry_after=delay)
        return SingleAttempt(response, None, sent=True)

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
        self._pause_for(call, throttled.retry_after)

    def _pause_for(self, call: ApiCall, retry_after: str | None) -> float:
        """Pause every request of this client after a 429 (hammering on is what got us here);
        the delay set."""
        delay = self._policy.rate_limit_delay(retry_after)
        self._pause.extend(delay)
        # The header's value is not shown: it is the server's text, and could hold anything.
        asked = "unreadable or absent" if parse_retry_after(retry_after) is None else "read"
        logger.warning(
            "%s: rate limited (429, Retry-After %s); pausing requests for %.2f s",
            call.where,
            asked,
            delay,
        )
        return delay

    async def _back_off(self, call: ApiCall, failed: _AttemptFailedError, attempt: int) -> None:
        if failed.status == 524 and call.raise_on_524:
            raise TooBigError(call.where)
        if failed.slow and call.timeouts is not None:
            call.timeouts.spend()
            if call.timeouts.exhausted:
                raise self._endpoint_down(call)
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
        async with self._in_flight:
            await self._wait_out_pause()
            if call.timeouts is not None and call.timeouts.exhausted:
                raise self._endpoint_down(call)  # another call used the budget up meanwhile
            return await self._send_once(call)

    async def _wait_out_pause(self) -> None:
        # Checked once the place is taken: a request queued before a 429 waits it out too.
        # A pause extended meanwhile (another 429) is waited for again.
        waited_for = None
        while (wait := self._pause.remaining()) > 0 and self._pause.resume_at != waited_for:
            waited_for = self._pause.resume_at
            self._tally().rate_limit_wait_seconds += wait
            await self._sleep(wait)

    @staticmethod
    def _endpoint_down(call: ApiCall) -> EndpointDownError:
        spent = call.timeouts.limit if call.timeouts is not None else 0
        return EndpointDownError(
            f"{call.where}: timed out {spent} times in this run, so the endpoint is treated as "
            "down until the next sync, which fetches what is missing; if it lasts, check "
            "TestIO's status and TESTIO_HTTP_TIMEOUT_SECONDS",
            method=call.method,
            path=call.path,
        )

    # -- one attempt -------------------------------------------------------------------------

    async def _send_once(self, call: ApiCall) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._exchange(call)
        except (httpx.TransportError, AnswerTooLateError) as exc:
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            slow = isinstance(exc, httpx.TimeoutException | AnswerTooLateError)
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

    async def _exchange(self, call: ApiCall, trace: _SendWatch | None = None) -> httpx.Response:
        """One request under one deadline, counted in the metrics (a transport failure or a
        missed deadline as a failure).

        Raises:
            httpx.TransportError: no answer came.
            AnswerTooLateError: no complete answer within the deadline.
        """
        timeout = httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout
        deadline = self._deadline if call.timeout is None else call.timeout
        try:
            # httpx's timeouts bound each read; this bounds the whole exchange, so a server
            # sending a few bytes just often enough cannot hold the attempt.
            async with asyncio.timeout(deadline) as limit:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json_body,
                    timeout=timeout,
                    extensions={"trace": trace} if trace is not None else None,
                )
        except (httpx.TransportError, TimeoutError) as exc:
            metrics = self._tally()
            metrics.requests += 1
            metrics.failures += 1
            if isinstance(exc, TimeoutError):
                if not limit.expired():
                    raise
                raise AnswerTooLateError(deadline) from None
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
        reason = f": {_REFUSALS[status]}" if status in _REFUSALS else ""
        return RequestRejectedError(
            f"{where}: TestIO refused the request (HTTP {status}{reason})",
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
