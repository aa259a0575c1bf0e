"""The one way testio-mirror talks to TestIO: ``CustomerApiClient``.

One client per App: it owns the ``httpx.AsyncClient`` (pooled connections, timeouts from
settings), the process-wide bound on requests in flight, the retry policy and the metrics.

- 5xx, timeouts and broken connections are retried with backoff (``retry.py``); a 429 pauses every
  request of this client for what ``Retry-After`` asks, then retries; other 4xx are not retried.
- Triage PUTs that only set a state (accept, known, fixed, exported) retry like reads; a reject,
  which adds a comment, is retried only when the request surely never reached TestIO (a refused
  connection or a 429).
- Bug requests for many tests are batched; a 524 or a timeout on a batch halves it and asks for
  the halves, down to one test, which then gets the ordinary retries.

Errors are those of ``errors.py``. The token is sent, never logged: logs show the method, path,
query, status, time and size, and ``redacted`` headers when headers are shown at all.

Example::

    async with CustomerApiClient(settings) as client:
        products = await client.products()
        async for page in client.test_pages(products[0].id):
            ...
        bugs = await client.bugs_for_tests([1, 2, 3])
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
import orjson

from testio_mirror import __version__
from testio_mirror.settings import Settings
from testio_mirror.upstream.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    UpstreamError,
    UpstreamUnavailableError,
)
from testio_mirror.upstream.health import HealthReport
from testio_mirror.upstream.metrics import RequestMetrics
from testio_mirror.upstream.models import (
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    RejectReason,
    UserStory,
    WireModel,
)
from testio_mirror.upstream.paging import ExploratoryTestPager
from testio_mirror.upstream.retry import RetryPolicy

logger = logging.getLogger("testio_mirror.upstream")

USER_AGENT = f"testio-mirror/{__version__} (+httpx/{httpx.__version__})"
HEALTH_TIMEOUT_SECONDS = 5.0
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

Retry = Literal["always", "unsent-only"]
TriageAction = Literal["accept", "reject", "mark_as_known", "mark_as_fixed", "mark_as_exported"]
M = TypeVar("M", bound=WireModel)


def redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to log: credentials replaced by ``[redacted]``."""
    return {
        name: "[redacted]" if name.lower() in _SENSITIVE_HEADERS else value
        for name, value in headers.items()
    }


class _BatchTooBigError(Exception):
    """A bug batch timed out (524 or client timeout): ask for its halves instead."""


@dataclass(frozen=True)
class BugBatch:
    """The complete bug lists of some tests, or why they could not be fetched."""

    test_ids: list[int]
    bugs: list[Bug] = field(default_factory=list)
    error: UpstreamError | None = None


# How long a prefetched product list stays good for the ``products()`` call that takes it.
PREFETCH_SECONDS = 10.0
# The counters of the prefetch request running in this context, if any.
_PREFETCH_METRICS: ContextVar[RequestMetrics | None] = ContextVar("prefetch_metrics", default=None)


@dataclass
class _Prefetch:
    """A product list asked for ahead of ``products()``."""

    started: float  # time.monotonic()
    counted: RequestMetrics  # its requests, taken into the client's metrics with the answer
    task: asyncio.Future[list[Product]]

    async def discard(self, metrics: RequestMetrics) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        metrics.absorb(self.counted)


