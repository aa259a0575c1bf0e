"""CustomerApiClient against the sandbox over real HTTP: paging, retries, bug batches, errors,
health and the bound on requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import pytest

from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxKnobs, SandboxServer
from testio_mirror.sandbox.faults import FaultKind, RequestRecord
from testio_mirror.settings import load_settings
from testio_mirror.upstream.bug_batches import bugs_for_tests
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import AuthError, BadResponseError, NotFoundError
from testio_mirror.upstream.paging import ExploratoryTestPage
from tests.conftest import SandboxFactory

SECTION_PRODUCT = 101  # the one product with sections in the small set
PLAIN_PRODUCT = 102
LISTING = "products/*/exploratory_tests"
WRONG_TOKEN = "not-the-sandbox-token-0123456789"
BIG = DatasetSpec(products=1, section_products=0, tests_per_product=3000, bugs_per_test=0)
BUGGY = DatasetSpec(products=1, section_products=0, tests_per_product=40, bugs_per_test=3)


def one_product(tests: int) -> DatasetSpec:
    return DatasetSpec(products=1, section_products=0, tests_per_product=tests, bugs_per_test=0)


@asynccontextmanager
async def connect(
    sandbox: SandboxServer,
    *,
    token: str | None = None,
    base_url: str | None = None,
    **overrides: Any,
) -> AsyncIterator[CustomerApiClient]:
    """A client of ``sandbox``; every knob is explicit so TESTIO_* variables cannot leak in."""
    knobs: dict[str, Any] = {
        "page_size": 25,
        "bug_batch_size": 15,
        "max_concurrent_requests": 10,
        "retry_max_attempts": 5,
        "retry_max_delay_seconds": 0.05,  # keeps backoff short; Retry-After tests raise it
        "http_timeout_seconds": 10.0,
    }
    knobs.update(overrides)
    settings = load_settings(
        customer_api_token=token or sandbox.token,
        customer_api_base_url=base_url or sandbox.base_url,
        **knobs,
    )
    async with CustomerApiClient(settings) as client:
        yield client


async def list_pages(
    client: CustomerApiClient, product_id: int, page_size: int | None = None
) -> tuple[list[ExploratoryTestPage], bool]:
    """Every page of a product's listing, and whether the pager says it is complete."""
    pager = client.test_pages(product_id, page_size=page_size)
    pages = [page async for page in pager]
    return pages, pager.complete


def ids_of(pages: Iterable[ExploratoryTestPage]) -> list[int]:
    return [test.id for page in pages for test in page.tests]


def query(record: RequestRecord) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(record.query).items()}


def batch_ids(record: RequestRecord) -> list[int]:
    return [int(part) for part in query(record)["filter_test_cycle_ids"].split(",")]


def peak_in_flight(records: Iterable[RequestRecord], tolerance: float = 0.002) -> int:
    """Most requests the server was handling at once, from arrival times and durations; each
    interval is shrunk by ``tolerance`` seconds at both ends to absorb clock resolution."""
    events: list[tuple[float, int]] = []
    for record in records:
        start, end = record.at + tolerance, record.at + record.ms / 1000 - tolerance
        if end > start:
            events += [(start, 1), (end, -1)]
    peak = current = 0
    for _, step in sorted(events):  # at equal times an end (-1) sorts before a start
        current += step
        peak = max(peak, current)
    return peak


# -- paging ----------------------------------------------------------------------------------


