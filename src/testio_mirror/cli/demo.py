"""``testio-mirror demo`` (``make demo``): a short agent session against the built-in sandbox.

It starts the sandbox (a simulated TestIO account, with a little latency and one injected 503),
starts ``testio-mirror serve`` as a subprocess over stdio exactly as Claude Desktop would, and
drives it through a real MCP client: ``tools/list``, ``sync_status`` while the start-up sync runs,
the start-up sync's result (the run that met the 503), ``sync_data`` with a live progress bar,
``sync_status`` again, then the questions an agent asks: the products, a test's report, the
critical bugs of a product, bug statistics by severity, and a triage decision sent back to
TestIO (confirmed with the one-time token a client without forms gets). Words a new user may
not know (sections, testing type, forwarded, acceptance) are explained where they first appear.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from testio_mirror.sandbox import FaultRule, SandboxConfig, SandboxKnobs, SandboxServer
from testio_mirror.sandbox.dataset import preset

DEMO_LATENCY_MS = 40.0
STARTUP_WAIT_SECONDS = 60.0


def run_demo(console: Console) -> int:
    """Run the session and print it; returns the exit code."""
    config = SandboxConfig(
        dataset=preset("demo", seed=7), knobs=SandboxKnobs(latency_ms=DEMO_LATENCY_MS)
    )
    started = time.perf_counter()
    with SandboxServer(config) as sandbox, tempfile.TemporaryDirectory() as home:
        # A flaky upstream, as the real one can be: the server rides it out.
        sandbox.faults.add(FaultRule(kind="error", path="products/*/exploratory_tests", status=503))
        console.rule("[bold]testio-mirror demo: an agent session over MCP (stdio)[/bold]")
        console.print(
            f"Sandbox TestIO API at {sandbox.base_url} ({DEMO_LATENCY_MS:.0f} ms per request); "
            "starting `testio-mirror serve` as Claude Desktop would."
        )
        env = {
            "TESTIO_CUSTOMER_API_TOKEN": sandbox.token,
            "TESTIO_CUSTOMER_API_BASE_URL": sandbox.base_url,
            "TESTIO_MIRROR_HOME": home,
            "TESTIO_REFRESH_INTERVAL_SECONDS": "0",
            "TESTIO_LOG_LEVEL": "WARNING",
        }
        asyncio.run(_session(console, env))
        requests = len(sandbox.requests)
    console.print(
        f"Done in {time.perf_counter() - started:.1f} s; the sandbox answered {requests} API "
        "requests."
    )
    return 0


async def _session(console: Console, env: dict[str, str]) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "testio_mirror", "serve"], env=env
    )
    async with Client(params) as client:
        tools = await client.list_tools()
        console.print(
            f"\n[bold]tools/list[/bold]: {len(tools.tools)} tools: "
            + ", ".join(t.name for t in tools.tools)
        )
        status = await _call(client, "sync_status")
        running = status["running"]
        console.print(
            f"[bold]sync_status[/bold] right after start: state={status['state']}"
            + (f", start-up sync in phase {running['phase']}" if running else "")
        )
        # The start-up sync met the injected 503 and retried: show its own counts, so the
        # retry on stderr is not followed by a "0 retries" that belongs to the next run.
        startup = await _startup_result(client)
        if startup is not None:
            console.print(
                f"[bold]start-up sync[/bold]: {_run_counts(startup)} (a retry is a request "
                "sent again after a failure such as the 503 above)"
            )
        result = await _sync_with_progress(console, client)
        console.print(
            f"[bold]sync_data[/bold] (include_bugs): {_run_counts(result)}, a run of its own"
        )
        status = await _call(client, "sync_status")
        counts = status["counts"]
        console.print(
            f"[bold]sync_status[/bold]: {status['state']}; mirror holds "
            + ", ".join(f"{n} {kind}" for kind, n in counts.items())
            + f"; TestIO {status['upstream']['state']}"
        )
        await _questions(console, client)


async def _startup_result(client: Client) -> dict[str, Any] | None:
    """The start-up sync's result, once it has ended (None if it did not within a minute)."""
    deadline = time.monotonic() + STARTUP_WAIT_SECONDS
    while time.monotonic() < deadline:
        status = await _call(client, "sync_status")
        last: dict[str, Any] | None = status["last_result"]
        if status["state"] != "running" and last is not None:
            return last
        await asyncio.sleep(0.05)
    return None


def _run_counts(result: dict[str, Any]) -> str:
    retries = result["retries"]
    word = "retry" if retries == 1 else "retries"
    return (
        f"{result['status']} in {result['duration_seconds']:.2f} s, "
        f"{result['api_requests']} API requests ({retries} {word})"
    )