class CustomerApiClient:
    """Async client of the TestIO Customer API v2. Use as an async context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """``transport``, ``sleep`` and ``rng`` exist for tests (fake network, no real waits)."""
        secret = settings.customer_api_token
        self._token = secret.get_secret_value() if secret is not None else None
        self._settings = settings
        self._policy = RetryPolicy(settings.retry_max_attempts, settings.retry_max_delay_seconds)
        self._limit = asyncio.Semaphore(settings.max_concurrent_requests)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._resume_at = 0.0  # monotonic time before which no request is sent (after a 429)
        self.metrics = RequestMetrics()
        self._prefetched: _Prefetch | None = None
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Token {self._token}"
        base_url = str(settings.customer_api_base_url).rstrip("/") + "/"
        self._http = httpx.AsyncClient(
            base_url=base_url,
            # Certificates are checked for https (TestIO). A plain-http base URL (the sandbox on
            # loopback) never speaks TLS, so it skips loading the CA bundle, ~40 ms per start.
            verify=not base_url.startswith("http://"),
            headers=headers,
            timeout=httpx.Timeout(settings.http_timeout_seconds),
            limits=httpx.Limits(
                max_connections=settings.max_concurrent_requests,
                max_keepalive_connections=settings.max_concurrent_requests,
            ),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None:
            await prefetched.discard(self.metrics)
        await self._http.aclose()

    @property
    def _tally(self) -> RequestMetrics:
        """Where a request made now is counted: ``metrics``, or a prefetch's own counters."""
        return _PREFETCH_METRICS.get() or self.metrics

    # -- products and features ---------------------------------------------------------------

    def prefetch_products(self) -> None:
        """Ask for the product list now, for the next ``products()`` call to take (within
        ``PREFETCH_SECONDS``): a caller that will list products and has other work first
        (loading modules, opening the mirror, taking the sync lock) lets the request travel
        meanwhile. Its requests are counted in ``metrics`` when the answer is taken, so a
        sync's products phase still shows them."""
        if self._prefetched is None:
            counted = RequestMetrics()
            task = asyncio.ensure_future(self._products_counted_in(counted))
            self._prefetched = _Prefetch(time.monotonic(), counted, task)

    async def _products_counted_in(self, counted: RequestMetrics) -> list[Product]:
        _PREFETCH_METRICS.set(counted)  # this task's own context: only its requests
        return await self._get_list("products", "products", Product)

    async def products(self) -> list[Product]:
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None:
            if time.monotonic() - prefetched.started <= PREFETCH_SECONDS:
                try:
                    return await prefetched.task
                finally:
                    self.metrics.absorb(prefetched.counted)
            await prefetched.discard(self.metrics)  # too old: ask again
        return await self._get_list("products", "products", Product)

    async def product(self, product_id: int) -> Product:
        return await self._get_one(f"products/{product_id}", "product", Product)

    async def features(self, product: Product | int) -> list[Feature]:
        """A product's features, each once; products with sections are asked per section."""
        if isinstance(product, int):
            product = await self.product(product)
        if not product.has_sections:
            try:
                return await self._get_list(f"products/{product.id}/features", "features", Feature)
            except RequestRejectedError as exc:
                if exc.status != 422:
                    raise
                # The product gained sections since it was read: read it again to learn them.
                product = await self.product(product.id)
        section_ids = product.section_ids
        if not section_ids:
            return []
        per_section = await asyncio.gather(
            *(
                self._get_list(
                    f"products/{product.id}/sections/{section_id}/features", "features", Feature
                )
                for section_id in section_ids
            )
        )
        unique: dict[int, Feature] = {}
        for features in per_section:
            for feature in features:
                unique.setdefault(feature.id, feature)
        return list(unique.values())

    async def user_stories(self, product_id: int, section_id: int | None = None) -> list[UserStory]:
        params = {"section_id": section_id} if section_id is not None else None
        return await self._get_list(
            f"products/{product_id}/user_stories", "user_stories", UserStory, params=params
        )

    # -- tests -------------------------------------------------------------------------------

    def test_pages(
        self,
        product_id: int,
        *,
        page_size: int | None = None,
        start_page: int = 1,
        check_boundaries: bool = False,
        window: int = 1,
    ) -> ExploratoryTestPager:
        """The product's tests page by page, newest first, to the real end (never capped);
        ``check_boundaries`` also recovers tests skipped because one vanished mid-listing;
        ``window`` pages are asked for at once after the first (see ``ExploratoryTestPager``)."""
        size = page_size or self._settings.page_size

        async def fetch(page: int, per_page: int) -> list[Any]:
            body = await self._get_json(
                f"products/{product_id}/exploratory_tests",
                params={"page": page, "per_page": per_page},
            )
            items: list[Any] = _member(body, "exploratory_tests", list, "GET", "exploratory_tests")
            return items

        return ExploratoryTestPager(
            fetch, size, start_page, check_boundaries=check_boundaries, window=window
        )

    async def test(self, test_id: int) -> ExploratoryTest:
        return await self._get_one(
            f"exploratory_tests/{test_id}", "exploratory_test", ExploratoryTest
        )

    # -- bugs --------------------------------------------------------------------------------

    async def bugs_for_tests(self, test_ids: Sequence[int]) -> list[Bug]:
        """Every bug of the given tests (batched).

        Raises:
            UpstreamError: the first batch that could not be fetched.
        """
        bugs: list[Bug] = []
        async for batch in self.bug_batches(test_ids):
            if batch.error is not None:
                raise batch.error
            bugs.extend(batch.bugs)
        return bugs

    async def bug_batches(self, test_ids: Sequence[int]) -> AsyncIterator[BugBatch]:
        """Bug lists of the tests, one ``BugBatch`` per batch as each completes.

        At most ``max_concurrent_requests`` batches are in flight; a failed batch is reported in
        its ``error`` and the others go on.
        """
        async for group in self.bug_batch_groups(test_ids):
            for batch in group:
                yield batch

    async def bug_batch_groups(self, test_ids: Sequence[int]) -> AsyncIterator[list[BugBatch]]:
        """Like ``bug_batches``, but every batch that completed while the caller was busy comes
        in one list: a caller that writes each list in one transaction commits less often the
        slower it writes.

        Requests go on while the caller works on a list: up to ``max_concurrent_requests`` in
        flight, and at most one and a half times that many batches in flight or finished and
        waiting for the caller, so memory stays bounded when writing is slower than fetching.
        """
        unique = list(dict.fromkeys(test_ids))
        size = self._settings.bug_batch_size
        pending_ids = [unique[i : i + size] for i in range(0, len(unique), size)]
        pending_ids.reverse()
        limit = self._settings.max_concurrent_requests
        # In flight plus finished and not yet taken: half a round more than in flight keeps
        # requests going while the caller writes, and bounds what waits in memory.
        backlog = limit + max(1, limit // 2)
        running: set[asyncio.Task[BugBatch]] = set()
        finished: list[asyncio.Task[BugBatch]] = []
        arrived = asyncio.Event()

        def launch() -> None:
            while pending_ids and len(running) < limit and len(running) + len(finished) < backlog:
                task = asyncio.create_task(self._bug_batch(pending_ids.pop()))
                running.add(task)
                task.add_done_callback(landed)

        def landed(task: asyncio.Task[BugBatch]) -> None:
            running.discard(task)
            if not task.cancelled():
                finished.append(task)
                arrived.set()
                launch()

        try:
            launch()
            while running or finished:
                if not finished:
                    arrived.clear()
                    await arrived.wait()
                    continue
                group, finished[:] = finished[:], []
                launch()
                yield [task.result() for task in group]
        finally:
            pending_ids.clear()
            for task in finished:
                task.exception()  # a caller that stopped early leaves them: mark them seen
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _bug_batch(self, test_ids: list[int]) -> BugBatch:
        try:
            return BugBatch(test_ids, await self._bugs_of(test_ids))
        except UpstreamError as exc:
            return BugBatch(test_ids, error=exc)

    async def _bugs_of(self, test_ids: list[int]) -> list[Bug]:
        params = {"filter_test_cycle_ids": ",".join(str(t) for t in test_ids)}
        try:
            return await self._get_list(
                "bugs", "bugs", Bug, params=params, split_on_timeout=len(test_ids) > 1
            )
        except _BatchTooBigError:
            self._tally.batch_splits += 1
            half = len(test_ids) // 2
            logger.info("bug batch of %d tests timed out; asking for halves", len(test_ids))
            first, second = await asyncio.gather(
                self._bugs_of(test_ids[:half]), self._bugs_of(test_ids[half:])
            )
            return first + second

    async def bugs_for_product(self, product_id: int) -> list[Bug]:
        return await self._get_list("bugs", "bugs", Bug, params={"filter_product_ids": product_id})

    async def bug(self, bug_id: int) -> Bug:
        return await self._get_one(f"bugs/{bug_id}", "bug", Bug)

    async def reject_reasons(self) -> list[RejectReason]:
        return await self._get_list("bugs/reject_reasons", "reject_reasons", RejectReason)

    # -- triage ------------------------------------------------------------------------------

    async def accept_bug(self, bug_id: int) -> Bug:
        return await self._triage(bug_id, "accept")

    async def reject_bug(self, bug_id: int, reason: str, comment: str | None = None) -> Bug:
        body: dict[str, Any] = {"reason": reason}
        if comment:
            body["comment"] = comment
        return await self._triage(bug_id, "reject", body, retry="unsent-only")

    async def mark_bug_as_known(self, bug_id: int) -> Bug:
        return await self._triage(bug_id, "mark_as_known")

    async def mark_bug_as_fixed(self, bug_id: int) -> Bug:
        return await self._triage(bug_id, "mark_as_fixed")

    async def mark_bug_as_exported(self, bug_id: int) -> Bug:
        return await self._triage(bug_id, "mark_as_exported")

    async def _triage(
        self,
        bug_id: int,
        action: TriageAction,
        body: dict[str, Any] | None = None,
        retry: Retry = "always",
    ) -> Bug:
        path = f"bugs/{bug_id}/{action}"
        answer = await self._request_json("PUT", path, json_body=body, retry=retry)
        return Bug.from_wire(_member(answer, "bug", dict, "PUT", path))

    # -- health ------------------------------------------------------------------------------

    async def check_health(self) -> HealthReport:
        """One small authenticated request with a short timeout and no retries."""
        now = datetime.now(UTC)
        if self._token is None:
            return HealthReport(
                "unauthorized", now, None, "no token: set TESTIO_CUSTOMER_API_TOKEN"
            )
        started = time.perf_counter()
        try:
            async with self._limit:
                response = await self._http.get(
                    "bugs/reject_reasons", timeout=HEALTH_TIMEOUT_SECONDS
                )
                self._count(response)
        except httpx.TransportError as exc:
            self._tally.requests += 1
            self._tally.failures += 1
            latency = (time.perf_counter() - started) * 1000
            return HealthReport("unreachable", now, latency, f"{_describe(exc)}: check the network")
        latency = (time.perf_counter() - started) * 1000
        status = response.status_code
        if status < 400:
            return HealthReport("healthy", now, latency, f"HTTP {status}")
        if status in (401, 403):
            detail = f"HTTP {status}: check TESTIO_CUSTOMER_API_TOKEN"
            return HealthReport("unauthorized", now, latency, detail)
        if status == 429:
            return HealthReport("rate_limited", now, latency, "HTTP 429: TestIO asks to slow down")
        detail = f"HTTP {status}: TestIO is not answering normally"
        return HealthReport("unreachable", now, latency, detail)

    # -- the request machinery ---------------------------------------------------------------

    async def _get_list(
        self,
        path: str,
        key: str,
        model: type[M],
        *,
        params: Mapping[str, Any] | None = None,
        split_on_timeout: bool = False,
    ) -> list[M]:
        body = await self._get_json(path, params=params, split_on_timeout=split_on_timeout)
        return [model.from_wire(item) for item in _member(body, key, list, "GET", path)]

    async def _get_one(self, path: str, key: str, model: type[M]) -> M:
        body = await self._get_json(path)
        return model.from_wire(_member(body, key, dict, "GET", path))

    async def _get_json(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        split_on_timeout: bool = False,
    ) -> Any:
        return await self._request_json(
            "GET", path, params=params, split_on_timeout=split_on_timeout
        )

    async def _request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        retry: Retry = "always",
        split_on_timeout: bool = False,
    ) -> Any:
        response = await self._send(method, path, params, json_body, retry, split_on_timeout)
        try:
            return decode_json(response)
        except (json.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "no content type")
            raise BadResponseError(
                f"{method} {path}: the answer is not JSON ({kind}, "
                f"starting {self._scrub(response.text)[:80]!r}); is "
                "TESTIO_CUSTOMER_API_BASE_URL right?",
                method=method,
                path=path,
                status=response.status_code,
            ) from None

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        retry: Retry,
        split_on_timeout: bool,
    ) -> httpx.Response:
        if self._token is None:
            raise AuthError(
                "no TestIO API token: set TESTIO_CUSTOMER_API_TOKEN", method=method, path=path
            )
        attempt = 0
        while True:
            attempt += 1
            last_status: int | None = None
            await self._wait_out_rate_limit()
            started = time.perf_counter()
            try:
                async with self._limit:
                    response = await self._http.request(method, path, params=params, json=json_body)
                    self._count(response)
            except httpx.TransportError as exc:
                self._tally.requests += 1
                self._tally.failures += 1
                timed_out = isinstance(exc, httpx.TimeoutException)
                if split_on_timeout and timed_out:
                    raise _BatchTooBigError from None
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                problem = _describe(exc)
                if retry == "unsent-only" and not unsent:
                    raise _maybe_applied(method, path, problem, None) from None
            else:
                elapsed = (time.perf_counter() - started) * 1000
                status = response.status_code
                logger.debug(
                    "%s %s %s -> %d in %.1f ms (%d B)",
                    method,
                    path,
                    dict(params or {}),
                    status,
                    elapsed,
                    response.num_bytes_downloaded,
                )
                if status < 400:
                    return response
                if status == 429:
                    self._rate_limited(response, method, path, attempt)
                    continue
                if status < 500:
                    raise self._client_error(response, method, path)
                if split_on_timeout and status == 524:
                    raise _BatchTooBigError
                problem = f"HTTP {status}"
                last_status = status
                if retry == "unsent-only":
                    raise _maybe_applied(method, path, problem, status)
            if attempt >= self._policy.max_attempts:
                raise UpstreamUnavailableError(
                    f"{method} {path}: {problem} after {attempt} attempts; TestIO is unavailable "
                    "or unreachable: try again later, and check the network and "
                    "TESTIO_CUSTOMER_API_BASE_URL",
                    method=method,
                    path=path,
                    status=last_status,
                )
            delay = self._policy.backoff(attempt, self._rng)
            self._tally.retries += 1
            logger.warning(
                "%s %s: %s; retry %d of %d in %.2f s",
                method,
                path,
                problem,
                attempt,
                self._policy.max_attempts - 1,
                delay,
            )
            await self._sleep(delay)

    def _count(self, response: httpx.Response) -> None:
        metrics = self._tally
        metrics.requests += 1
        metrics.statuses[response.status_code] += 1
        metrics.bytes_received += response.num_bytes_downloaded
        if response.status_code == 429:
            metrics.rate_limited += 1
        elif response.status_code >= 500:
            metrics.failures += 1

    def _rate_limited(self, response: httpx.Response, method: str, path: str, attempt: int) -> None:
        header = response.headers.get("retry-after")
        delay = self._policy.rate_limit_delay(header)
        if attempt >= self._policy.max_attempts:
            raise RateLimitedError(
                f"{method} {path}: still rate limited (429) after {attempt} attempts; wait "
                f"{delay:.0f} s and try again, or lower TESTIO_MAX_CONCURRENT_REQUESTS",
                method=method,
                path=path,
                retry_after=delay,
            )
        self._tally.retries += 1
        # Every request of this client waits, not only this one: hammering on is what got us here.
        self._resume_at = max(self._resume_at, time.monotonic() + delay)
        logger.warning(
            "%s %s: rate limited (429, Retry-After %r); pausing requests for %.2f s",
            method,
            path,
            header,
            delay,
        )

    async def _wait_out_rate_limit(self) -> None:
        wait = self._resume_at - time.monotonic()
        if wait > 0:
            self._tally.rate_limit_wait_seconds += wait
            await self._sleep(wait)

    def _client_error(self, response: httpx.Response, method: str, path: str) -> UpstreamError:
        status = response.status_code
        reason = _error_text(response, self._scrub)
        where = f"{method} {path}"
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
            f"{where}: TestIO refused the request (HTTP {status}): {reason}",
            method=method,
            path=path,
            status=status,
        )

    def _scrub(self, text: str) -> str:
        """``text`` with the token cut out, in case a server echoes it back."""
        return text.replace(self._token, "[redacted]") if self._token else text


