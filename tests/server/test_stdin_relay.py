"""The stdin relay, through ``testio-mirror serve`` in a child process: a client that stops
reading stdout ends the session although stdin stays open."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from tests.helpers.serving import INITIALIZE, INITIALIZED, protocol_line, send_messages, serve_child


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


def test_refused_lines_are_answered_between_the_sdks_whole_lines(tmp_path: Path) -> None:
    # tools/list answers are longer than a pipe's atomic write: an error written into one of
    # them would break the line.
    process = serve_child(tmp_path)
    assert process.stdin is not None
    assert process.stdout is not None
    rounds = 30
    listed: set[int] = set()
    refused: set[int] = set()
    try:
        send_messages(process, INITIALIZE, INITIALIZED)
        lines = []
        for request_id in range(2, 2 + rounds):
            lines.append(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"}))
            lines.append(json.dumps({"jsonrpc": "2.0", "id": -request_id, "method": 5}))
        process.stdin.write("".join(line + "\n" for line in lines).encode())
        process.stdin.flush()
        while len(listed) < rounds or len(refused) < rounds:
            line = process.stdout.readline()
            assert line, "stdout ended before every request was answered"
            answer = protocol_line(line)  # a broken line fails here
            if "tools" in answer.get("result", {}):
                listed.add(answer["id"])
            elif answer.get("error", {}).get("code") == -32600:
                refused.add(answer["id"])
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr
    assert listed == set(range(2, 2 + rounds))
    assert refused == {-n for n in range(2, 2 + rounds)}
