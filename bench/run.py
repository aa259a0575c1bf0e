"""``make bench``: speed and memory of testio-mirror through its real entry points.

Starts ``testio-mirror sandbox`` (a separate process) with a fixed latency and a named dataset,
then measures each workload several times through the ``testio-mirror`` CLI and the MCP server
over stdio with a real client, prints a table (median, min, max) and writes JSON to
``bench/results/``.

    python bench/run.py --dataset S --latency-ms 50 --repeat 3

Workloads: W1 first full sync, W2 second sync with nothing changed, W3 bugs of every test,
W4 server start-up to the ``tools/list`` answer, W5 query latency on a synced mirror,
W6 worst query latency while a full sync runs, W7 analytics (``query_metrics`` by two
dimensions, ``quality_report``) on the mirror W3 filled with every bug. W5 also shows how much
of each call is the client's check of the answer against the tool's output schema. W1 to W3
also show the floor: the fewest requests the API's shape allows, times the latency, divided by
the concurrency limit.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from analytics import analytics_latencies, analytics_mix, timed  # bench/, the script's own folder
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from testio_mirror.sandbox.dataset import PRESETS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token"
PAGE_SIZE = 25
BUG_BATCH = 15
CONCURRENCY = 10
QUERY_CALLS = 100

QUERY_TOOLS = ("list_products", "list_tests", "get_test", "list_bugs", "search", "bug_stats")
TARGETS: dict[str, dict[str, float]] = {  # 50 ms latency (issue 7)
    "S": {
        "W1 seconds": 1.5,
        "W1 peak RSS MB": 70,
        "W2 seconds": 0.6,
        "W2 requests": 11,
        "W3 seconds": 1.5,
        "W3 peak RSS MB": 90,
        "W4 seconds": 1.0,
        **{f"W5 {tool} p50 ms": 5 for tool in QUERY_TOOLS},
        **{f"W5 {tool} p95 ms": 15 for tool in QUERY_TOOLS},
        "W6 p95 ms": 50,
    },
    # M must complete W1 and W3 without memory growing with the account; W7 (issue 19): any
    # two dimensions within 50 ms at p95, a product's quality report within 150 ms.
    "M": {
        "W1 peak RSS MB": 150,
        "W3 peak RSS MB": 150,
        **{
            f"W7 {label} p95 ms": 150 if tool == "quality_report" else 50
            for label, tool, _ in analytics_mix(101)
        },
    },
}


@dataclass
class Series:
    """Repeated measurements of one metric."""

    name: str
    values: list[float] = field(default_factory=list)
    floor: float | None = None
    target: float | None = None

    def row(self) -> dict[str, Any]:
        median = statistics.median(self.values) if self.values else math.nan
        return {
            "metric": self.name,
            "median": median,
            "min": min(self.values, default=math.nan),
            "max": max(self.values, default=math.nan),
            "floor": self.floor,
            "ratio": median / self.floor if self.floor else None,
            "target": self.target,
            "values": self.values,
        }


class Sandbox:
    """``testio-mirror sandbox`` in its own process, stopped through its handle."""

    def __init__(self, dataset: str, latency_ms: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testio_mirror",
                "sandbox",
                "--port",
                "0",
                "--token",
                TOKEN,
                "--dataset",
                dataset,
                "--latency-ms",
                str(latency_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.base_url = ""
        for line in self.process.stdout:
            found = re.search(r"base URL\s+(\S+)", line)
            if found:
                self.base_url = found.group(1)
            if "Ctrl-C" in line:
                break
        if not self.base_url:
            self.stop()
            raise RuntimeError("the sandbox did not start")
        self.admin = self.base_url.removesuffix("/customer/v2") + "/_sandbox"
        self.headers = {"Authorization": f"Token {TOKEN}"}

    def clear_requests(self) -> None:
        httpx.delete(f"{self.admin}/requests", headers=self.headers, timeout=30).raise_for_status()

    def requests(self) -> int:
        answer = httpx.get(f"{self.admin}/requests", headers=self.headers, timeout=60)
        answer.raise_for_status()
        return len(answer.json()["requests"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def environment(sandbox: Sandbox, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(
        TESTIO_CUSTOMER_API_TOKEN=TOKEN,
        TESTIO_CUSTOMER_API_BASE_URL=sandbox.base_url,
        TESTIO_MIRROR_HOME=str(home),
        TESTIO_REFRESH_INTERVAL_SECONDS="0",
        TESTIO_LOG_LEVEL="WARNING",
    )
    return env


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``testio-mirror <args>``; returns (wall seconds, peak RSS in MB) of that process.

    The peak is the process's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``, which
    starts afresh at exec), read until it exits. ``ru_maxrss`` from ``wait4`` would count this
    benchmark's own memory, shared with the child between fork and exec.

    Raises:
        RuntimeError: the command failed.
    """
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "testio_mirror", *args],
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        peak_kb = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            time.sleep(0.002)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            out.seek(0)
            raise RuntimeError(f"testio-mirror {' '.join(args)} exited {process.returncode}")
    return wall, (peak_kb or usage.ru_maxrss) / 1024


