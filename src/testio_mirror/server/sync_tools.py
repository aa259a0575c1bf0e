"""``sync_data`` and ``sync_status``: sync as a visible, first-class capability."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from testio_mirror.server.answers import (
    Health,
    LockHolder,
    ProductListing,
    RunningSync,
    SyncDataAnswer,
    SyncStatusAnswer,
)
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.query_tools import MAX_ID, ToolContext
from testio_mirror.server.state import ServerState
from testio_mirror.sync.models import (
    DEFAULT_PHASES,
    SyncOptions,
    SyncPhase,
    SyncResult,
    SyncScope,
    SyncTrigger,
)

if TYPE_CHECKING:
    from testio_mirror.sync.service import RunView

SYNC = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
STATUS = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)

_PERIODS = {"1h": 1.0, "24h": 24.0, "7d": 168.0, "30d": 720.0}


def _state(ctx: ToolContext) -> ServerState:
    return ctx.request_context.lifespan_context


async def sync_data(
    ctx: ToolContext,
    product_ids: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None,
        Field(max_length=500, description="only these products (default: all)"),
    ] = None,
    since: Annotated[
        datetime | None, Field(description="only tests ending after this date, for bugs")
    ] = None,
    include_bugs: Annotated[bool, Field(description="also sync bugs of stale tests")] = False,
    force: Annotated[
        bool, Field(description="list every test and re-fetch every bug list")
    ] = False,
    wait: Annotated[
        bool, Field(description="false: start (or join) the sync and answer at once")
    ] = True,
) -> SyncDataAnswer:
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
        options = SyncOptions(force_refresh=force)
        service = (await state.app()).sync
        if not wait:
            run_id, joined = service.start_sync(phases, scope, options, SyncTrigger.TOOL)
            return SyncDataAnswer(
                run_id=run_id,
                joined=joined,
                started=not joined,
                result=None,
                hint="call sync_status to follow it",
            )
        before = service.current.run_id if service.current is not None else None
        last = 0.0

        async def progress(done: int, total: int, message: str) -> None:
            nonlocal last
            if done > last:  # a joiner may hear a step before its first callback: stay increasing
                last = done
                await ctx.report_progress(done, total, message)

        result = await service.execute_sync(phases, scope, options, SyncTrigger.TOOL, progress)
        await state.run_ended(result)
        joined = result.run_id == before
        return SyncDataAnswer(
            run_id=result.run_id, joined=joined, started=not joined, result=result
        )


async def sync_status(
    ctx: ToolContext,
    period: Annotated[str, Field(description="statistics period: 1h, 24h, 7d or 30d")] = "24h",
) -> SyncStatusAnswer:
    """Is a sync running, how did the last one go, what does the mirror hold, is TestIO
    reachable, and when is the next refresh. Cheap: call it freely."""
    with tool_errors("sync_status"):
        if period not in _PERIODS:
            raise ValueError(f"period must be one of {', '.join(_PERIODS)}")
        state = _state(ctx)
        app = await state.app()
        sync_state = app.mirror.sync_state
        hours = _PERIODS[period]
        counters, stats, counts, listings, holder = await asyncio.gather(
            sync_state.counters(),
            sync_state.period_stats(datetime.now(UTC) - timedelta(hours=hours)),
            sync_state.counts(),
            sync_state.listing_states(),
            asyncio.to_thread(app.sync.lock.holder),
        )
        running = app.sync.current
        health = await state.health() if state.has_token else None
        last = app.sync.last_result
        if last is None:
            last = await _last_recorded_result(state)
        if running is not None or holder is not None:
            phase = "running"
        elif counters.total_runs == 0 and not any(counts.values()):
            phase = "never_synced"
        else:
            phase = "idle"
        return SyncStatusAnswer(
            state=phase,  # type: ignore[arg-type]
            running=_running(running),
            last_result=last,
            total_runs=counters.total_runs,
            successful_runs=counters.successful_runs,
            failed_runs=counters.failed_runs,
            last_sync_at=counters.last_sync_at,
            last_success_at=counters.last_success_at,
            period_hours=hours,
            period_runs=stats.runs,
            period_success_rate=stats.success_rate,
            period_mean_duration_seconds=stats.mean_duration_seconds,
            period_items_synced=stats.items_synced,
            lock_holder=LockHolder(
                **{k: v for k, v in asdict(holder).items() if k != "process_started"}
            )
            if holder
            else None,
            counts=counts,
            products=[
                ProductListing(
                    product_id=s.product_id,
                    last_complete_listing=s.finished_at,
                    complete=s.complete,
                    last_full_listing=s.last_full_listing_at,
                )
                for s in listings.values()
            ],
            upstream=Health(
                state=health.state,
                latency_ms=health.latency_ms,
                detail=health.detail,
                checked_at=health.checked_at,
            )
            if health
            else None,
            next_refresh_at=state.next_refresh_at,
        )


def _running(view: RunView | None) -> RunningSync | None:
    if view is None:
        return None
    return RunningSync(
        run_id=view.run_id,
        trigger=view.trigger.value,
        phase=view.phase.value if view.phase else None,
        done=view.done,
        total=view.total,
        message=view.message,
        started_at=view.started_at,
    )


async def _last_recorded_result(state: ServerState) -> SyncResult | None:
    for event in await (await state.app()).mirror.sync_state.events(kind="run", limit=5):
        if event.status != "running" and event.data and "result" in event.data:
            return SyncResult.model_validate(event.data["result"])
    return None


def register(server: MCPServer[ServerState]) -> None:
    server.add_tool(sync_data, annotations=SYNC)
    server.add_tool(sync_status, annotations=STATUS)
