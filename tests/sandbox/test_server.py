"""Starting and stopping the sandbox server through its handle."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from testio_mirror.sandbox import DatasetSpec, SandboxConfig, SandboxError, SandboxServer

TINY = DatasetSpec(products=1, section_products=0, tests_per_product=3, bugs_per_test=1)


def _sandbox_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "testio-sandbox"]


def test_start_serves_and_stop_leaves_nothing_running() -> None:
    before = len(_sandbox_threads())
    server = SandboxServer(SandboxConfig(dataset=TINY)).start()
    url = f"{server.base_url}/products"
    try:
        answer = httpx.get(url, headers=server.auth_headers)
        assert answer.status_code == 200
        assert len(_sandbox_threads()) == before + 1
    finally:
        server.stop()
    server.stop()  # a second stop is harmless
    assert len(_sandbox_threads()) == before
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, headers=server.auth_headers)


def test_context_manager_picks_a_free_port_each_time() -> None:
    with (
        SandboxServer(SandboxConfig(dataset=TINY)) as first,
        SandboxServer(SandboxConfig(dataset=TINY)) as second,
    ):
        assert first.port != second.port
        for server in (first, second):
            assert httpx.get(f"{server.base_url}/products", headers=server.auth_headers).is_success


def test_a_taken_port_is_a_clear_error() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        with pytest.raises(SandboxError, match=f"cannot listen on 127.0.0.1:{port}"):
            SandboxServer(SandboxConfig(dataset=TINY, port=port)).start()
    finally:
        holder.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_only_loopback_hosts_are_accepted(host: str) -> None:
    with pytest.raises(SandboxError, match="loopback"):
        SandboxConfig(host=host)


def test_localhost_and_ipv6_loopback_are_written_as_urls_need() -> None:
    assert SandboxConfig(host="localhost").url_host == "127.0.0.1"
    v6 = SandboxConfig(host="::1")
    assert v6.url_host == "[::1]"
    assert v6.family == socket.AF_INET6


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(SandboxError, match="token"):
        SandboxConfig(token="")


def test_each_sandbox_gets_its_own_random_token() -> None:
    assert SandboxConfig().token != SandboxConfig().token


def test_the_admin_url_answers_with_the_api_token() -> None:
    with SandboxServer(SandboxConfig(dataset=TINY)) as server:
        assert server.admin_url.endswith("/_sandbox")
        answer = httpx.get(f"{server.admin_url}/health", headers=server.auth_headers)
        assert answer.status_code == 200
        assert answer.json()["status"] == "ok"
        assert httpx.get(f"{server.admin_url}/health").status_code == 401
