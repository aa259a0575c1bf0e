"""Prompts for the common jobs: a test's status report, a product's quality review, triage of a
product's forwarded bugs, a brief for a customer meeting.

Prompt arguments are strings (the protocol says so) and the SDK renders a prompt with whatever it
is given, failing an unknown name or a missing argument with a ``ValueError`` that reaches the
client as JSON-RPC code 0 and the log as a traceback. ``check_prompt_request``, run as middleware
before the SDK, turns every such request into -32602 (invalid params) with a message that says
what is valid: the prompt names, or the argument and what it accepts.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from testio_mirror.limits import MAX_ID

ID_ACCEPTS = "a positive whole number such as 100017"
DATE_ACCEPTS = "a date written YYYY-MM-DD such as 2026-09-01"
IDS_ACCEPTS = "product ids separated by commas such as 101,102 (up to 50); omit for every product"
PERIOD_ACCEPTS = (
    "30d or 90d (the 30 or 90 UTC days up to and including today), quarter (the last complete "
    "calendar quarter), or YYYY-MM-DD..YYYY-MM-DD (both days included); omit for 30d"
)
MAX_PROMPT_PRODUCTS = 50
_DIGITS = re.compile(r"[0-9]{1,19}")


def _is_id(value: str) -> bool:
    return _DIGITS.fullmatch(value) is not None and 0 < int(value) <= MAX_ID


def _is_date(value: str) -> bool:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == len("YYYY-MM-DD")


def _are_ids(value: str) -> bool:
    parts = [part.strip() for part in value.split(",")]
    return 0 < len(parts) <= MAX_PROMPT_PRODUCTS and all(_is_id(part) for part in parts)


def period_dates(
    period: str, today: datetime.date | None = None
) -> tuple[datetime.date, datetime.date] | None:
    """``period`` as [since, until) dates, until not included; None when it is not valid."""
    today = today or datetime.datetime.now(datetime.UTC).date()
    day = datetime.timedelta(days=1)
    if period in ("30d", "90d"):
        return today - (int(period[:2]) - 1) * day, today + day
    if period == "quarter":
        this_quarter = datetime.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        last = this_quarter - day
        return datetime.date(last.year, 3 * ((last.month - 1) // 3) + 1, 1), this_quarter
    first, dots, last_day = period.partition("..")
    if not dots or not _is_date(first) or not _is_date(last_day):
        return None
    start, end = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last_day)
    return (start, end + day) if start <= end and end < datetime.date.max else None


def _is_period(value: str) -> bool:
    return period_dates(value) is not None


@dataclass(frozen=True)
class Argument:
    """One prompt argument: what it is, what it accepts, and the check of a given value."""

    name: str
    what: str
    accepts: str
    check: Callable[[str], bool]
    required: bool = True

    @property
    def description(self) -> str:
        return f"{self.what}: {self.accepts}"


TEST_ID = Argument("test_id", "the id of the exploratory test", ID_ACCEPTS, _is_id)
PRODUCT_ID = Argument("product_id", "the id of the product", ID_ACCEPTS, _is_id)
SINCE = Argument("since", "start of the period (optional)", DATE_ACCEPTS, _is_date, required=False)
PRODUCT_IDS = Argument(
    "product_ids", "the products (optional)", IDS_ACCEPTS, _are_ids, required=False
)
PERIOD = Argument("period", "the period (optional)", PERIOD_ACCEPTS, _is_period, required=False)

ARGUMENTS: Mapping[str, tuple[Argument, ...]] = {
    "test_status_report": (TEST_ID,),
    "product_quality_review": (PRODUCT_ID, SINCE),
    "triage_forwarded_bugs": (PRODUCT_ID,),
    "prep_customer_meeting": (PRODUCT_IDS, PERIOD),
}


def status_report_prompt(
    test_id: Annotated[str, Field(description=TEST_ID.description)],
) -> str:
    """A status report of one exploratory test, for a customer success manager."""
    return (
        f"Write a short status report of TestIO exploratory test {test_id}.\n"
        f"1. Call get_test with test_id={test_id} and detail='full': its status, dates, goal and "
        "bug counts.\n"
        f"2. Call list_bugs with test_ids=[{test_id}] and severity=['critical', 'high'] for the "
        "bugs that matter most, and bug_stats with group_by='status' and the same test_ids.\n"
        "3. Report: where the test stands, how many bugs by severity, the acceptance rate, the "
        "critical bugs by title with their feature, and what needs a decision (forwarded bugs).\n"
        "Mention the freshness of the data when it is stale."
    )


def quality_review_prompt(
    product_id: Annotated[str, Field(description=PRODUCT_ID.description)],
    since: Annotated[str, Field(description=SINCE.description)] = "",
) -> str:
    """A quality review of one product over a period, for a QA lead or product manager."""
    period = f" since {since}" if since else ""
    window = f", since='{since}'" if since else ""
    return (
        f"Review the quality of TestIO product {product_id}{period}.\n"
        f"1. Call list_tests with product_id={product_id}{window} to see the tests run.\n"
        f"2. Call bug_stats with product_id={product_id}{window} grouped by 'severity', then "
        "by 'feature' and by 'month'.\n"
        f"3. Call list_bugs with product_id={product_id}, severity=['critical']{window}.\n"
        "4. Summarise: bug trends over the months, the features with the most bugs and the "
        "lowest acceptance rates, the open critical bugs, and recommendations.\n"
        "If sync_status shows the mirror was never synced, call sync_data first."
    )


def triage_prompt(
    product_id: Annotated[str, Field(description=PRODUCT_ID.description)],
) -> str:
    """Triage of a product's forwarded bugs: evidence, proposed decisions, a person confirms."""
    return (
        f"Help triage the forwarded bugs of TestIO product {product_id}: the bugs testers "
        "reported that wait for the customer to accept or reject them.\n"
        f"1. Call list_bugs with product_id={product_id}, status=['forwarded'] and "
        "detail='full' (follow next_cursor for all of them). If the answer is stale, call "
        f"sync_data with product_ids=[{product_id}] and include_bugs=true first.\n"
        "2. For each bug weigh its evidence: the steps, the actual and expected result, the "
        "severity, the feature (list_features), and similar bugs (search with the title's key "
        "words) that were accepted, rejected or are known.\n"
        "3. Propose one decision per bug with a one-line reason: accept; reject with a reject "
        "reason (duplicate when search found the same bug, not_reproducible when the steps "
        "cannot be followed, intended_behavior, out_of_scope ...: triage_bugs with "
        "dry_run=true lists the valid reasons in its error when one is wrong); or leave it "
        "for a person when the evidence is thin. Mark known the ones already known.\n"
        "4. Show the proposals as a table (bug, title, severity, decision, reason) and ask the "
        "person which to send. Never send a decision they did not confirm.\n"
        "5. Send the confirmed ones with one triage_bugs call (changes=[{bug_id, action, "
        "reason?, comment?}]). If it answers needs_confirmation, show the plan and repeat the "
        "call with confirm=<confirm_token> once the person agrees. Report each change's "
        "state; for a conflict show both sides and let the person choose keep_local or "
        "keep_server (resolve_conflict)."
    )


