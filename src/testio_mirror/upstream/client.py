"""The one way testio-mirror talks to TestIO: ``CustomerApiClient``, one method per endpoint.

One client per App: it owns the ``httpx.AsyncClient`` (pooled connections, timeouts from
settings), the ``Sender`` that sends every call (the process-wide bound on requests in flight,
retries, the pause after a 429: ``sending.py``) and the metrics.

- Triage PUTs (``send_triage``) are sent once, never retried, and answer a classified
  ``TriageOutcome`` (``triage_writes.py``): the API has no idempotency key.
- Bugs of many tests are asked for in batches by ``bug_batches.py``, above this client.

Errors are those of ``errors.py``. The token is sent, never logged: logs show the method, path,
query, status, time and size, and ``redacted`` headers when headers are shown at all.

Example::

    async with CustomerApiClient(settings) as client:
        products = await client.products()
        async for page in client.test_pages(products[0].id):
            ...
        bugs = await client.bugs_of_tests([1, 2, 3])
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from testio_mirror.settings import Settings
from testio_mirror.triage import TriageAction
from testio_mirror.upstream.bodies import json_of, member
from testio_mirror.upstream.errors import (
    AuthError,
    BugNotFoundError,
    NotFoundError,
    RequestRejectedError,
)
from testio_mirror.upstream.health import HealthReport, report_for_status
from testio_mirror.upstream.metrics import RequestMetrics
from testio_mirror.upstream.models import (
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    RejectReason,
    TestCaseResult,
    TestCaseTest,
    UserStory,
    WireModel,
    read_each,
)
from testio_mirror.upstream.paging import ExploratoryTestPager
from testio_mirror.upstream.retry import RetryPolicy, TimeoutBudget
from testio_mirror.upstream.sending import (
    AnswerTooLateError,
    ApiCall,
    Sender,
    describe,
    http_client_for,
    logger,
)
from testio_mirror.upstream.triage_writes import (
    TriageApplied,
    TriageOutcome,
    TriageUnknown,
    classify,
    missing_reason,
    no_token,
    triage_call,
)

HEALTH_TIMEOUT_SECONDS = 5.0

M = TypeVar("M", bound=WireModel)

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
        self.metrics = RequestMetrics()
        self._prefetched: _Prefetch | None = None
        self._http = http_client_for(settings, transport)
        self._sender = Sender(
            self._http,
            token=self._token,
            policy=RetryPolicy(settings.retry_max_attempts, settings.retry_max_delay_seconds),
            max_in_flight=settings.max_concurrent_requests,
            tally=self._tally,
            deadline=settings.http_timeout_seconds,
            sleep=sleep,
            rng=rng,
        )

    @property
    def settings(self) -> Settings:
        """The settings this client was made with (batch sizes, bounds)."""
        return self._settings

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
            path = f"products/{product_id}/exploratory_tests"
            body = await self._get_json(path, params={"page": page, "per_page": per_page})
            items: list[Any] = member(body, "exploratory_tests", list, "GET", "exploratory_tests")
            return items

        return ExploratoryTestPager(
            fetch, size, start_page, check_boundaries=check_boundaries, window=window
        )

    async def test(self, test_id: int) -> ExploratoryTest:
        return await self._get_one(
            f"exploratory_tests/{test_id}", "exploratory_test", ExploratoryTest
        )

    # -- bugs --------------------------------------------------------------------------------

    async def bugs_of_tests(
        self,
        test_ids: Sequence[int],
        *,
        raise_on_524: bool = False,
        timeouts: TimeoutBudget | None = None,
    ) -> list[Bug]:
        """Every bug of the given tests, in one request (``bug_batches.py`` batches many);
        ``timeouts`` is shared by the calls of one run to this endpoint.

        Raises:
            TooBigError: a 524, when ``raise_on_524`` (never retried).
            EndpointDownError: ``timeouts`` ran out.
        """
        params = {"filter_test_cycle_ids": ",".join(str(t) for t in test_ids)}
        call = ApiCall("GET", "bugs", params=params, raise_on_524=raise_on_524, timeouts=timeouts)
        body = await self._request_json(call)
        return read_each(Bug, member(body, "bugs", list, "GET", "bugs"))

    async def bugs_for_product(self, product_id: int) -> list[Bug]:
        return await self._get_list("bugs", "bugs", Bug, params={"filter_product_ids": product_id})

    async def bug(self, bug_id: int) -> Bug:
        """One bug as TestIO holds it now (how a write whose answer was lost is reconciled).

        Raises:
            BugNotFoundError: 404, the bug is gone or not visible to this token.
        """
        try:
            return await self._get_one(f"bugs/{bug_id}", "bug", Bug)
        except NotFoundError:
            raise BugNotFoundError(bug_id) from None

    async def reject_reasons(self) -> list[RejectReason]:
        return await self._get_list("bugs/reject_reasons", "reject_reasons", RejectReason)

    # -- test-case tests ---------------------------------------------------------------------

    async def test_case_test(self, product_id: int, test_id: int) -> TestCaseTest | None:
        """The cases of a test-case test (a test whose ``testing_type`` is null), read from
        either shape TestIO answers: ``{"test_case_test": {...}}`` or the object alone.

        None when TestIO answers 404: the test is an exploratory one (its ``testing_type`` is
        set), or there is no such test in that product. A None rather than an error, because
        asking is how a caller learns whether a test has cases, and a 404 is not retried.

        Raises:
            BadResponseError: an answer in neither shape, or an unusable case (no ``id``).

        Example::

            cases = await client.test_case_test(101, 100_009)
            titles = [case.title for case in cases.test_cases] if cases else []
        """
        path = f"products/{product_id}/test_case_tests/{test_id}"
        try:
            body = await self._get_json(path)
        except NotFoundError:
            return None
        if isinstance(body, dict) and "test_case_test" not in body and "test_cases" in body:
            return TestCaseTest.from_wire(body)  # a deployment that leaves out the envelope
        return TestCaseTest.from_wire(member(body, "test_case_test", dict, "GET", path))

    async def test_case_results(self, product_id: int, test_id: int) -> list[TestCaseResult] | None:
        """Every execution of a test-case test's cases, from a bare JSON array or from
        ``{"test_case_results": [...]}``; an execution holding a number the mirror cannot
        store is skipped (``read_each``). None on a 404, as ``test_case_test``.

        Raises:
            BadResponseError: an answer in neither shape, or an execution without a usable
                ``test_case_id``.
        """
        path = f"products/{product_id}/test_case_tests/{test_id}/results"
        try:
            body = await self._get_json(path)
        except NotFoundError:
            return None
        items = (
            body if isinstance(body, list) else member(body, "test_case_results", list, "GET", path)
        )
        return read_each(TestCaseResult, items)

    # -- triage ------------------------------------------------------------------------------

    async def send_triage(
        self,
        bug_id: int,
        action: TriageAction,
        *,
        reason: str | None = None,
        comment: str | None = None,
    ) -> TriageOutcome:
        """Send one triage PUT, once (never retried: ``triage_writes.py``), and classify what
        came of it: applied, not applied, refused or unknown (maybe applied: read the bug before
        sending again). Raises nothing for an upstream failure: that is the outcome."""
        call = triage_call(bug_id, action, reason=reason, comment=comment)
        if action == "reject" and not reason:
            outcome: TriageOutcome = missing_reason(call)
        else:
            started = time.perf_counter()
            try:
                attempt = await self._sender.send_single(call)
            except AuthError:
                outcome = no_token(call)
            else:
                self._tally().writes += 1
                outcome = classify(call, attempt)
                if isinstance(outcome, TriageUnknown):
                    self._tally().writes_unanswered += 1
                logger.log(
                    logging.INFO if isinstance(outcome, TriageApplied) else logging.WARNING,
                    "%s -> %s in %.1f ms: %s",
                    call.where,
                    outcome.kind,
                    (time.perf_counter() - started) * 1000,
                    outcome.reason,
                )
        return outcome

    # -- health ------------------------------------------------------------------------------

    async def check_health(self) -> HealthReport:
        """One small authenticated request with a short timeout and no retries."""
        now = datetime.now(UTC)
        if self._token is None:
            return HealthReport(
                "unauthorized", now, None, "no token: set TESTIO_CUSTOMER_API_TOKEN"
            )
        call = ApiCall("GET", "bugs/reject_reasons", timeout=HEALTH_TIMEOUT_SECONDS)
        started = time.perf_counter()
        try:
            response = await self._sender.send_unchecked(call)
        except (httpx.TransportError, AnswerTooLateError) as exc:
            latency = (time.perf_counter() - started) * 1000
            return HealthReport("unreachable", now, latency, f"{describe(exc)}: check the network")
        latency = (time.perf_counter() - started) * 1000
        return report_for_status(response.status_code, now, latency)

    # -- reading answers ---------------------------------------------------------------------

    async def _get_list(
        self,
        path: str,
        key: str,
        model: type[M],
        *,
        params: Mapping[str, Any] | None = None,
    ) -> list[M]:
        body = await self._get_json(path, params=params)
        return read_each(model, member(body, key, list, "GET", path))

    async def _get_one(self, path: str, key: str, model: type[M]) -> M:
        body = await self._get_json(path)
        return model.from_wire(member(body, key, dict, "GET", path))

    async def _get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return await self._request_json(ApiCall("GET", path, params=params))

    async def _request_json(self, call: ApiCall) -> Any:
        response = await self._sender.send(call)
        return json_of(response, call.method, call.path)