def _high_water_kb(pid: int) -> int:
    """The process's peak resident memory so far, in kB (0 where /proc cannot tell)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def floors(dataset: str, latency_s: float) -> dict[str, tuple[int, float]]:
    """Fewest requests and the floor time for W1, W2, W3 of a dataset."""
    sizes = PRESETS[dataset]
    products, tests = sizes["products"], sizes["tests_per_product"]
    sections = 2  # the first product has two sections: one features request each
    feature_requests = (products - 1) + sections
    pages = tests // PAGE_SIZE + 1  # the end shows as a short or empty page
    w1 = 1 + feature_requests + products * pages
    w2 = 1 + products
    w3 = 1 + math.ceil(products * tests / BUG_BATCH)
    return {
        name: (count, count * latency_s / CONCURRENCY)
        for name, count in (("W1", w1), ("W2", w2), ("W3", w3))
    }


def server_params(env: dict[str, str], initial_sync: bool = True) -> StdioServerParameters:
    args = ["-m", "testio_mirror", "serve"]
    if not initial_sync:
        args.append("--no-initial-sync")
    return StdioServerParameters(command=sys.executable, args=args, env=env)


async def startup_seconds(env: dict[str, str]) -> float:
    started = time.perf_counter()
    async with Client(server_params(env)) as client:
        await client.list_tools()
        return time.perf_counter() - started


async def _query_mix(client: Client) -> list[tuple[str, dict[str, Any]]]:
    tests = await client.call_tool("list_tests", {"product_id": 101, "limit": 1})
    assert tests.structured_content is not None
    test_id = tests.structured_content["tests"][0]["id"]
    return [
        ("list_products", {}),
        ("list_tests", {"product_id": 101, "limit": 20}),
        ("get_test", {"test_id": test_id}),
        ("list_bugs", {"product_id": 101, "severity": ["critical"], "limit": 20}),
        ("search", {"query": "checkout crashes"}),
        ("bug_stats", {"group_by": "severity", "product_id": 101}),
    ]


async def query_latencies(env: dict[str, str]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each tool's call times, and the median time the client's output-schema check of one of
    its answers takes (part of every call's time; a diagnostic, not a workload)."""
    async with Client(server_params(env, initial_sync=False)) as client:
        timings: dict[str, list[float]] = {}
        checks: dict[str, float] = {}
        for tool, arguments in await _query_mix(client):
            await timed(client, tool, arguments)  # warm up
            timings[tool] = [await timed(client, tool, arguments) for _ in range(QUERY_CALLS)]
            checks[tool] = await _check_ms(client, tool, arguments)
        return timings, checks


async def _check_ms(client: Client, tool: str, arguments: dict[str, Any]) -> float:
    # The SDK's client validates every structured answer against the tool's output schema
    # (jsonschema, compiled once per tool); this times that step alone on a real answer.
    result = await client.call_tool(tool, arguments)
    times = []
    for _ in range(QUERY_CALLS):
        started = time.perf_counter()
        await client.session.validate_tool_result(tool, result)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def latencies_during_sync(env: dict[str, str]) -> list[float]:
    async with Client(server_params(env, initial_sync=False)) as client:
        mix = await _query_mix(client)
        sync = asyncio.create_task(client.call_tool("sync_data", {"force": True}))
        timings: list[float] = []
        while not sync.done():
            for tool, arguments in mix:
                timings.append(await timed(client, tool, arguments))
        await sync
        return timings