async def test_3000_tests_arrive_once_each_in_order(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(dataset=BIG)
    async with connect(sandbox) as client:
        pages, complete = await list_pages(client, 101)
    expected = sandbox.world.snapshot()["product_tests"][101]
    assert len(expected) == 3000
    assert ids_of(pages) == expected
    assert complete is True
    assert [page.received for page in pages] == [25] * 120 + [0]
    listing = sandbox.requests.records(LISTING)
    assert len(listing) == 121
    assert [query(r) for r in listing] == [
        {"page": str(n), "per_page": "25"} for n in range(1, 122)
    ]
    assert all(r.status == 200 for r in listing)


async def test_503_on_a_page_is_retried_and_loses_nothing(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(dataset=one_product(120))
    sandbox.faults.add(FaultRule(kind="error", path=LISTING, status=503, times=1))
    async with connect(sandbox) as client:
        pages, complete = await list_pages(client, 101)
        assert client.metrics.retries == 1
        assert client.metrics.statuses[503] == 1
    assert ids_of(pages) == sandbox.world.snapshot()["product_tests"][101]
    assert complete is True
    listing = sandbox.requests.records(LISTING)
    assert [r.status for r in listing[:2]] == [503, 200]
    assert query(listing[0]) == query(listing[1])  # the same page asked again


@pytest.mark.parametrize("kind", ["truncated", "disconnect"])
async def test_broken_page_is_retried_and_listing_stays_exact(
    sandbox: SandboxServer, kind: FaultKind
) -> None:
    sandbox.faults.add(FaultRule(kind=kind, path=LISTING, times=1))
    async with connect(sandbox) as client:
        pages, complete = await list_pages(client, PLAIN_PRODUCT)
        assert client.metrics.retries == 1
    assert ids_of(pages) == sandbox.world.snapshot()["product_tests"][PLAIN_PRODUCT]
    assert complete is True
    assert [r.fault for r in sandbox.requests.records(LISTING)].count(kind) == 1


@pytest.mark.parametrize("tests", [95, 100])
async def test_silently_capped_pages_still_yield_every_test(
    make_sandbox: SandboxFactory, tests: int
) -> None:
    sandbox = make_sandbox(dataset=one_product(tests), knobs=SandboxKnobs(max_per_page=20))
    async with connect(sandbox) as client:
        pages, complete = await list_pages(client, 101, page_size=25)
    ids = ids_of(pages)
    assert ids == sandbox.world.snapshot()["product_tests"][101]
    assert len(ids) == len(set(ids)) == tests
    assert complete is True
    assert all(query(r)["per_page"] == "25" for r in sandbox.requests.records(LISTING))


async def test_server_ignoring_paging_yields_all_tests_after_one_request(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = make_sandbox(knobs=SandboxKnobs(ignore_paging=True))
    async with connect(sandbox) as client:
        pages, complete = await list_pages(client, PLAIN_PRODUCT)
    assert ids_of(pages) == sandbox.world.snapshot()["product_tests"][PLAIN_PRODUCT]
    assert complete is True
    assert len(pages) == 1
    assert len(sandbox.requests.records(LISTING)) == 1


@pytest.mark.parametrize("tests", [20, 25])
async def test_server_ignoring_paging_with_a_full_or_round_first_page(
    make_sandbox: SandboxFactory, tests: int
) -> None:
    """A staging server answers every test at once; when that is exactly a page (25) or a round
    short page (20), page 2 repeats page 1, which is still the whole list, not an error."""
    sandbox = make_sandbox(dataset=one_product(tests), knobs=SandboxKnobs(ignore_paging=True))
    async with connect(sandbox) as client:
        pages, complete = await list_pages(client, 101, page_size=25)
    assert ids_of(pages) == sandbox.world.snapshot()["product_tests"][101]
    assert complete is True


# -- rate limits, errors, timeouts ---------------------------------------------------------


async def test_retry_after_is_honoured(sandbox: SandboxServer) -> None:
    sandbox.faults.add(FaultRule(kind="rate_limit", path="products", times=1, retry_after="1"))
    async with connect(sandbox, retry_max_delay_seconds=5.0) as client:
        started = time.monotonic()
        products = await client.products()
        elapsed = time.monotonic() - started
        metrics = client.metrics
    assert elapsed >= 1.0
    assert {p.id for p in products} == set(sandbox.world.snapshot()["products"])
    assert metrics.rate_limited == 1
    assert metrics.rate_limit_wait_seconds >= 0.9
    assert [r.status for r in sandbox.requests.records("products")] == [429, 200]


@pytest.mark.parametrize("times", [1, 3])
async def test_524_on_a_bug_batch_splits_it_and_returns_every_bug(
    make_sandbox: SandboxFactory, times: int
) -> None:
    sandbox = make_sandbox(dataset=BUGGY)
    snapshot = sandbox.world.snapshot()
    test_ids = snapshot["product_tests"][101][:40]
    sandbox.faults.add(FaultRule(kind="error", path="bugs", status=524, times=times))
    async with connect(sandbox, bug_batch_size=40) as client:
        bugs = await bugs_for_tests(client, test_ids)
        splits = client.metrics.batch_splits
    assert splits == times  # each 524 hit a batch of several tests, and each one was halved
    expected = {b["id"] for b in snapshot["bugs"].values() if b["test"]["id"] in set(test_ids)}
    got = [bug.id for bug in bugs]
    assert len(got) == len(set(got)) == len(expected) > 0
    assert set(got) == expected
    records = sandbox.requests.records("bugs")
    assert [r.status for r in records].count(524) == times
    assert records[0].status == 524
    assert sorted(batch_ids(records[0])) == sorted(test_ids)
    assert all(len(batch_ids(r)) < 40 for r in records[1:])
    answered = [r for r in records if r.status == 200]
    # Halving forms a binary tree: one answered leaf more than there were splits.
    assert len(answered) == splits + 1
    assert all(len(batch_ids(r)) in (20, 10, 5) for r in answered)
    assert sorted(i for r in answered for i in batch_ids(r)) == sorted(test_ids)


async def test_hang_longer_than_the_timeout_is_retried(sandbox: SandboxServer) -> None:
    sandbox.faults.add(FaultRule(kind="hang", path="products", hang_seconds=3, times=1))
    async with connect(sandbox, http_timeout_seconds=0.5) as client:
        products = await client.products()
        assert client.metrics.retries == 1
        assert client.metrics.failures == 1
    assert {p.id for p in products} == set(sandbox.world.snapshot()["products"])


async def test_malformed_body_raises_bad_response(sandbox: SandboxServer) -> None:
    sandbox.faults.add(FaultRule(kind="malformed", path="products", times=1))
    async with connect(sandbox) as client:
        with pytest.raises(BadResponseError) as caught:
            await client.products()
    assert caught.value.request == "GET products"


async def test_wrong_token_raises_auth_error_without_the_token(sandbox: SandboxServer) -> None:
    async with connect(sandbox, token=WRONG_TOKEN) as client:
        with pytest.raises(AuthError) as caught:
            await client.products()
        assert client.metrics.retries == 0
    message = str(caught.value)
    assert "TESTIO_CUSTOMER_API_TOKEN" in message
    assert WRONG_TOKEN not in message
    assert sandbox.token not in message
    assert caught.value.status == 401


async def test_unknown_test_id_raises_not_found(sandbox: SandboxServer) -> None:
    async with connect(sandbox) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.test(99_999_999)
    assert caught.value.status == 404


# -- reads against the snapshot ------------------------------------------------------------


async def test_reads_answer_the_sandbox_data(sandbox: SandboxServer) -> None:
    truth = sandbox.world.snapshot()
    test_id = truth["product_tests"][PLAIN_PRODUCT][3]
    bug_id = min(truth["bugs"])
    async with connect(sandbox) as client:
        products = await client.products()
        product = await client.product(SECTION_PRODUCT)
        test = await client.test(test_id)
        bug = await client.bug(bug_id)
        reasons = await client.reject_reasons()
    assert [p.id for p in products] == list(truth["products"])
    assert [p.name for p in products] == [p["name"] for p in truth["products"].values()]
    assert product.id == SECTION_PRODUCT
    assert product.has_sections
    assert product.section_ids == [s["id"] for s in truth["products"][SECTION_PRODUCT]["sections"]]
    assert test.id == test_id
    assert test.product_id == PLAIN_PRODUCT == truth["tests"][test_id]["product"]["id"]
    assert test.title == truth["tests"][test_id]["title"]
    assert test.status == truth["tests"][test_id]["status"]
    assert (bug.id, bug.title, bug.status) == tuple(
        truth["bugs"][bug_id][key] for key in ("id", "title", "status")
    )
    assert bug.test_id == truth["bugs"][bug_id]["test"]["id"]
    assert [(r.key, r.default_comment) for r in reasons] == [
        (r["key"], r["default_comment"]) for r in sandbox.world.reject_reasons()
    ]


async def test_features_of_a_section_product_come_from_the_sections(
    sandbox: SandboxServer,
) -> None:
    truth = sandbox.world.snapshot()["features"][SECTION_PRODUCT]
    async with connect(sandbox) as client:
        features = await client.features(SECTION_PRODUCT)
    ids = [f.id for f in features]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(truth)
    assert all(f.title == truth[f.id]["title"] for f in features)
    paths = {r.path for r in sandbox.requests.records()}
    assert f"products/{SECTION_PRODUCT}/features" not in paths
    assert any(p.startswith(f"products/{SECTION_PRODUCT}/sections/") for p in paths)


async def test_user_stories_match_the_features(sandbox: SandboxServer) -> None:
    features = sandbox.world.snapshot()["features"][PLAIN_PRODUCT]
    async with connect(sandbox) as client:
        stories = await client.user_stories(PLAIN_PRODUCT)
    expected = [
        (fid * 100 + n, text, fid)
        for fid, feature in features.items()
        for n, text in enumerate(feature["user_stories"])
    ]
    assert len(expected) > 0
    assert [(s.id, s.title, s.feature_id) for s in stories] == expected


async def test_bugs_for_product_returns_every_bug_of_it(sandbox: SandboxServer) -> None:
    truth = sandbox.world.snapshot()["bugs"]
    async with connect(sandbox) as client:
        bugs = await client.bugs_for_product(PLAIN_PRODUCT)
    expected = {i for i, b in truth.items() if b["product"]["id"] == PLAIN_PRODUCT}
    got = [b.id for b in bugs]
    assert len(got) == len(set(got)) == len(expected) > 0
    assert set(got) == expected


# -- health --------------------------------------------------------------------------------


async def test_health_against_a_running_sandbox(sandbox: SandboxServer) -> None:
    async with connect(sandbox) as client:
        healthy = await client.check_health()
    async with connect(sandbox, token=WRONG_TOKEN) as client:
        refused = await client.check_health()
    assert healthy.state == "healthy"
    assert refused.state == "unauthorized"
    assert WRONG_TOKEN not in refused.detail


async def test_health_against_a_stopped_sandbox(make_sandbox: SandboxFactory) -> None:
    stopped = make_sandbox()
    base_url, token = stopped.base_url, stopped.token
    stopped.stop()
    async with connect(stopped, token=token, base_url=base_url) as client:
        report = await client.check_health()
    assert report.state == "unreachable"


# -- concurrency ---------------------------------------------------------------------------


async def test_requests_in_flight_never_exceed_the_bound(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(knobs=SandboxKnobs(latency_ms=50))
    async with connect(sandbox, max_concurrent_requests=3) as client:
        products = await asyncio.gather(*(client.product(PLAIN_PRODUCT) for _ in range(12)))
    assert all(p.id == PLAIN_PRODUCT for p in products)
    records = sandbox.requests.records(f"products/{PLAIN_PRODUCT}")
    assert len(records) == 12
    assert peak_in_flight(records) == 3


async def test_a_trickled_answer_ends_at_the_attempt_deadline_as_a_timeout(
    sandbox: SandboxServer,
) -> None:
    # Every read gets bytes within the timeout; the whole answer would take far longer.
    sandbox.faults.add(
        FaultRule(kind="trickle", path="products", times=2, trickle_bytes=8, trickle_interval=0.05)
    )
    async with connect(sandbox, http_timeout_seconds=0.5) as client:
        products = await client.products()  # two attempts cut off, the third answered
        assert (client.metrics.failures, client.metrics.retries) == (2, 2)
    assert [p.id for p in products] == [p["id"] for p in sandbox.world.products()]


async def test_a_trickled_health_check_is_unreachable(sandbox: SandboxServer) -> None:
    sandbox.faults.add(
        FaultRule(kind="trickle", path="bugs/reject_reasons", trickle_bytes=1, trickle_interval=1)
    )
    async with connect(sandbox) as client:
        report = await client.check_health()
    assert report.state == "unreachable"
    assert "no complete answer within" in report.detail
