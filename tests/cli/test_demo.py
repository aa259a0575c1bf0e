"""``testio-mirror demo``, run as a user runs it: the main job against the built-in sandbox."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.command_line import run_command


def test_demo_runs_an_mcp_session_and_exits_zero(tmp_path: Path) -> None:
    result = run_command("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tools/list: 10 tools" in out
    assert "sync_status right after start" in out
    assert "sync_data: success" in out
    assert "mirror holds 3 products, 18 features, 180 tests, 720 bugs" in out
    assert "critical bugs of" in out
    assert "bug_stats by severity" in out
    # The injected 503 was ridden out by the server, and said so on its stderr.
    assert "retry 1 of" in result.stderr
