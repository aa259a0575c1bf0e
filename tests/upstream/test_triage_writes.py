"""``send_triage`` against a faked network: how every answer and failure is classified, what is
sent, and that nothing is ever sent twice."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from testio_mirror.upstream.triage_writes import (
    TriageApplied,
    TriageNotApplied,
    TriageOutcome,
    TriageRefused,
    TriageUnknown,
)
from tests.helpers.fake_upstream import BUG, Sleeps, make_client


@pytest.mark.parametrize(
    ("answer", "kind", "cause"),
    [
        (httpx.Response(200, json=BUG), TriageApplied, None),
        (httpx.Response(401), TriageRefused, "token"),
        (httpx.Response(403), TriageRefused, "token"),
        (httpx.Response(404), TriageRefused, "not_found"),
        (httpx.Response(409), TriageRefused, "invalid"),
        (httpx.Response(422), TriageRefused, "invalid"),
        (httpx.Response(429, headers={"Retry-After": "4"}), TriageNotApplied, None),
        (httpx.Response(408), TriageUnknown, None),
        (httpx.Response(302), TriageUnknown, None),
        (httpx.Response(500), TriageUnknown, None),
        (httpx.Response(503), TriageUnknown, None),
        (httpx.Response(524, text="<html></html>"), TriageUnknown, None),
        (httpx.Response(200, text="<html>ok</html>"), TriageUnknown, None),
        (httpx.Response(200, json={"bugs": []}), TriageUnknown, None),
        (httpx.Response(200, json={"bug": {"id": 2**70}}), TriageUnknown, None),
        (httpx.Response(204), TriageUnknown, None),
        (httpx.ConnectError("refused"), TriageNotApplied, None),
        (httpx.ConnectTimeout("slow connect"), TriageNotApplied, None),
        (httpx.PoolTimeout("no connection free"), TriageNotApplied, None),
        (httpx.ReadTimeout("slow"), TriageUnknown, None),
        (httpx.RemoteProtocolError("dropped"), TriageUnknown, None),
        (httpx.WriteError("broken pipe"), TriageUnknown, None),
    ],
)
async def test_each_answer_has_its_outcome_and_is_sent_once(
    api: respx.MockRouter, answer: Any, kind: type[TriageOutcome], cause: str | None
) -> None:
    route = api.put("bugs/7/mark_as_known").mock(side_effect=[answer, httpx.Response(200)])
    async with make_client() as client:
        outcome = await client.send_triage(7, "mark_known")
    assert type(outcome) is kind
    assert route.call_count == 1
    if isinstance(outcome, TriageRefused):
        assert outcome.cause == cause
    if isinstance(outcome, TriageNotApplied) and outcome.status == 429:
        assert outcome.retry_after == 4.0
    assert outcome.reason.startswith("PUT bugs/7/mark_as_known")


async def test_reject_sends_reason_and_comment(api: respx.MockRouter) -> None:
    route = api.put("bugs/7/reject").respond(200, json=BUG)
    accept = api.put("bugs/7/accept").respond(200, json=BUG)
    async with make_client() as client:
        await client.send_triage(7, "reject", reason="duplicate", comment="see #6")
        await client.send_triage(7, "reject", reason="duplicate")
        await client.send_triage(7, "accept", reason="ignored", comment="ignored")
    sent = [json.loads(call.request.content) for call in route.calls]
    assert sent == [{"reason": "duplicate", "comment": "see #6"}, {"reason": "duplicate"}]
    assert accept.calls.last.request.content == b""  # accept carries no body


async def test_no_token_sends_nothing(api: respx.MockRouter) -> None:
    route = api.put("bugs/7/accept").respond(200, json=BUG)
    async with make_client(customer_api_token=None) as client:
        outcome = await client.send_triage(7, "accept")
    assert isinstance(outcome, TriageRefused)
    assert outcome.cause == "token"
    assert route.call_count == 0


async def test_a_refusal_never_quotes_the_answer(api: respx.MockRouter) -> None:
    api.put("bugs/7/reject").respond(422, json={"error": "reason xyzzy is not allowed"})
    async with make_client() as client:
        outcome = await client.send_triage(7, "reject", reason="xyzzy")
    assert isinstance(outcome, TriageRefused)
    assert "xyzzy" not in outcome.reason
    assert "reject reason is unknown" in outcome.reason


async def test_a_pause_a_read_met_holds_the_write(api: respx.MockRouter) -> None:
    throttled = httpx.Response(429, headers={"Retry-After": "4"})
    api.get("products").mock(side_effect=[throttled, httpx.Response(200, json={"products": []})])
    write = api.put("bugs/7/accept").respond(200, json=BUG)
    sleeps = Sleeps()  # never really waits, so the pause is still on when the write comes
    async with make_client(sleeps) as client:
        await client.products()
        assert len(sleeps.delays) == 1
        outcome = await client.send_triage(7, "accept")
    assert isinstance(outcome, TriageApplied)
    assert len(sleeps.delays) == 2
    assert 0 < sleeps.delays[1] <= 4.0
    assert write.call_count == 1