def customer_meeting_prompt(
    product_ids: Annotated[str, Field(description=PRODUCT_IDS.description)] = "",
    period: Annotated[str, Field(description=PERIOD.description)] = "",
) -> str:
    """A brief for a meeting with the customer: quality of the period, trends, what drives the
    critical bugs, what waits for the customer's decision."""
    dates = period_dates(period or "30d")
    assert dates is not None, "checked by check_prompt_request"
    since, until = (d.isoformat() for d in dates)
    ids = [int(part) for part in product_ids.split(",")] if product_ids else []
    scope = f"products {', '.join(map(str, ids))}" if ids else "every product of the account"
    products = f"product_ids={ids}, " if ids else ""
    each = f"each of {ids}" if ids else "each product quality_report lists"
    last_day = (dates[1] - datetime.timedelta(days=1)).isoformat()
    return (
        f"Prepare a brief for a meeting with the customer about TestIO {scope}, over {since} "
        f"to {last_day} (since='{since}', until='{until}': until is not included).\n"
        f"1. Call quality_report with {products}since='{since}', until='{until}': per product "
        "and overall the tests and bugs, the acceptance, rejection, auto-acceptance and review "
        "rates with their level and change against the period before, the features and "
        "testers behind the critical bugs. If its staleness notes say products were never "
        "listed or bugs never fetched, call sync_data with include_bugs=true (and those "
        "product_ids) first, then quality_report again.\n"
        f"2. Call query_metrics with metrics=['bug_count', 'critical_count', "
        f"'acceptance_rate', 'rejection_rate'], dimensions=['month'], {products}since="
        f"'{since}', until='{until}', compare=true: the trend month by month against the "
        "period before.\n"
        f"3. Call query_metrics with metrics=['critical_count', 'bug_count', "
        f"'acceptance_rate'], dimensions=['feature'], {products}since='{since}', until="
        f"'{until}', sort_by='critical_count', limit=10: the features that need attention.\n"
        f"4. Call list_testers with sort_by='critical', since='{since}', until='{until}' (with "
        f"product_id for {each}): who finds the critical bugs and how much of it holds up.\n"
        f"5. Call get_product for {each}: its features, sections and recent tests.\n"
        f"6. Call list_bugs with status=['forwarded'] and product_id for {each} (as the "
        "triage_forwarded_bugs prompt does; follow next_cursor): the bugs waiting for the "
        "customer to accept or reject them.\n"
        "7. Write the meeting brief: a summary in three sentences; the health of each rate "
        "(ok, warning, critical) and how it moved; the trend; the features and testers behind "
        "the critical bugs; the forwarded bugs waiting, oldest first, as decisions to ask the "
        "customer for; recommendations. Say how current the data is (staleness, freshness)."
    )