def _maybe_applied(
    method: str, path: str, problem: str, status: int | None
) -> UpstreamUnavailableError:
    return UpstreamUnavailableError(
        f"{method} {path}: {problem}; not retried because it may have been applied: check the "
        "bug before trying again",
        method=method,
        path=path,
        status=status,
    )


def _member(body: Any, key: str, kind: type, method: str, path: str) -> Any:
    """``body[key]`` when body is an object holding a ``kind`` there, else a BadResponseError."""
    if not isinstance(body, dict) or not isinstance(body.get(key), kind):
        raise BadResponseError(
            f"{method} {path}: expected an object with {kind.__name__} {key!r}, got {_shape(body)}",
            method=method,
            path=path,
        )
    return body[key]


def decode_json(response: httpx.Response) -> Any:
    """The response's JSON. orjson reads pages of bugs faster than ``json`` (10,000 bugs: 0.29 s
    of CPU down to 0.10 s in a profile of ``sync --bugs``); a body it cannot read (not UTF-8,
    say) goes through httpx's own decoding. orjson reads integers beyond 64 bits as floats:
    TestIO's ids and counts are far below that.

    Raises:
        json.JSONDecodeError, UnicodeDecodeError: the body is not JSON.
    """
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.json()


def _shape(body: Any) -> str:
    if isinstance(body, dict):
        return "an object with keys " + ", ".join(sorted(body)[:5])
    return type(body).__name__


def _error_text(response: httpx.Response, scrub: Callable[[str], str]) -> str:
    # Scrub before cutting: a token cut in half by the limit would no longer be found.
    try:
        body = decode_json(response)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return scrub(response.text)[:200] or "no reason given"
    if isinstance(body, dict):
        for key in ("error", "message", "errors"):
            if key in body:
                return scrub(str(body[key]))[:200]
    return scrub(str(body))[:200]


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"connection failed ({type(exc).__name__})"
