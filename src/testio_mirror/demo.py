"""``testio-mirror demo``: the main job, end to end, against the built-in sandbox.

Today the demo starts the sandbox with a little latency and a couple of injected faults, and reads
the account through ``CustomerApiClient`` the way sync will: products, features (with the
per-section fallback), every test of a product paged newest-first to the end, and the bugs of its
newest tests in one batched request. Later issues turn it into a real agent session over MCP.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from testio_mirror.sandbox import (
    FaultRule,
    SandboxConfig,
    SandboxKnobs,
    SandboxServer,
    new_token,
)
from testio_mirror.sandbox.dataset import preset
from testio_mirror.settings import load_settings
from testio_mirror.upstream import (
    AuthError,
    Bug,
    CustomerApiClient,
    ExploratoryTest,
    Product,
)

DEMO_DATASET = preset("demo", seed=7)
DEMO_LATENCY_MS = 20.0
NEWEST_TESTS = 15


def run_demo(console: Console) -> int:
    """Serve the sandbox, read it with the real client, print what came back; an exit code."""
    config = SandboxConfig(dataset=DEMO_DATASET, knobs=SandboxKnobs(latency_ms=DEMO_LATENCY_MS))
    with SandboxServer(config) as sandbox:
        console.rule("[bold]testio-mirror demo[/bold]")
        console.print(
            f"Sandbox TestIO API at {sandbox.base_url} "
            f"({DEMO_LATENCY_MS:.0f} ms per request, seed {DEMO_DATASET.seed})"
        )
        # A flaky upstream, as the real one can be: the client must ride these out.
        sandbox.faults.add(FaultRule(kind="error", path="products/*/exploratory_tests", status=503))
        sandbox.faults.add(FaultRule(kind="rate_limit", path="bugs", retry_after="0.2"))
        asyncio.run(_read_account(console, sandbox))
        records = sandbox.requests.records()
    statuses = Counter(r.status for r in records)
    answered = ", ".join(f"{status} x{n}" for status, n in sorted(statuses.items()))
    console.print(f"Sandbox request log: {len(records)} requests ({answered}).")
    return 0


async def _read_account(console: Console, sandbox: SandboxServer) -> None:
    settings = load_settings(
        customer_api_token=sandbox.token, customer_api_base_url=sandbox.base_url
    )
    wrong = load_settings(customer_api_token=new_token(), customer_api_base_url=sandbox.base_url)
    async with CustomerApiClient(wrong) as stranger:
        try:
            await stranger.products()
        except AuthError as exc:
            console.print(f"With a wrong token: [yellow]{exc}[/yellow]")
    started = time.perf_counter()
    async with CustomerApiClient(settings) as client:
        products = await client.products()
        features = await asyncio.gather(*(client.features(p) for p in products))
        _show_products(console, products, [len(f) for f in features])
        product = products[0]
        pager = client.test_pages(product.id)
        tests: list[ExploratoryTest] = []
        with console.status(f"Listing the tests of product {product.id}..."):
            async for page in pager:
                tests.extend(page.tests)
        console.print(
            f"Product {product.id}: {len(tests)} tests in {pager.pages_fetched} pages, "
            f"newest first, complete={pager.complete}."
        )
        _show_tests(console, product, tests)
        newest = [t.id for t in tests[:NEWEST_TESTS]]
        _show_bugs(console, await client.bugs_for_tests(newest), len(newest))
        metrics = client.metrics
    console.print(
        f"Client: {metrics.requests} requests, {metrics.retries} retries "
        f"({metrics.rate_limited} rate limited, {metrics.failures} failed and retried), "
        f"{metrics.bytes_received / 1024:.0f} KiB in {time.perf_counter() - started:.2f} s."
    )


def _show_products(console: Console, products: list[Product], feature_counts: list[int]) -> None:
    table = Table(title="Products", title_justify="left")
    for column in ("id", "name", "type", "sections", "features"):
        table.add_column(column)
    for product, count in zip(products, feature_counts, strict=True):
        table.add_row(
            str(product.id),
            product.name or "-",
            product.type or "-",
            str(len(product.sections)),
            str(count),
        )
    console.print(table)


def _show_tests(console: Console, product: Product, tests: list[ExploratoryTest]) -> None:
    statuses = Counter(t.status for t in tests)
    console.print("Statuses: " + ", ".join(f"{s} {n}" for s, n in statuses.most_common()))
    table = Table(title=f"Newest tests of {product.name}", title_justify="left")
    for column in ("id", "title", "status", "type", "ends (UTC)"):
        table.add_column(column)
    for test in tests[:5]:
        table.add_row(
            str(test.id),
            test.title or "-",
            test.status or "-",
            test.testing_type or "-",
            test.end_at.strftime("%Y-%m-%d %H:%M") if test.end_at else "-",
        )
    console.print(table)


def _show_bugs(console: Console, bugs: list[Bug], test_count: int) -> None:
    table = Table(title=f"Bugs of the newest {test_count} tests", title_justify="left")
    table.add_column("severity")
    for status in ("accepted", "rejected", "forwarded"):
        table.add_column(status, justify="right")
    counts = Counter((b.severity, b.status) for b in bugs)
    for severity in sorted({b.severity or "-" for b in bugs}):
        table.add_row(
            severity,
            *(str(counts[(severity, s)]) for s in ("accepted", "rejected", "forwarded")),
        )
    console.print(table)