async def _sync_with_progress(console: Console, client: Client) -> dict[str, Any]:
    with Progress(
        TextColumn("[bold]sync_data[/bold] {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        async def progress(done: float, total: float | None, message: str | None) -> None:
            bar.update(task, completed=done, total=total, description=(message or "")[:50])

        answer = await _call(client, "sync_data", {"include_bugs": True}, progress)
    result: dict[str, Any] = answer["result"]
    return result


async def _questions(console: Console, client: Client) -> None:
    products = (await _call(client, "list_products"))["products"]
    table = Table(
        title="list_products",
        title_justify="left",
        caption="sections: True when the product is split into sections (parts with their own "
        "features, listed one section at a time)",
        caption_justify="left",
    )
    for column in ("id", "name", "type", "sections"):
        table.add_column(column)
    for product in products:
        table.add_row(
            str(product["id"]), product["name"], product["type"], str(product["has_sections"])
        )
    console.print(table)
    product = products[0]
    tests = (await _call(client, "list_tests", {"product_id": product["id"], "limit": 3}))["tests"]
    report = await _call(client, "get_test", {"test_id": tests[0]["id"], "detail": "full"})
    test = report["test"]
    console.print(
        f"[bold]get_test {test['id']}[/bold]: {test['title']!r} (status {test['status']}, "
        f"testing type {test['testing_type']}: the kind of test TestIO ran, one of coverage, "
        f"focused, rapid, usability, external), goal: {test['goal']}\n"
        f"  bugs by severity {report['bug_counts']['by_severity']}, "
        f"by status {report['bug_counts']['by_status']}\n"
        "  (accepted and rejected are the customer's decisions; forwarded = reported to the "
        "customer, waiting for their decision)"
    )
    bugs = (
        await _call(
            client,
            "list_bugs",
            {"product_id": product["id"], "severity": ["critical"], "limit": 5},
        )
    )["bugs"]
    table = Table(title=f"critical bugs of {product['name']}", title_justify="left")
    for column in ("id", "title", "status", "test", "feature"):
        table.add_column(column)
    for bug in bugs:
        table.add_row(
            str(bug["id"]),
            bug["title"],
            bug["status"],
            bug["test_title"] or "-",
            bug["feature_title"] or "-",
        )
    console.print(table)
    stats = await _call(client, "bug_stats", {"group_by": "severity", "product_id": product["id"]})
    table = Table(
        title=f"bug_stats by severity, {product['name']}",
        title_justify="left",
        caption="acceptance = accepted / (accepted + rejected): the share of decided bugs the "
        "customer accepted (forwarded bugs are not decided yet)",
        caption_justify="left",
    )
    for column in ("severity", "total", "accepted", "rejected", "forwarded", "acceptance"):
        table.add_column(column, justify="left" if column == "severity" else "right")
    for group in stats["groups"]:
        rate = group["acceptance_rate"]
        table.add_row(
            group["label"] or "-",
            str(group["total"]),
            str(group["accepted"]),
            str(group["rejected"]),
            str(group["forwarded"]),
            f"{rate:.0%}" if rate is not None else "-",
        )
    console.print(table)
    await _triage(console, client, product)


async def _triage(console: Console, client: Client, product: dict[str, Any]) -> None:
    """Accept one forwarded bug the way an agent does under TESTIO_MIRROR_WRITES=confirm."""
    listed = await _call(
        client, "list_bugs", {"product_id": product["id"], "status": ["forwarded"], "limit": 1}
    )
    if not listed["bugs"]:
        return
    bug = listed["bugs"][0]
    asked = {"changes": [{"bug_id": bug["id"], "action": "accept"}]}
    needs = await _call(client, "triage_bugs", asked)
    console.print(
        f"[bold]triage_bugs[/bold] accept bug {bug['id']} {bug['title']!r}: {needs['outcome']}"
        "\n  writes wait for a person: this client shows no forms, so the server"
        "\n  answers the plan and a one-time token; nothing is stored yet"
    )
    done = await _call(client, "triage_bugs", {**asked, "confirm": needs["confirm_token"]})
    change = done["changes"][0]
    console.print(
        f"  confirmed (confirm=<token>): change {change['change_id']} {change['state']}, "
        f"bug {bug['id']} now {change['bug_status_now']}"
        "\n  (stored in the outbox first, then sent once; list_changes shows the audit)"
    )


async def _call(
    client: Client, tool: str, arguments: dict[str, Any] | None = None, progress: Any = None
) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments or {}, progress_callback=progress)
    if result.is_error or result.structured_content is None:
        text = result.content[0].text if result.content else "no content"  # type: ignore[union-attr]
        raise RuntimeError(f"{tool} failed: {text}")
    content: dict[str, Any] = result.structured_content
    return content
