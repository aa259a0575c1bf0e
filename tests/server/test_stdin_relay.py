"""The stdin relay, through ``testio-mirror serve`` in a child process: a client that stops
reading stdout ends the session although stdin stays open."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.helpers.serving import INITIALIZE, INITIALIZED, send_messages, serve_child


@pytest.mark.parametrize("requests", [3, 0], ids=["answers-fail", "idle"])
def test_a_client_that_stopped_reading_ends_the_session_without_a_traceback(
    tmp_path: Path, requests: int
) -> None:
    process = serve_child(tmp_path)
    assert process.stdout is not None
    process.stdout.close()  # nobody reads the answers: writing one fails with EPIPE
    try:
        with contextlib.suppress(BrokenPipeError):  # the server may be gone already
            if requests:
                send_messages(process, INITIALIZE, INITIALIZED)
            for request_id in range(2, 2 + requests):
                send_messages(process, {"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})
        # stdin stays open: the broken stdout alone must end the session.
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        stderr = process.stderr.read()
        process.stderr.close()
        with contextlib.suppress(BrokenPipeError):
            assert process.stdin is not None
            process.stdin.close()
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr
