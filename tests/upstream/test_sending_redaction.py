"""The token is sent as a header and nowhere else: not in logs, errors or reprs."""

from __future__ import annotations

import base64
import logging
import ssl
import traceback

import httpx
import pytest
import respx

from testio_mirror import __version__
from testio_mirror.settings import load_settings
from testio_mirror.upstream.client import CustomerApiClient
from testio_mirror.upstream.errors import UpstreamError
from testio_mirror.upstream.sending import redacted
from tests.helpers.fake_upstream import BUG, make_client

SECRET = "s3cr3t-Zq81-token-Wv42-do-not-log"


def secret_client() -> CustomerApiClient:
    return make_client(customer_api_token=SECRET, retry_max_attempts=2)


def leaks(text: str) -> bool:
    return SECRET in text


def script_every_outcome(api: respx.MockRouter) -> None:
    """Answers that succeed, retry (500, 429) and fail, several echoing the token back."""
    echo = {"error": f"token {SECRET} is not valid", "token": SECRET}
    api.get("products").respond(200, json={"products": [{"id": 1}]})
    api.get("bugs/1").mock(side_effect=[httpx.Response(500), httpx.Response(200, json=BUG)])
    limited = httpx.Response(429, headers={"Retry-After": "0"})
    api.get("bugs/2").mock(side_effect=[limited, httpx.Response(200, json=BUG)])
    api.get("bugs/3").respond(401, json=echo)
    api.get("bugs/4").respond(403, text=f"Forbidden for {SECRET}")
    api.get("bugs/5").respond(503, text=SECRET)
    api.get("bugs/6").respond(422, json=echo)
    api.get("bugs/7").respond(200, text=f"<html>Authorization: Token {SECRET}</html>")
    api.get("bugs/8").mock(side_effect=httpx.ConnectError(f"refused {SECRET}"))
    api.get("bugs/reject_reasons").respond(401, json=echo)


async def test_token_never_reaches_logs_errors_or_reprs(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    script_every_outcome(api)
    errors: list[UpstreamError] = []
    async with secret_client() as client:
        await client.products()
        for bug_id in range(1, 9):
            try:
                await client.bug(bug_id)
            except UpstreamError as exc:
                errors.append(exc)
        health = await client.check_health()
        assert not leaks(repr(client))
        assert not leaks(repr(client.metrics))
    assert [type(e).__name__ for e in errors] == [
        "AuthError",
        "AuthError",
        "UpstreamUnavailableError",
        "RequestRejectedError",
        "BadResponseError",
        "UpstreamUnavailableError",
    ]
    for error in errors:
        assert not leaks(str(error))
        assert not leaks(repr(error))
        assert not leaks("".join(traceback.format_exception(error)))
    assert health.state == "unauthorized"
    assert not leaks(repr(health))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) >= 8  # the requests, retries and refusals were logged ...
    assert any("[redacted]" in m for m in messages)  # ... headers included, redacted
    assert not any(leaks(m) for m in messages)
    assert all(SECRET not in str(record.args) for record in caplog.records)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "x" * 74 + SECRET),  # not JSON
        (400, "y" * 190 + SECRET),  # a refusal
    ],
)
async def test_a_token_cut_by_the_quote_limit_leaks_no_part_of_it(
    api: respx.MockRouter, status: int, body: str
) -> None:
    api.get("bugs/1").respond(status, text=body)
    async with secret_client() as client:
        with pytest.raises(UpstreamError) as info:
            await client.bug(1)
    assert SECRET[:6] not in str(info.value)


async def test_headers_name_the_client_and_carry_the_token(api: respx.MockRouter) -> None:
    route = api.get("products").respond(200, json={"products": []})
    async with secret_client() as client:
        await client.products()
    headers = route.calls.last.request.headers
    assert headers["User-Agent"].startswith(f"testio-mirror/{__version__} ")
    assert headers["Authorization"] == f"Token {SECRET}"


def test_redacted_hides_only_credentials() -> None:
    headers = {"Authorization": "Token x", "Accept": "a", "Cookie": "c=1", "User-Agent": "u"}
    assert redacted(headers) == {
        "Authorization": "[redacted]",
        "Accept": "a",
        "Cookie": "[redacted]",
        "User-Agent": "u",
    }
    assert redacted({"proxy-authorization": "Basic y"}) == {"proxy-authorization": "[redacted]"}
    assert headers["Authorization"] == "Token x"  # the input is not changed


@pytest.mark.parametrize(
    ("base_url", "verify_mode"),
    [
        ("https://api.test.io/customer/v2", ssl.CERT_REQUIRED),
        ("http://127.0.0.1:8765/customer/v2", ssl.CERT_NONE),  # plain http never speaks TLS
    ],
)
async def test_https_always_verifies_certificates(base_url: str, verify_mode: int) -> None:
    client = CustomerApiClient(load_settings(customer_api_base_url=base_url))
    try:
        transport = client._http._transport
        assert isinstance(transport, httpx.AsyncHTTPTransport)
        assert transport._pool._ssl_context is not None
        assert transport._pool._ssl_context.verify_mode == verify_mode
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "echoed",
    [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        SECRET[-12:],
        SECRET.upper(),
        SECRET.lower(),
    ],
    ids=["plain", "base64", "suffix", "upper", "lower"],
)
@pytest.mark.parametrize("status", [200, 400, 422, 429, 500])
async def test_no_form_of_an_echoed_token_reaches_an_error_or_a_log(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture, status: int, echoed: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="testio_mirror")
    headers = {"Retry-After": echoed} if status == 429 else {}
    body = {"error": f"bad token {echoed}", echoed: echoed}
    api.get("bugs/1").respond(status, json=body, headers=headers)
    async with secret_client() as client:
        with pytest.raises(UpstreamError) as info:
            await client.bug(1)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("testio_mirror")]
    for text in [str(info.value), *logged]:
        assert echoed not in text
        assert echoed[-10:] not in text
