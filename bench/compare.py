"""Two builds of testio-mirror side by side: alternating runs against one sandbox, same minutes.

This VM's speed drifts by tens of percent within minutes, so a change is judged by runs of the old
and the new code taken in turns, never by full ``make bench`` runs taken at different times. Each
build is named by the Python interpreter of its virtual environment (``label=path``):

    python bench/compare.py --rounds 5 \\
        before=../baseline/.venv/bin/python after=.venv/bin/python

Per round and build: W1 (a first sync into a fresh home), W2 (a second one, nothing changed) and
W3 (``sync --bugs``), each as wall time and the process's CPU (user + system); then W4 (a server's
start to its ``tools/list`` answer) and W5 (100 calls of each query tool over stdio on a mirror
synced with bugs). It prints each figure's median over the rounds, build beside build. The
sandbox and the environment are ``bench/run.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from run import Sandbox, environment, percentile  # bench/run.py, beside this script

CALLS = 100
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("list_products", {}),
    ("list_tests", {"product_id": 101, "limit": 20}),
    ("list_bugs", {"product_id": 101, "severity": ["critical"], "limit": 20}),
    ("search", {"query": "checkout crashes"}),
    ("bug_stats", {"group_by": "severity", "product_id": 101}),
]
SYNCS = (
    ("W1", ["sync", "--json"]),
    ("W2", ["sync", "--json"]),
    ("W3", ["sync", "--bugs", "--json"]),
)


def _cli(python: str, env: dict[str, str], args: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one ``testio-mirror <args>`` process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [python, "-m", "testio_mirror", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{python} -m testio_mirror {' '.join(args)} failed")
    return wall, usage.ru_utime + usage.ru_stime


def _server(python: str, env: dict[str, str]) -> StdioServerParameters:
    args = ["-m", "testio_mirror", "serve", "--no-initial-sync"]
    return StdioServerParameters(command=python, args=args, env=env)


async def _startup(python: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    async with Client(_server(python, env)) as client:
        await client.list_tools()
    return time.perf_counter() - started


async def _query_times(python: str, env: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    async with Client(_server(python, env)) as client:
        for tool, arguments in QUERIES:
            await client.call_tool(tool, arguments)  # warm up
            for _ in range(CALLS):
                started = time.perf_counter()
                result = await client.call_tool(tool, arguments)
                times.setdefault(tool, []).append((time.perf_counter() - started) * 1000)
                if result.is_error:
                    raise RuntimeError(f"{tool} failed: {result.content}")
    return times


def _round(
    builds: dict[str, str], sandbox: Sandbox, work: Path, index: int, figures: dict[str, Any]
) -> None:
    for label, python in builds.items():
        env = environment(sandbox, work / f"{label}-{index}")
        for name, args in SYNCS:
            wall, cpu = _cli(python, env, args)
            figures.setdefault(f"{name} seconds", {}).setdefault(label, []).append(wall)
            figures.setdefault(f"{name} CPU seconds", {}).setdefault(label, []).append(cpu)
        started = asyncio.run(_startup(python, environment(sandbox, work / f"w4-{label}")))
        figures.setdefault("W4 seconds", {}).setdefault(label, []).append(started)
        for tool, values in asyncio.run(_query_times(python, env)).items():
            for share, name in ((0.5, "p50"), (0.95, "p95")):
                key = f"W5 {tool} {name} ms"
                figures.setdefault(key, {}).setdefault(label, []).append(percentile(values, share))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs=2, metavar="label=python")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    builds = dict(build.split("=", 1) for build in args.builds)
    if len(builds) != 2:
        parser.error("name two builds with different labels")
    sandbox = Sandbox("S", args.latency_ms)
    work = Path(tempfile.mkdtemp(prefix="testio-compare-"))
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        for index in range(args.rounds):
            _round(builds, sandbox, work, index, figures)
            print(f"  round {index + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)
    labels = list(builds)
    print(f"{'median of ' + str(args.rounds) + ' rounds':34}" + "".join(f"{x:>12}" for x in labels))
    for name, by_build in figures.items():
        medians = [statistics.median(by_build[label]) for label in labels]
        print(f"{name:34}" + "".join(f"{value:12.3f}" for value in medians))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
