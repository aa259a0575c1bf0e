"""Streamable HTTP as a team or a browser page meets it: the 401 answer, CORS preflights, the
token strength beyond loopback, and the bounds on sessions."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from testio_mirror.server import build_server
from testio_mirror.server.transport import (
    MCP_PATH,
    MIN_REMOTE_TOKEN_LENGTH,
    HttpPolicy,
    ServeError,
    http_app,
)
from testio_mirror.settings import Settings
from tests.conftest import SandboxFactory
from tests.helpers.polling import wait_for
from tests.helpers.serving import INITIALIZE, MCP_HEADERS, serving
from tests.helpers.settings import settings_free_of_the_environment

TOKEN = "t" * MIN_REMOTE_TOKEN_LENGTH
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGE = "http://localhost:6274"  # where MCP Inspector's page runs
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, mcp-session-id",
}


@pytest.fixture
def settings(
    tmp_path: Path, make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    return settings_free_of_the_environment(make_sandbox(), tmp_path, monkeypatch)


def _post(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        url + MCP_PATH, json=INITIALIZE, headers={**MCP_HEADERS, **(headers or {})}, timeout=10.0
    )


def test_the_401_answer_is_a_json_rpc_error(settings: Settings) -> None:
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", HttpPolicy(TOKEN))
    with serving(app) as url:
        refused = _post(url, {"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    assert body["error"]["code"] == -32001
    assert "Authorization: Bearer" in body["error"]["message"]
    assert set(body) == {"jsonrpc", "id", "error"}
    assert TOKEN not in refused.text


def test_a_cors_preflight_is_answered_without_the_token(settings: Settings) -> None:
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", HttpPolicy(TOKEN))
    with serving(app) as url:
        preflight = httpx.options(url + MCP_PATH, headers=PREFLIGHT, timeout=10.0)
        foreign = httpx.options(
            url + MCP_PATH, headers={**PREFLIGHT, "Origin": "http://evil.example"}, timeout=10.0
        )
        answer = _post(url, {**AUTH, "Origin": PAGE})
        unauthenticated = _post(url, {"Origin": PAGE})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == PAGE
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "mcp-session-id"):
        assert header in allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in foreign.headers
    assert not foreign.is_success
    # The real request still needs the token; the page may read the session id it is given.
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert "mcp-session-id" in answer.headers["access-control-expose-headers"].lower()
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["access-control-allow-origin"] == PAGE


def test_a_configured_origin_is_allowed_and_the_host_check_stays(settings: Settings) -> None:
    origin = "https://mcp.example.com"
    policy = HttpPolicy(TOKEN, allowed_origins=(origin,))
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", policy)
    with serving(app) as url:
        preflight = httpx.options(
            url + MCP_PATH, headers={**PREFLIGHT, "Origin": origin}, timeout=10.0
        )
        admitted = _post(url, {**AUTH, "Origin": origin})
        rebound = _post(url, {**AUTH, "Origin": origin, "Host": "mcp.example.com"})
    assert preflight.headers["access-control-allow-origin"] == origin
    assert admitted.status_code == 200
    assert not rebound.is_success, "a foreign Host must stay refused"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_beyond_loopback_the_token_must_be_strong(settings: Settings, host: str) -> None:
    short = "x" * (MIN_REMOTE_TOKEN_LENGTH - 1)
    with pytest.raises(ServeError, match=f"at least {MIN_REMOTE_TOKEN_LENGTH}") as raised:
        http_app(build_server(settings, initial_sync=False), host, HttpPolicy(short))
    assert short not in str(raised.value)
    http_app(build_server(settings, initial_sync=False), host, HttpPolicy(TOKEN))  # accepted


def test_on_loopback_a_short_token_is_the_users_choice(settings: Settings) -> None:
    http_app(build_server(settings, initial_sync=False), "127.0.0.1", HttpPolicy("x"))


def test_unauthenticated_requests_open_no_session_and_sessions_are_bounded(
    settings: Settings,
) -> None:
    policy = HttpPolicy(TOKEN, max_sessions=1)
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", policy)
    with serving(app) as url:
        refused = [_post(url).status_code for _ in range(30)]
        first = _post(url, AUTH)
        second = _post(url, AUTH)
    assert refused == [401] * 30
    assert first.status_code == 200, "an unauthenticated request took the only session"
    assert first.headers["mcp-session-id"]
    assert second.status_code == 503


def test_an_idle_session_is_closed(settings: Settings) -> None:
    policy = HttpPolicy(None, session_idle_seconds=0.2)
    app = http_app(build_server(settings, initial_sync=False), "127.0.0.1", policy)
    with serving(app) as url:
        session = _post(url).headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        headers = {**MCP_HEADERS, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}

        def closed() -> bool:
            time.sleep(1.0)  # each probe is a request, which keeps the session busy: leave gaps
            answer = httpx.post(url + MCP_PATH, json=ping, headers=headers, timeout=10.0)
            return answer.status_code == 404

        assert wait_for(closed, 30.0), "the idle session was never closed"
