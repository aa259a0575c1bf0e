"""Regenerate (or check) the example answers in docs/tools.md from a real `serve --sandbox`.

Every example in docs/tools.md is a marker line naming a tool call, followed by a JSON block:

    <!-- example: list_tests {"product_id": 101, "limit": 2} -->
    ```json
    {...}
    ```

This script starts `testio-mirror serve --sandbox --no-initial-sync` over stdio with a new, empty
home (so every run sees the same sandbox account in the same state), runs `sync_data` with bugs,
then every example's call in the order the document gives, and writes each answer shortened the
same way each time: lists keep their first items and end with "...". Values that differ between
runs (times, ages, run ids, durations, cursors, latencies) are compared as placeholders by
`--check`, which exits 1 and names the examples that no longer match what the server answers.

    python scripts/tool_examples.py --write   # rewrite docs/tools.md
    python scripts/tool_examples.py --check   # what tests/test_tool_examples.py runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters

DOC = Path(__file__).resolve().parent.parent / "docs" / "tools.md"
MARKER = re.compile(
    r"^<!-- example: (?P<tool>\w+) (?P<args>\{[^\n]*\}) -->\n```json\n(?P<body>.*?)\n```$",
    re.M | re.S,
)
# Each list in an example keeps this many items; the rest become one "..." item.
KEPT_ITEMS = 2
ELLIPSIS = "..."
# Fields whose value changes from run to run: compared only for presence.
VOLATILE = {
    "as_of",
    "age_seconds",
    "run_id",
    "duration_seconds",
    "started_at",
    "finished_at",
    "ended_at",
    "next_cursor",
    "checked_at",
    "latency_ms",
    "next_refresh_at",
    "since",
    "heartbeat_at",
    "pid",
    "host",
    "path",
    "size_bytes",
    "last_listed_at",
    "last_full_listing_at",
    "period_mean_duration_seconds",
    "last_sync_at",
    "last_success_at",
    "last_complete_listing",
    "last_full_listing",
    "database",
    "confirm_token",
    "confirm_expires_at",
}
# Durations written inside texts ("Sync completed in 0.2s: ...").
DURATION_IN_TEXT = re.compile(r"\b\d+(\.\d+)?s\b")
# A list or object is written on one line when it fits in this many characters.
LINE = 112
PLACEHOLDER = "<varies>"


def shorten(value: Any) -> Any:
    """``value`` with every list cut to its first items and a trailing "..."."""
    if isinstance(value, dict):
        return {key: shorten(item) for key, item in value.items()}
    if isinstance(value, list):
        kept = [shorten(item) for item in value[:KEPT_ITEMS]]
        return [*kept, ELLIPSIS] if len(value) > KEPT_ITEMS else kept
    return value


def masked(value: Any) -> Any:
    """``value`` with the fields that vary between runs replaced by one placeholder."""
    if isinstance(value, dict):
        return {
            key: PLACEHOLDER if key in VOLATILE and item is not None else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return DURATION_IN_TEXT.sub("<t>s", value)
    return value


def examples(text: str) -> list[re.Match[str]]:
    return list(MARKER.finditer(text))


async def answers(calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """What a fresh `serve --sandbox` answers to ``calls``, made in order."""
    with tempfile.TemporaryDirectory(prefix="testio-examples-") as home:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TESTIO_")}
        env["TESTIO_MIRROR_HOME"] = home
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "testio_mirror", "serve", "--sandbox", "--no-initial-sync"],
            env=env,
        )
        results: list[Any] = []
        async with Client(params) as client:
            for tool, arguments in calls:
                result = await client.call_tool(tool, arguments)
                if result.is_error:
                    text = " ".join(getattr(block, "text", "") for block in result.content)
                    results.append({"error": text})
                else:
                    results.append(result.structured_content)
        return results


def render(answer: Any) -> str:
    return _layout(shorten(answer), 0)


def _layout(value: Any, column: int, level: int = 0) -> str:
    """JSON where a list or object stays on one line when it fits, else one item per line."""
    flat = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if column + len(flat) <= LINE or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (level + 1)
    if isinstance(value, dict):
        items = [
            f"{json.dumps(key)}: {_layout(item, len(pad) + len(key) + 4, level + 1)}"
            for key, item in value.items()
        ]
        open_, close = "{", "}"
    else:
        items = [_layout(item, len(pad), level + 1) for item in value]
        open_, close = "[", "]"
    return f"{open_}\n{pad}" + f",\n{pad}".join(items) + f"\n{' ' * level}{close}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the examples in docs/tools.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when an example is out of date")
    args = parser.parse_args()

    text = DOC.read_text(encoding="utf-8")
    found = examples(text)
    calls = [(m["tool"], json.loads(m["args"])) for m in found]
    fresh = asyncio.run(answers(calls))

    if args.check:
        stale = [
            f"{m['tool']} {m['args']}"
            for m, answer in zip(found, fresh, strict=True)
            if masked(json.loads(m["body"])) != masked(shorten(answer))
        ]
        for name in stale:
            print(f"docs/tools.md: the example of {name} differs from what the server answers")
        if stale:
            print("run: python scripts/tool_examples.py --write")
        return 1 if stale else 0

    pieces: list[str] = []
    last = 0
    for m, answer in zip(found, fresh, strict=True):
        pieces.append(text[last : m.start("body")])
        pieces.append(render(answer))
        last = m.end("body")
    pieces.append(text[last:])
    DOC.write_text("".join(pieces), encoding="utf-8")
    print(f"docs/tools.md: {len(found)} examples written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
