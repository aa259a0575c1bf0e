"""The MCP server: ``build_server(settings)`` gives an ``MCPServer`` whose lifespan builds the App,
starts the background sync, and serves the sync and query tools, a status resource and prompts.

Only the entry points (the CLI's ``serve`` and the tests) import this package.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated

from testio_mirror import __version__
from testio_mirror.server import (
    entity_tools,
    metrics_tools,
    query_tools,
    report_tools,
    sync_tools,
    test_case_tools,
    triage_tools,
)
from testio_mirror.server.errors import ArgumentExplainingServer
from testio_mirror.server.legacy_subscriptions import HandshakeSubscriptions
from testio_mirror.server.prompts import register as register_prompts
from testio_mirror.server.state import ServerState
from testio_mirror.settings import Settings
from testio_mirror.sync.models import SyncResult

STATUS_URI = "testio://sync/status"
METRICS_URI = "testio://metrics/definitions"

INSTRUCTIONS = """\
testio-mirror answers questions about a TestIO account (products, features, exploratory tests,
bugs, testers) from a local mirror, in milliseconds. Start with list_products; list_tests,
get_test, list_bugs, get_bug, search and bug_stats answer from the mirror and fetch from TestIO
only what is missing or stale. For a customer's questions: quality_report (a product's health
against thresholds, with the change since the previous period), query_metrics (any metric by up
to two dimensions; testio://metrics/definitions defines them), list_testers, get_product,
get_feature, get_test_case_results. Triage (accept, reject, mark known/fixed/exported) goes
through triage_bugs, which a person confirms; list_changes shows what was sent. Every answer
carries freshness; when it says stale, or before a report that must be current, call sync_data.
sync_status tells whether a sync runs and how the last one went.
"""


def build_server(settings: Settings, *, initial_sync: bool = True) -> MCPServer[ServerState]:
    """A ready-to-run MCP server for ``settings``; nothing starts until it runs."""
    bus = InMemorySubscriptionBus()
    # The bus reaches 2026-07-28 clients (subscriptions/listen); older ones subscribe with
    # resources/subscribe, which MCPServer does not serve (legacy_subscriptions.py says why).
    legacy = HandshakeSubscriptions()
    holder: dict[str, ServerState] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        state = ServerState(settings, initial_sync=initial_sync)

        async def announce(_result: SyncResult) -> None:
            await bus.publish(ResourceUpdated(uri=STATUS_URI))
            await legacy.publish(STATUS_URI)

        state.run_end_listeners.append(announce)
        holder["state"] = state
        state.start()
        try:
            yield state
        finally:
            await state.stop()
            holder.pop("state", None)

    server: MCPServer[ServerState] = ArgumentExplainingServer(
        "testio-mirror",
        title="TestIO mirror",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        subscriptions=bus,
        middleware=[legacy.middleware],
        log_level=settings.log_level,
    )
    sync_tools.register(server)
    query_tools.register(server)
    entity_tools.register(server)
    metrics_tools.register(server)
    test_case_tools.register(server)
    report_tools.register(server)
    triage_tools.register(server, writes=settings.mirror_writes != "off")
    register_prompts(server)

    @server.resource(
        STATUS_URI,
        name="sync-status",
        title="Sync status",
        description="The mirror's sync status, the JSON sync_status answers (period 24h); "
        "updated when a run ends.",
        mime_type="application/json",
    )
    async def sync_status_resource() -> str:
        state = holder.get("state")
        if state is None:
            return json.dumps({"state": "starting"})
        report = await sync_tools.status_report(state, sync_tools.DEFAULT_PERIOD_HOURS)
        return report.model_dump_json()

    @server.resource(
        METRICS_URI,
        name="metrics-definitions",
        title="Metric definitions",
        description="Every dimension and metric query_metrics knows, defined (denominators of "
        "rates, what a time bucket is of, the peer's name for it).",
        mime_type="application/json",
    )
    def metrics_definitions() -> str:
        from testio_mirror.store.metrics_vocabulary import definitions

        return json.dumps(definitions())

    return server
