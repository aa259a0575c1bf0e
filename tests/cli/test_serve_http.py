"""``testio-mirror serve --transport http`` as a user starts it: what it prints, a port that is
taken, a token too weak to serve beyond loopback."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testio_mirror.cli.exit_codes import EXIT_ADDRESS_IN_USE
from tests.helpers.serving import INITIALIZE, MCP_HEADERS, child_env, serve_args

HTTP = ("--sandbox", "--no-initial-sync", "--transport", "http")
TOKEN = "a-token-for-the-serve-tests-0123456789"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *serve_args(*HTTP, *args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(tmp_path, **env),
        cwd=tmp_path,
    )


def _announced_url(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The URL the server prints on stderr, and the line it is on."""
    assert process.stderr is not None
    for _ in range(200):
        line = process.stderr.readline()
        if not line:
            break
        found = re.search(r"http://127\.0\.0\.1:\d+/mcp", line)
        if found:
            return found.group(0), line
    raise AssertionError("serve never printed its URL")


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        process.send_signal(signal.SIGINT)
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
def test_serve_prints_its_url_and_whether_a_token_is_required(
    tmp_path: Path, token: str | None
) -> None:
    env = {"TESTIO_MIRROR_HTTP_TOKEN": token} if token else {}
    process = _serve(tmp_path, "--port", "0", **env)
    try:
        url, line = _announced_url(process)
        headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
        answer = httpx.post(url, json=INITIALIZE, headers=headers, timeout=30.0)
    finally:
        stdout, _ = _stop(process)
    assert answer.status_code == 200, answer.text
    if token:
        assert "token required" in line
        assert "Authorization: Bearer" in line
        assert token not in line
    else:
        assert "no token required" in line
    assert stdout == ""


def test_a_port_in_use_is_one_line_and_its_own_exit_code(tmp_path: Path, taken_port: int) -> None:
    result = subprocess.run(
        [sys.executable, *serve_args(*HTTP, "--port", str(taken_port))],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == EXIT_ADDRESS_IN_USE, result.stderr
    assert result.returncode not in (0, 1, 2, 3, 4)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{taken_port}" in lines[0]
    assert "in use" in lines[0]
    assert "--port" in lines[0]


def test_beyond_loopback_a_weak_token_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, *serve_args(*HTTP, "--host", "0.0.0.0", "--port", "0")],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(tmp_path, TESTIO_MIRROR_HTTP_TOKEN="s3cret"),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "at least 32 characters" in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
