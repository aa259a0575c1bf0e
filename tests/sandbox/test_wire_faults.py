"""Injected faults as a client sees them on the wire, over real HTTP: 429s and their
Retry-After, error statuses, hangs, malformed, truncated and dropped answers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import pytest

from testio_mirror.sandbox import FaultRule, SandboxServer
from testio_mirror.sandbox.faults import FaultKind
from tests.helpers.polling import wait_for
from tests.helpers.sandbox_http import assert_still_serving

_LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


@pytest.mark.parametrize(
    "retry_after",
    ["2", format_datetime(_LATER, usegmt=True), None],
    ids=["seconds", "http-date", "absent"],
)
def test_rate_limit_retry_after(
    sandbox: SandboxServer, api: httpx.Client, retry_after: str | None
) -> None:
    sandbox.faults.add(FaultRule(kind="rate_limit", path="products", retry_after=retry_after))
    response = api.get("products")
    assert response.status_code == 429
    assert response.json() == {"error": "rate limit exceeded"}
    assert response.headers.get("retry-after") == retry_after
    if retry_after is not None and not retry_after.isdigit():
        assert parsedate_to_datetime(response.headers["retry-after"]) == _LATER
    assert_still_serving(api)


@pytest.mark.parametrize(
    ("status", "content_type"),
    [(500, "application/json"), (503, "application/json"), (524, "text/html")],
)
def test_error_statuses(
    sandbox: SandboxServer, api: httpx.Client, status: int, content_type: str
) -> None:
    sandbox.faults.add(FaultRule(kind="error", path="products", status=status))
    response = api.get("products")
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    if status == 524:  # what a proxy in front of the API answers: HTML, not JSON
        assert "524" in response.text
        with pytest.raises(json.JSONDecodeError):
            response.json()
    else:
        assert response.json() == {"error": f"injected {status}"}
    assert_still_serving(api)


def test_hang_outlasts_the_client_timeout(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.faults.add(FaultRule(kind="hang", path="products", hang_seconds=2))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.get("products", timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert_still_serving(api)  # the hung request does not block others


def test_hang_the_client_gave_up_on_is_logged_without_a_status(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    # RequestRecord documents status 0 "when the connection closed before a status line": the
    # client hung up during the hang, so nothing was ever sent to it.
    sandbox.faults.add(FaultRule(kind="hang", path="products", hang_seconds=1))
    with pytest.raises(httpx.ReadTimeout):
        api.get("products", timeout=0.3)
    assert wait_for(lambda: len(sandbox.requests.records("products")) == 1)
    record = sandbox.requests.records("products")[0]
    assert record.fault == "hang"
    assert record.status == 0


def test_malformed_answers_200_with_a_body_that_is_not_json(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    sandbox.faults.add(FaultRule(kind="malformed", path="bugs"))
    response = api.get("bugs", params={"filter_product_ids": "101"})
    assert response.status_code == 200
    with pytest.raises(ValueError, match="Unterminated string"):
        response.json()
    assert_still_serving(api)


@pytest.mark.parametrize("kind", ["truncated", "disconnect"])
def test_broken_bodies_raise_a_transport_error(
    sandbox: SandboxServer, api: httpx.Client, kind: FaultKind
) -> None:
    sandbox.faults.add(FaultRule(kind=kind, path="products"))
    with pytest.raises(httpx.TransportError) as caught:
        api.get("products")
    assert type(caught.value) is httpx.RemoteProtocolError
    assert "peer closed connection" in str(caught.value)
    assert_still_serving(api)


def test_truncated_cuts_even_a_refusal(sandbox: SandboxServer) -> None:
    sandbox.faults.add(FaultRule(kind="truncated", path="products"))
    with (
        httpx.Client(base_url=sandbox.base_url + "/", timeout=10.0) as anonymous,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        anonymous.get("products")
    assert wait_for(lambda: len(sandbox.requests) == 1)
    assert sandbox.requests.records()[0].status == 401


def test_trickle_sends_the_whole_answer_a_few_bytes_at_a_time(
    sandbox: SandboxServer, api: httpx.Client
) -> None:
    expected = api.get("products").content
    sandbox.faults.add(
        FaultRule(kind="trickle", path="products", trickle_bytes=64, trickle_interval=0.01)
    )
    pieces: list[bytes] = []
    with api.stream("GET", "products") as response:
        assert response.status_code == 200
        pieces.extend(response.iter_raw())
    assert b"".join(pieces) == expected
    assert max(len(piece) for piece in pieces) <= 64
    assert len(pieces) >= len(expected) // 64
    assert_still_serving(api)


def test_trickle_stops_when_the_client_hangs_up(sandbox: SandboxServer, api: httpx.Client) -> None:
    # Every read gets its bytes within the read timeout, yet the answer would take minutes.
    sandbox.faults.add(
        FaultRule(kind="trickle", path="products", trickle_bytes=1, trickle_interval=0.05)
    )
    with api.stream("GET", "products") as response:
        assert next(response.iter_raw()) != b""
    assert wait_for(lambda: len(sandbox.requests.records("products")) == 1, 5.0)
    assert sandbox.requests.records("products")[0].fault == "trickle"
    assert_still_serving(api)


@pytest.mark.parametrize("status", [200, 401, 422, 429, 500])
def test_echo_secret_puts_the_secret_in_the_body(
    sandbox: SandboxServer, api: httpx.Client, status: int
) -> None:
    sandbox.faults.add(FaultRule(kind="echo_secret", path="products", status=status))
    response = api.get("products")
    assert response.status_code == status
    assert sandbox.token in response.text
    if status == 429:
        assert response.headers["retry-after"] == sandbox.token
    if status != 200:
        assert sandbox.token in response.json()
    assert_still_serving(api)
