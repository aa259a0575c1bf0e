"""The testio://sync/status resource: readable, and announced to listeners when a run ends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mcp import Client

from testio_mirror.sandbox import DatasetSpec
from testio_mirror.server import STATUS_URI, build_server
from tests.conftest import SandboxFactory
from tests.helpers.settings import make_settings

TINY = DatasetSpec(products=2, section_products=0, tests_per_product=6, bugs_per_test=1)


async def test_a_listener_hears_the_status_resource_updated_when_a_run_ends(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(dataset=TINY)
    server = build_server(make_settings(sandbox, tmp_path / "home"), initial_sync=False)
    async with Client(server) as client:
        before = json.loads((await client.read_resource(STATUS_URI)).contents[0].text)  # type: ignore[union-attr]
        assert before["last_result"] is None
        async with client.listen(resource_subscriptions=[STATUS_URI]) as subscription:
            assert STATUS_URI in (subscription.honored.resource_subscriptions or [])
            result = await client.call_tool("sync_data", {})
            assert not result.is_error
            event = await asyncio.wait_for(anext(subscription), timeout=10)
            assert getattr(event, "uri", None) == STATUS_URI
        after = json.loads((await client.read_resource(STATUS_URI)).contents[0].text)  # type: ignore[union-attr]
        assert after["last_result"]["status"] == "success"
        assert after["counts"]["tests"] == 12
