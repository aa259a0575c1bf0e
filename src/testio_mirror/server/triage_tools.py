"""The triage tools: ``triage_bugs``, ``list_changes``, ``resolve_conflict``, ``cancel_change``.

Every change is checked (``TriageDesk.plan``), confirmed as ``TESTIO_MIRROR_WRITES`` says
(``triage_confirm``), stored in the outbox and only then sent, exactly once (``sync/push.py``).
With writes ``off`` only ``list_changes`` is listed. docs/triage.md tells the whole story.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from testio_mirror.schema import OneOrMany, tool_description
from testio_mirror.server.errors import tool_errors
from testio_mirror.server.query_tools import Cursor, Id, ToolContext, answer
from testio_mirror.server.state import ServerState
from testio_mirror.server.triage_answers import (
    ChangeAnswer,
    ChangeList,
    ChangeView,
    PlannedView,
    TriageAnswer,
)
from testio_mirror.server.triage_confirm import (
    NoQuestion,
    TriageConfirmation,
    ask,
    elicitation_declared,
)
from testio_mirror.triage import (
    MAX_CHANGES_PER_CALL,
    ChangeState,
    ConflictStrategy,
    TriageAction,
)

if TYPE_CHECKING:  # loaded with the App, after the server answered its first requests
    from testio_mirror.store.outbox_records import ChangeRequest
    from testio_mirror.sync.triage_desk import PlannedChange, TriageDesk

logger = logging.getLogger("testio_mirror.server")

WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
CANCEL = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
LIST = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
MCP_ACTOR = "agent"


class ChangeArg(BaseModel):
    """One triage change asked for."""

    bug_id: Id
    action: TriageAction = Field(
        description="accept, reject, mark_known, mark_fixed or mark_exported"
    )
    reason: str | None = Field(
        default=None,
        max_length=200,
        description="reject only, required there: a reject reason key (an error lists them)",
    )
    comment: str | None = Field(
        default=None, max_length=4000, description="reject only: a comment for the tester"
    )

    def request(self) -> ChangeRequest:
        from testio_mirror.store.outbox_records import ChangeRequest

        return ChangeRequest(self.bug_id, self.action, self.reason, self.comment)


Changes = Annotated[
    list[ChangeArg],
    Field(
        min_length=1, max_length=MAX_CHANGES_PER_CALL, description="the changes, one per bug action"
    ),
    OneOrMany(),
]
Strategy = Annotated[
    ConflictStrategy | None,
    Field(
        description="when TestIO's bug changed since you saw it: manual (park it for a "
        "person), server_wins, local_wins, latest; default TESTIO_CONFLICT_STRATEGY"
    ),
]
Confirm = Annotated[
    str, Field(max_length=100, description="the confirm_token a needs_confirmation answer gave")
]


def _state(ctx: ToolContext) -> ServerState:
    return ctx.request_context.lifespan_context


async def _desk(state: ServerState) -> TriageDesk:
    from testio_mirror.sync.triage_desk import TriageDesk

    app = await state.app()
    return TriageDesk(app.mirror, app.client, app.sync.pusher, online=state.has_token)


def _lifespan(ctx: Context) -> ServerState:
    # A resolver's context must be annotated bare ``Context`` (the SDK recognises it so);
    # the lifespan it carries is this server's ServerState all the same.
    return cast(ServerState, ctx.request_context.lifespan_context)


def _client_name(ctx: ToolContext) -> str:
    params = ctx.request_context.session.client_params
    info = params.client_info if params is not None else None
    return f"mcp:{info.name}" if info is not None else "mcp"


async def _confirm_triage(
    changes: list[ChangeArg], dry_run: bool, confirm: str, ctx: Context
) -> Elicit[TriageConfirmation] | NoQuestion:
    """Whether to ask the person, and the question: the change set as it will be sent."""
    state = _lifespan(ctx)
    if dry_run:
        return NoQuestion(why="dry_run")
    if state.settings.mirror_writes == "on":
        return NoQuestion(why="writes_on")
    if confirm:
        return NoQuestion(why="token_given")
    if not elicitation_declared(ctx):
        return NoQuestion(why="no_elicitation")
    try:
        plan = await (await _desk(state)).plan([change.request() for change in changes])
    except Exception:
        return NoQuestion(why="invalid")
    noun = "change" if len(plan) == 1 else "changes"
    return ask([p.describe() for p in plan], heading=f"Send {len(plan)} triage {noun} to TestIO?")


async def triage_bugs(
    ctx: ToolContext,
    changes: Changes,
    confirmation: Annotated[ElicitationResult[Any], Resolve(_confirm_triage)],
    strategy: Strategy = None,
    dry_run: Annotated[
        bool, Field(description="check the changes and show the plan; store and send nothing")
    ] = False,
    confirm: Confirm = "",
) -> Annotated[CallToolResult, TriageAnswer]:
    """Triage bugs in TestIO: accept or reject forwarded bugs (reject needs a reason), mark
    bugs known, fixed or exported. Each change is stored in the outbox first, then sent once;
    if TestIO changed the bug since the mirror saw it, the strategy decides (manual: it waits
    as a conflict for resolve_conflict). A person confirms first: through a form when the
    client can show one, else this answers needs_confirmation with a token to repeat the call
    with (confirm=<token>) once the person agreed. Call with dry_run=true to check first."""
    with tool_errors("triage_bugs", not_found_hint="list_bugs shows the bugs of a test."):
        from testio_mirror.sync.triage_desk import change_set_digest

        state = _state(ctx)
        desk = await _desk(state)
        requests = [change.request() for change in changes]
        plan = await desk.plan(requests)
        chosen = strategy or state.settings.conflict_strategy
        views = [PlannedView.of(p) for p in plan]
        if dry_run:
            return answer(ctx, TriageAnswer(outcome="dry_run", plan=views, hint=_DRY_RUN_HINT))
        if state.settings.mirror_writes == "confirm":
            digest = change_set_digest(requests, chosen)
            refusal = _confirmed(state, confirmation, confirm, digest)
            if refusal is not None:
                return answer(ctx, refusal.model_copy(update={"plan": views}))
        return answer(ctx, await _submit(ctx, desk, plan, chosen))


_DRY_RUN_HINT = "nothing was stored: call again without dry_run to send these changes"


def _confirmed(
    state: ServerState,
    outcome: ElicitationResult[Any],
    token: str,
    digest: str,
    *,
    tool: str = "triage_bugs",
) -> TriageAnswer | None:
    """None when the person confirmed this change set; else the answer that stores nothing.

    Raises:
        ValueError: a ``confirm`` token that is unknown, expired, used, or for other changes.
    """
    if not isinstance(outcome, AcceptedElicitation):
        return TriageAnswer(
            outcome="declined",
            hint=f"the person {outcome.action}d the changes: nothing was stored or sent",
        )
    data = outcome.data
    if isinstance(data, TriageConfirmation):
        if data.send:
            return None
        return TriageAnswer(
            outcome="declined", hint="the person did not confirm: nothing was stored or sent"
        )
    assert isinstance(data, NoQuestion)
    if data.why == "token_given":
        if state.confirmations.redeem(token, digest):
            return None
        raise ValueError(
            "this confirm token is not valid for these changes (unknown, expired after 10 "
            f"minutes, used already, or given for other changes): nothing was stored; call "
            f"{tool} again without confirm for a new one"
        )
    issued = state.confirmations.issue(digest)
    return TriageAnswer(
        outcome="needs_confirmation",
        confirm_token=issued.token,
        confirm_expires_at=issued.expires_at,
        hint=f"nothing was stored: show the person what this does; when they agree, call "
        f"{tool} again with exactly the same arguments and confirm set to confirm_token "
        "(valid 10 minutes, once)",
    )


async def _submit(
    ctx: ToolContext, desk: TriageDesk, plan: list[PlannedChange], strategy: ConflictStrategy
) -> TriageAnswer:
    outcome = await desk.submit(
        plan, strategy=strategy, requested_by=MCP_ACTOR, client=_client_name(ctx)
    )
    views = [ChangeView.of(change) for change in outcome.changes]
    sent = outcome.push is not None and outcome.push.stopped is None
    waiting = [v for v in views if v.state in ("pending", "sending", "conflict")]
    hint = outcome.note or (outcome.push.stopped if outcome.push else None)
    if hint is None and waiting:
        hint = "; ".join(f"change {v.change_id}: {v.next_step}" for v in waiting)
    return TriageAnswer(
        outcome="sent" if sent else "queued",
        changes=views,
        push=outcome.push,
        hint=hint,
    )


async def list_changes(
    ctx: ToolContext,
    state: Annotated[
        ChangeState | None,
        Field(description="only changes in this state (conflict: those waiting for a person)"),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="how many to return (1-100)")] = 20,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, ChangeList]:
    """List the triage changes of the outbox, newest first, each with its state, the bug's
    triage state now, both sides of a conflict, and its audit (every attempt and answer)."""
    with tool_errors("list_changes"):
        app = await _state(ctx).app()
        page = await app.mirror.outbox.list_changes(state, limit=limit, cursor=cursor or None)
        hint = "more changes exist: call again with cursor" if page.next_cursor else None
        return answer(
            ctx,
            ChangeList(
                changes=[ChangeView.of(c, events=True) for c in page.items],
                next_cursor=page.next_cursor,
                hint=hint,
            ),
            page.cursors,
        )


async def _confirm_resolution(
    change_id: int, resolution: str, confirm: str, ctx: Context
) -> Elicit[TriageConfirmation] | NoQuestion:
    """keep_local sends a write: the person confirms it like a new change."""
    state = _lifespan(ctx)
    if resolution != "keep_local" or state.settings.mirror_writes == "on":
        return NoQuestion(why="writes_on")
    if confirm:
        return NoQuestion(why="token_given")
    if not elicitation_declared(ctx):
        return NoQuestion(why="no_elicitation")
    try:
        change = await (await state.app()).mirror.outbox.get(change_id)
    except Exception:
        return NoQuestion(why="invalid")
    server = change.server_side.status if change.server_side else "unknown"
    return ask(
        [f"{change.action} bug {change.bug_id} although TestIO now says {server}"],
        heading=f"Keep your change {change_id} and send it to TestIO?",
    )


async def resolve_conflict(
    ctx: ToolContext,
    change_id: Annotated[Id, Field(description="a change in state conflict")],
    resolution: Annotated[
        Literal["keep_local", "keep_server"],
        Field(description="keep_local: send the change anyway; keep_server: drop it"),
    ],
    confirmation: Annotated[ElicitationResult[Any], Resolve(_confirm_resolution)],
    confirm: Confirm = "",
) -> Annotated[CallToolResult, ChangeAnswer]:
    """Settle a triage change parked as a conflict (TestIO's bug changed after the change was
    asked for): keep_local sends it anyway, keep_server drops it and keeps TestIO's decision.
    Show the person both sides (list_changes state=conflict) before choosing."""
    with tool_errors("resolve_conflict"):
        state = _state(ctx)
        desk = await _desk(state)
        outbox = (await state.app()).mirror.outbox
        current = await outbox.get(change_id)
        asks = resolution == "keep_local" and current.state == "conflict"
        if asks and state.settings.mirror_writes == "confirm":
            digest = f"resolve:{change_id}:keep_local"
            refusal = _confirmed(state, confirmation, confirm, digest, tool="resolve_conflict")
            if refusal is not None:
                return answer(
                    ctx,
                    ChangeAnswer(
                        outcome="declined"
                        if refusal.outcome == "declined"
                        else "needs_confirmation",
                        change=ChangeView.of(current),
                        confirm_token=refusal.confirm_token,
                        confirm_expires_at=refusal.confirm_expires_at,
                        hint=refusal.hint,
                    ),
                )
        change = await outbox.resolve(change_id, resolution, by=MCP_ACTOR, strategy="manual")
        push, hint = None, None
        if resolution == "keep_local":
            push, hint = await desk.push([change_id])
            change = await outbox.get(change_id)
            hint = hint or (push.stopped if push else None)
        return answer(
            ctx,
            ChangeAnswer(outcome="resolved", change=ChangeView.of(change), push=push, hint=hint),
        )


async def cancel_change(
    ctx: ToolContext,
    change_id: Annotated[Id, Field(description="a pending change or a conflict")],
) -> Annotated[CallToolResult, ChangeAnswer]:
    """Cancel a triage change that was not sent yet (pending, or parked as a conflict):
    nothing will be sent for it."""
    with tool_errors("cancel_change"):
        outbox = (await _state(ctx).app()).mirror.outbox
        change = await outbox.cancel(change_id, by=MCP_ACTOR)
        return answer(ctx, ChangeAnswer(outcome="cancelled", change=ChangeView.of(change)))


def register(server: MCPServer[ServerState], *, writes: bool) -> None:
    """``list_changes`` always; the write tools only when ``writes`` (not ``off``)."""
    server.add_tool(
        list_changes,
        title="List triage changes",
        description=tool_description(list_changes),
        annotations=LIST,
    )
    if not writes:
        return
    for tool, title, hints in (
        (triage_bugs, "Triage bugs", WRITE),
        (resolve_conflict, "Resolve a triage conflict", WRITE),
        (cancel_change, "Cancel a triage change", CANCEL),
    ):
        server.add_tool(tool, title=title, description=tool_description(tool), annotations=hints)