async def w7_latencies(env: dict[str, str]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each W7 call's times, and the median time of the client's check of one of its answers
    (as W5 shows it: part of every call's time, the client's work, not the server's)."""
    async with Client(server_params(env, initial_sync=False)) as client:
        timings = await analytics_latencies(client, product_id=101)
        checks = {
            label: await _check_ms(client, tool, arguments)
            for label, tool, arguments in analytics_mix(101)
        }
        return timings, checks


def calibrate() -> float:
    """Milliseconds a fixed pure-Python task takes now (best of five). This machine is a VM
    whose speed drifts by tens of percent from minute to minute: runs compare fairly only at
    similar calibrations, so every result records one before each repeat and one at the end."""
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for number in range(300_000):
            total += number * number % 7
        best = min(best, time.perf_counter() - started)
    return best * 1000


def probe_startup() -> float:
    """Milliseconds to start Python and import pydantic (best of three). The CPU calibration
    misses what process start-up also pays on this VM: every new process touches some 10,000
    fresh memory pages, and how much a page fault costs changes over the day (importing the MCP
    SDK took from 0.55 to 1.45 s at similar calibrations). W1 to W4 start processes."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pydantic"], check=True)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(PRESETS), default="S")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", default="", help="workloads to skip, e.g. W5,W6")
    args = parser.parse_args()
    skip = {w.strip().upper() for w in args.skip.split(",") if w.strip()}
    # An installed package has its bytecode compiled by pip; a source checkout may not (and with
    # PYTHONDONTWRITEBYTECODE set, as on this machine, never caches it), so every start would
    # compile the package again. Compile once, so start-up is measured as users see it.
    compileall.compile_dir(ROOT / "src" / "testio_mirror", quiet=1)
    latency = args.latency_ms / 1000
    floor = floors(args.dataset, latency)
    series: dict[str, Series] = {}

    def record(name: str, value: float, floor_value: float | None = None) -> None:
        target = TARGETS.get(args.dataset, {}).get(name)
        series.setdefault(name, Series(name, floor=floor_value, target=target)).values.append(value)

    calibration = [calibrate()]
    startup = [probe_startup()]
    print(f"starting the sandbox: dataset {args.dataset}, {args.latency_ms:.0f} ms per request")
    sandbox = Sandbox(args.dataset, args.latency_ms)
    work = Path(tempfile.mkdtemp(prefix="testio-bench-"))
    try:
        for repeat in range(args.repeat):
            if repeat:
                calibration.append(calibrate())
                startup.append(probe_startup())
            home = work / f"run{repeat}"
            env = environment(sandbox, home)
            sandbox.clear_requests()
            wall, rss = run_cli(["sync", "--json"], env)
            record("W1 seconds", wall, floor["W1"][1])
            record("W1 requests", sandbox.requests(), floor["W1"][0])
            record("W1 peak RSS MB", rss)
            sandbox.clear_requests()
            wall, _ = run_cli(["sync", "--json"], env)
            record("W2 seconds", wall, floor["W2"][1])
            record("W2 requests", sandbox.requests(), floor["W2"][0])
            if "W3" not in skip:
                sandbox.clear_requests()
                wall, rss = run_cli(["sync", "--bugs", "--json"], env)
                record("W3 seconds", wall, floor["W3"][1])
                record("W3 requests", sandbox.requests(), floor["W3"][0])
                record("W3 peak RSS MB", rss)
            if "W4" not in skip:
                record(
                    "W4 seconds",
                    asyncio.run(startup_seconds(environment(sandbox, work / f"w4-{repeat}"))),
                )
            print(f"  repeat {repeat + 1}/{args.repeat} done")
        synced = environment(sandbox, work / "run0")
        if "W5" not in skip:
            timings, checks = asyncio.run(query_latencies(synced))
            for tool, values in timings.items():
                record(f"W5 {tool} p50 ms", percentile(values, 0.5))
                record(f"W5 {tool} p95 ms", percentile(values, 0.95))
            for tool, check in checks.items():
                record(f"W5 {tool} client check ms", check)
        if "W6" not in skip:
            during = asyncio.run(latencies_during_sync(synced))
            record("W6 worst ms", max(during))
            record("W6 p95 ms", percentile(during, 0.95))
        if "W7" not in skip:
            if "W3" in skip:  # W7 reads a mirror that holds every bug
                run_cli(["sync", "--bugs", "--json"], synced)
            w7_timings, w7_checks = asyncio.run(w7_latencies(synced))
            for label, values in w7_timings.items():
                record(f"W7 {label} p50 ms", percentile(values, 0.5))
                record(f"W7 {label} p95 ms", percentile(values, 0.95))
                record(f"W7 {label} client check ms", w7_checks[label])
    finally:
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)
    calibration.append(calibrate())
    startup.append(probe_startup())
    rows = [s.row() for s in series.values()]
    _print_table(rows, args)
    print(
        f"machine calibration: {min(calibration):.1f} to {max(calibration):.1f} ms over "
        f"{len(calibration)} checks, {calibration[0]:.1f} first and {calibration[-1]:.1f} last "
        "(a fixed Python task; lower is faster)"
    )
    print(
        f"start-up probe: {min(startup):.0f} to {max(startup):.0f} ms, {startup[0]:.0f} first and "
        f"{startup[-1]:.0f} last (python -c 'import pydantic'; lower is faster)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = RESULTS / f"{stamp}-{args.dataset}.json"
    target.write_text(
        json.dumps(
            {
                "dataset": args.dataset,
                "latency_ms": args.latency_ms,
                "repeat": args.repeat,
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "calibration_ms": calibration,
                    "startup_probe_ms": startup,
                },
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"written {target.relative_to(ROOT)}")
    return 0


def _print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\ndataset {args.dataset}, {args.latency_ms:.0f} ms latency, {args.repeat} repeats")
    width = max([34, *(len(row["metric"]) for row in rows)])  # W7's labels are long
    header = (
        f"{'metric':{width}} {'median':>9} {'min':>9} {'max':>9} {'floor':>9} {'ratio':>6} "
        f"{'target':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        floor = f"{row['floor']:.3f}" if row["floor"] is not None else "-"
        ratio = f"{row['ratio']:.1f}" if row["ratio"] is not None else "-"
        target = f"{row['target']}" if row["target"] is not None else "-"
        print(
            f"{row['metric']:{width}} {row['median']:9.3f} {row['min']:9.3f} {row['max']:9.3f} "
            f"{floor:>9} {ratio:>6} {target:>7}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
