"""``testio-mirror demo``: the main job, end to end, against the built-in sandbox.

Today the demo shows the sandbox serving a TestIO-shaped account and a client reading it the way
the mirror will: products, features (with the per-section fallback), a product's tests paged
newest-first to the end, and the bugs of its newest tests in batches. Later issues turn it into a
real agent session over MCP.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from testio_mirror.sandbox import DatasetSpec, SandboxConfig, SandboxKnobs, SandboxServer

DEMO_DATASET = DatasetSpec(seed=7, products=3, tests_per_product=60, bugs_per_test=4)
DEMO_LATENCY_MS = 20.0
PAGE_SIZE = 25
BUG_BATCH = 15


def run_demo(console: Console) -> int:
    """Serve the sandbox, read it like a client, print what came back; returns an exit code."""
    config = SandboxConfig(dataset=DEMO_DATASET, knobs=SandboxKnobs(latency_ms=DEMO_LATENCY_MS))
    started = time.perf_counter()
    with SandboxServer(config) as sandbox:
        console.rule("[bold]testio-mirror demo[/bold]")
        console.print(
            f"Sandbox TestIO API at {sandbox.base_url} "
            f"({DEMO_LATENCY_MS:.0f} ms per request, seed {DEMO_DATASET.seed})"
        )
        with httpx.Client(
            base_url=sandbox.base_url + "/", headers=sandbox.auth_headers, timeout=10.0
        ) as client:
            refused = httpx.get(f"{sandbox.base_url}/products", timeout=10.0)
            console.print(f"Without a token the API answers {refused.status_code}, as it should.")
            products = _get(client, "products")["products"]
            _show_products(console, client, products)
            product = products[0]
            tests = _page_all_tests(console, client, product["id"])
            _show_tests(console, product, tests)
            _show_bugs(console, client, tests[:BUG_BATCH])
        records = sandbox.requests.records()
    elapsed = time.perf_counter() - started
    statuses = Counter(r.status for r in records)
    answered = ", ".join(f"{status} x{n}" for status, n in sorted(statuses.items()))
    console.print(
        f"{len(records)} API requests ({answered}; the 401 and the 422 were asked for); "
        f"demo finished in {elapsed:.2f} s."
    )
    return 0


def _get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _features(client: httpx.Client, product: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get(f"products/{product['id']}/features")
    if response.status_code != 422:
        response.raise_for_status()
        features: list[dict[str, Any]] = response.json()["features"]
        return features
    # Products with sections answer 422: ask each section and de-duplicate.
    seen: dict[int, dict[str, Any]] = {}
    for section in product["sections"]:
        for feature in _get(client, f"products/{product['id']}/sections/{section['id']}/features")[
            "features"
        ]:
            seen.setdefault(feature["id"], feature)
    return list(seen.values())


def _show_products(console: Console, client: httpx.Client, products: list[dict[str, Any]]) -> None:
    table = Table(title="Products", title_justify="left")
    for column in ("id", "name", "type", "sections", "features"):
        table.add_column(column)
    for product in products:
        features = _features(client, product)
        table.add_row(
            str(product["id"]),
            product["name"],
            product["type"],
            str(len(product["sections"])),
            str(len(features)),
        )
    console.print(table)


def _page_all_tests(
    console: Console, client: httpx.Client, product_id: int
) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = []
    seen: set[int] = set()
    page = 1
    with console.status(f"Listing the tests of product {product_id}..."):
        while True:
            batch = _get(
                client,
                f"products/{product_id}/exploratory_tests",
                page=page,
                per_page=PAGE_SIZE,
            )["exploratory_tests"]
            tests.extend(t for t in batch if t["id"] not in seen)
            seen.update(t["id"] for t in batch)
            if len(batch) < PAGE_SIZE:
                break
            page += 1
    console.print(
        f"Product {product_id}: {len(tests)} tests in {page} pages of {PAGE_SIZE}, newest first."
    )
    return tests


def _show_tests(console: Console, product: dict[str, Any], tests: list[dict[str, Any]]) -> None:
    statuses = Counter(t["status"] for t in tests)
    console.print("Statuses: " + ", ".join(f"{s} {n}" for s, n in statuses.most_common()))
    table = Table(title=f"Newest tests of {product['name']}", title_justify="left")
    for column in ("id", "title", "status", "type", "ends"):
        table.add_column(column)
    for test in tests[:5]:
        table.add_row(
            str(test["id"]),
            test["title"],
            test["status"],
            test["testing_type"] or "-",
            test["end_at"],
        )
    console.print(table)


def _show_bugs(console: Console, client: httpx.Client, tests: list[dict[str, Any]]) -> None:
    ids = ",".join(str(t["id"]) for t in tests)
    bugs = _get(client, "bugs", filter_test_cycle_ids=ids)["bugs"]
    table = Table(
        title=f"Bugs of the newest {len(tests)} tests (one request)", title_justify="left"
    )
    table.add_column("severity")
    for status in ("accepted", "rejected", "forwarded"):
        table.add_column(status, justify="right")
    counts = Counter((b["severity"], b["status"]) for b in bugs)
    for severity in sorted({b["severity"] for b in bugs}):
        table.add_row(
            severity,
            *(str(counts[(severity, s)]) for s in ("accepted", "rejected", "forwarded")),
        )
    console.print(table)