def check_prompt_request(name: object, arguments: object) -> None:
    """Refuse a ``prompts/get`` the prompts cannot render.

    Raises:
        MCPError: code -32602 (invalid params), the message saying what is valid.
    """
    known = ", ".join(sorted(ARGUMENTS))
    if not isinstance(name, str) or name not in ARGUMENTS:
        raise MCPError(INVALID_PARAMS, f"unknown prompt {name!r}; the prompts are: {known}")
    expected = ARGUMENTS[name]
    signature = ", ".join(f"{a.name}{'' if a.required else '?'}" for a in expected)
    given: Mapping[str, Any] = arguments if isinstance(arguments, Mapping) else {}
    if arguments is not None and not isinstance(arguments, Mapping):
        raise MCPError(INVALID_PARAMS, f"{name} takes its arguments as an object: {signature}")
    extras = sorted(set(given) - {a.name for a in expected})
    if extras:
        raise MCPError(
            INVALID_PARAMS, f"{name} takes no argument {extras[0]!r}; its arguments: {signature}"
        )
    for argument in expected:
        value = given.get(argument.name)
        if value is None:
            if argument.required:
                raise MCPError(
                    INVALID_PARAMS,
                    f"{name} needs {argument.name} (required): {argument.description}",
                )
            continue
        if not isinstance(value, str) or not argument.check(value):
            raise MCPError(
                INVALID_PARAMS,
                f"{argument.name}={value!r} is not valid for {name}: "
                f"{argument.name} is {argument.description}",
            )


async def prompt_errors(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Middleware: a ``prompts/get`` is checked before the SDK renders it."""
    if ctx.method == "prompts/get":
        params: Mapping[str, Any] = ctx.params or {}
        check_prompt_request(params.get("name"), params.get("arguments"))
    return await call_next(ctx)


def register(server: MCPServer[Any]) -> None:
    server.prompt(name="test_status_report")(status_report_prompt)
    server.prompt(name="product_quality_review")(quality_review_prompt)
    server.prompt(name="triage_forwarded_bugs")(triage_prompt)
    server.prompt(name="prep_customer_meeting")(customer_meeting_prompt)
    server.middleware.append(prompt_errors)
