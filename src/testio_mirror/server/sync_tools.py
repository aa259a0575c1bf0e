"""``sync_data`` and ``sync_status``: sync as a visible, first-class capability."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from testio_mirror.schema import OneOrMany, tool_description
from testio_mirror.server.answers import SyncDataAnswer
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.query_tools import Id, ToolContext, answer
from testio_mirror.server.state import ServerState
from testio_mirror.sync.models import (
    DEFAULT_PHASES,
    SyncDirection,
    SyncOptions,
    SyncPhase,
    SyncScope,
    SyncTrigger,
    UnknownProductsError,
)
from testio_mirror.sync.status import SyncStatusReport, build_sync_status

SYNC = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
STATUS = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)

Period = Literal["1h", "24h", "7d", "30d"]
_PERIODS: dict[Period, float] = {"1h": 1.0, "24h": 24.0, "7d": 168.0, "30d": 720.0}
DEFAULT_PERIOD_HOURS = _PERIODS["24h"]  # sync_status's default, and the status resource's


FOLLOW_HINT = (
    "a sync goes on when the call waiting for it times out or is cancelled: sync_status follows it"
)


def _state(ctx: ToolContext) -> ServerState:
    return ctx.request_context.lifespan_context


async def sync_data(
    ctx: ToolContext,
    product_ids: Annotated[
        list[Id] | None,
        Field(max_length=500, description="only these products (default: all)"),
        OneOrMany(),
    ] = None,
    since: Annotated[
        datetime | None, Field(description="only tests ending after this date, for bugs")
    ] = None,
    include_bugs: Annotated[bool, Field(description="also sync bugs of stale tests")] = False,
    force: Annotated[
        bool, Field(description="list every test and re-fetch every bug list")
    ] = False,
    direction: Annotated[
        Literal["down", "up", "both"],
        Field(
            description="down: pull TestIO into the mirror; up: send pending triage changes "
            "only; both: send them, then pull"
        ),
    ] = "both",
    wait: Annotated[
        bool,
        Field(
            description="true: wait for the result (if this call times out or is cancelled, "
            "the sync goes on and sync_status follows it); false: start or join the sync and "
            "answer at once"
        ),
    ] = True,
) -> Annotated[CallToolResult, SyncDataAnswer]:
    """Bring the local mirror up to date with TestIO (products, features, tests, and bugs with
    include_bugs). Joins a sync already running instead of starting a second. Use when an
    answer's freshness says stale, or before a report that must be current; sync_status shows
    progress."""
    with tool_errors("sync_data"):
        state = _state(ctx)
        if not state.has_token:
            raise ValueError(
                "no TestIO token is configured: set TESTIO_CUSTOMER_API_TOKEN and restart the "
                "server; the mirror can still be queried"
            )
        phases = [*DEFAULT_PHASES, SyncPhase.BUGS] if include_bugs else list(DEFAULT_PHASES)
        scope = SyncScope(product_ids=tuple(product_ids) if product_ids else None, since=since)
        options = SyncOptions(force_refresh=force, direction=SyncDirection(direction))
        service = (await state.app()).sync
        try:
            # Before any run: a typo must not sync nothing and answer success.
            await service.check_products(scope.product_ids)
        except UnknownProductsError as exc:
            raise UnknownProductsError(
                exc.unknown, exc.known, next_step="list_products lists the account's products"
            ) from None
        if not wait:
            run_id, joined = service.start_sync(phases, scope, options, SyncTrigger.TOOL)
            return answer(
                ctx,
                SyncDataAnswer(
                    run_id=run_id,
                    joined=joined,
                    started=not joined,
                    result=None,
                    hint="call sync_status to follow it",
                ),
            )
        before = service.current.run_id if service.current is not None else None
        last = 0.0

        async def progress(done: int, total: int, message: str) -> None:
            nonlocal last
            if done > last:  # a joiner may hear a step before its first callback: stay increasing
                last = done
                await ctx.report_progress(done, total, message)

        # Detached: when this call is cancelled or times out, the run goes on (sync_status
        # follows it); only the server stopping or sync cancel stops it.
        result = await service.execute_sync(
            phases, scope, options, SyncTrigger.TOOL, progress, detached=True
        )
        joined = result.run_id == before
        return answer(
            ctx,
            SyncDataAnswer(
                run_id=result.run_id,
                joined=joined,
                started=not joined,
                result=result,
                hint=FOLLOW_HINT,
            ),
        )


async def sync_status(
    ctx: ToolContext,
    period: Annotated[Period, Field(description="the period of the run statistics")] = "24h",
) -> Annotated[CallToolResult, SyncStatusReport]:
    """Is a sync running, how did the last one go, what does the mirror hold, where do the
    triage changes stand (the outbox), is TestIO reachable, and when is the next refresh.
    Cheap: call it freely."""
    with tool_errors("sync_status"):
        report = await status_report(_state(ctx), _PERIODS[period])
        # The per-product listing states are its one list that grows with the account.
        return answer(ctx, report, list_field="products")


async def status_report(state: ServerState, period_hours: float) -> SyncStatusReport:
    """The sync status as this server knows it: what ``sync_status`` answers and the status
    resource gives.

    Raises:
        StoreError: the mirror cannot be read.
    """
    app = await state.app()
    upstream = await state.health() if state.has_token else None
    return await build_sync_status(
        app.mirror.sync_state,
        app.sync.lock,
        app.settings.database_path,
        period_hours=period_hours,
        outbox=app.mirror.outbox,
        running=app.sync.current,
        last_result=app.sync.last_result,
        upstream=upstream,
        next_refresh_at=state.next_refresh_at,
    )


def register(server: MCPServer[ServerState]) -> None:
    server.add_tool(
        sync_data,
        title="Sync the mirror",
        description=tool_description(sync_data),
        annotations=SYNC,
    )
    server.add_tool(
        sync_status,
        title="Sync status",
        description=tool_description(sync_status),
        annotations=STATUS,
    )
