"""Talking to the MCP server as an agent does, in memory: connect, call tools, poll, page.

Every test talks to ``build_server(settings)`` through the SDK's in-memory ``Client``, exactly as
an agent would, with the sandbox as TestIO. The truth an answer is checked against is the
sandbox's ``world.snapshot()``; the sync history is read straight from ``sync_events``.

Example::

    with synced_sandbox(DatasetSpec(products=2), home, include_bugs=True) as mirrored:
        ...
    async with connect(mirrored.settings) as client:
        products = await call(client, "list_products")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import CallToolResult

from testio_mirror.sandbox import DatasetSpec, SandboxConfig, SandboxServer
from testio_mirror.server import build_server
from testio_mirror.settings import Settings
from tests.helpers.settings import make_settings

JSON = dict[str, Any]


@contextlib.asynccontextmanager
async def connect(settings: Settings, *, initial_sync: bool = False) -> AsyncIterator[Client]:
    """An MCP client connected in memory to a fresh server for ``settings``."""
    async with Client(build_server(settings, initial_sync=initial_sync)) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    """All text blocks of a tool result, joined."""
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def call(client: Client, tool: str, args: JSON | None = None) -> JSON:
    """Call a tool that must succeed; its structured answer."""
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, f"{tool}({args}) failed: {text_of(result)}"
    answer: JSON | None = result.structured_content
    assert answer is not None, f"{tool} gave no structured content"
    return answer


async def call_error(client: Client, tool: str, args: JSON | None = None) -> str:
    """Call a tool that must fail; the error text."""
    result = await client.call_tool(tool, args or {})
    assert result.is_error, f"{tool}({args}) should fail but answered {result.structured_content}"
    return text_of(result)


async def poll(
    condition: Callable[[], Awaitable[bool]], seconds: float = 15.0, every: float = 0.05
) -> bool:
    """True as soon as ``await condition()`` holds; False when it still does not after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


async def wait_idle(client: Client, seconds: float = 20.0) -> JSON:
    """Poll ``sync_status`` until no sync runs; its last answer."""
    latest: JSON = {}

    async def idle() -> bool:
        nonlocal latest
        latest = await call(client, "sync_status")
        return bool(latest["state"] != "running")

    assert await poll(idle, seconds, every=0.1), f"the sync never ended: {latest}"
    return latest


def run_rows(settings: Settings) -> dict[str, str]:
    """``run_id -> status`` of every run row in ``sync_events``, read straight from SQLite."""
    uri = f"file:{settings.database_path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute("SELECT run_id, status FROM sync_events WHERE kind = 'run'")
        return {str(run_id): str(status) for run_id, status in rows}


@dataclass
class Mirrored:
    """A sandbox and a mirror home already synced from it."""

    sandbox: SandboxServer
    settings: Settings
    truth: JSON


async def _sync_once(settings: Settings, include_bugs: bool) -> JSON:
    async with connect(settings) as client:
        return await call(client, "sync_data", {"include_bugs": include_bugs})


@contextlib.contextmanager
def synced_sandbox(dataset: DatasetSpec, home: Path, *, include_bugs: bool) -> Iterator[Mirrored]:
    """A sandbox for ``dataset`` and a mirror synced from it through the ``sync_data`` tool.

    The sync runs on its own thread and event loop, so a module-scoped fixture can use this."""
    with SandboxServer(SandboxConfig(dataset=dataset)) as sandbox:
        settings = make_settings(sandbox, home)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(asyncio.run, _sync_once(settings, include_bugs)).result()
        assert answer["result"]["status"] == "success", answer
        yield Mirrored(sandbox, settings, sandbox.world.snapshot())


async def pages(client: Client, tool: str, args: JSON, key: str) -> list[JSON]:
    """Every item of a paged tool, following ``next_cursor`` to the end."""
    found: list[JSON] = []
    cursor: str | None = None
    for _ in range(1000):
        answer = await call(client, tool, {**args, "cursor": cursor} if cursor else args)
        found.extend(answer[key])
        cursor = answer["next_cursor"]
        if cursor is None:
            assert "hint" not in answer
            return found
        assert answer.get("hint"), "a page with more to come should say how to get it"
    raise AssertionError(f"{tool} never reached its last page")
