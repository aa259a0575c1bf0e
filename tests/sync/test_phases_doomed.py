"""Runs that cannot succeed stop at once: a product list answered 404 or not reachable at all
(the base URL is wrong) fails the run naming TESTIO_CUSTOMER_API_BASE_URL, and products the
account does not have fail the run before anything else is synced."""

from __future__ import annotations

import socket
from pathlib import Path

from testio_mirror.app import open_app
from testio_mirror.sandbox import FaultRule
from testio_mirror.sync.models import SyncPhase, SyncScope, SyncStatus
from tests.conftest import SandboxFactory
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import ALL_PHASES, MEDIUM, listing_pages, run_sync


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_404_on_the_product_list_fails_at_once_naming_the_base_url(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    home = tmp_path / "home"
    settings = make_settings(sandbox, home)
    async with open_app(settings) as app:
        await run_sync(app, phases=[SyncPhase.PRODUCTS])  # the mirror knows the products
    # The same base URL, which now answers 404 (a mirror cannot be pointed at another one:
    # store/account.py refuses that at open).
    sandbox.faults.add(FaultRule(kind="error", status=404, path="products", times=None))
    wrong = str(settings.customer_api_base_url)
    async with open_app(settings) as app:
        result = await run_sync(app, reports=False)
    assert result.status is SyncStatus.FAILED
    # One error and one request, not one per product and phase with their retries.
    assert len(result.errors) == 1, result.errors
    assert "404" in result.errors[0]
    assert "TESTIO_CUSTOMER_API_BASE_URL" in result.errors[0]
    assert wrong in result.errors[0]
    assert result.api_requests == 1
    assert result.phases_completed == []


async def test_a_refused_connection_fails_at_once_naming_the_base_url(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    settings = make_settings(
        sandbox,
        tmp_path / "home",
        customer_api_base_url=f"http://127.0.0.1:{_closed_port()}/customer/v2",
        retry_max_attempts=3,
    )
    nowhere = str(settings.customer_api_base_url)
    async with open_app(settings) as app:
        result = await run_sync(app, reports=False)
    assert result.status is SyncStatus.FAILED
    assert len(result.errors) == 1, result.errors
    assert "TESTIO_CUSTOMER_API_BASE_URL" in result.errors[0]
    assert nowhere in result.errors[0]
    assert result.api_requests == 3  # the product list's own attempts, nothing after them
    assert result.retries == 2


async def test_a_503_product_list_on_an_empty_mirror_fails_after_one_request_cycle(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    sandbox.faults.add(FaultRule(kind="error", status=503, path="products", times=10))
    async with open_app(make_settings(sandbox, tmp_path / "home")) as app:
        result = await run_sync(app)  # the failed request is a step, as any other
    assert result.status is SyncStatus.FAILED
    assert len(result.errors) == 1, result.errors
    # The mirror has no copy to fall back on: the list is not asked for a second time.
    assert len(sandbox.requests.records("products")) == result.api_requests == 2


async def test_unknown_products_fail_the_run_before_anything_is_synced(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    async with open_app(make_settings(sandbox, tmp_path / "home")) as app:
        result = await run_sync(
            app, phases=ALL_PHASES, scope=SyncScope(product_ids=(101, 999999, 888))
        )
        counts = await app.mirror.sync_state.counts()
    assert result.status is SyncStatus.FAILED
    assert len(result.errors) == 1, result.errors
    assert "888, 999999" in result.errors[0]
    assert "101, 102, 103" in result.errors[0]  # the products the account has
    # Nothing but the product list: no features, no listing of the known product 101.
    assert listing_pages(sandbox, 101) == []
    assert sandbox.requests.records("products/*") == []
    assert (counts["products"], counts["features"], counts["tests"]) == (3, 0, 0)
    assert result.phases_completed == []


async def test_unknown_products_without_the_products_phase_fail_the_same_way(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(MEDIUM)
    async with open_app(make_settings(sandbox, tmp_path / "home")) as app:
        result = await run_sync(
            app, phases=[SyncPhase.NEW_TESTS], scope=SyncScope(product_ids=(999,)), reports=False
        )
    assert result.status is SyncStatus.FAILED
    assert len(result.errors) == 1, result.errors
    assert "999" in result.errors[0]
    assert sandbox.requests.records("products/*") == []
