"""``testio-mirror demo``, run as a user runs it: the main job against the built-in sandbox."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.command_line import run_command
from tests.helpers.serving import TOOLS


def test_demo_runs_an_mcp_session_and_exits_zero(tmp_path: Path) -> None:
    result = run_command("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"tools/list: {len(TOOLS)} tools" in out
    assert "sync_status right after start" in out
    assert "sync_data (include_bugs): success" in out
    assert "mirror holds 3 products, 18 features, 180 tests, 720 bugs" in out
    assert "critical bugs of" in out
    assert "bug_stats by severity" in out
    assert re.search(r"triage_bugs accept bug \d+ .*: needs_confirmation", out)
    assert re.search(r"change \d+ applied, bug \d+ now accepted", out)
    # The injected 503 was ridden out by the server, and said so on its stderr.
    assert "retry 1 of" in result.stderr
    # The counts printed are true: the run that met the 503 reports its retry.
    retried = len(re.findall(r"retry \d+ of", result.stderr))
    startup = re.search(r"start-up sync: success in [\d.]+ s, \d+ API requests \((\d+) retr", out)
    assert startup, out
    assert int(startup.group(1)) == retried
    text = " ".join(out.split())
    # Each word a new user would not know is explained where it first appears: before the demo
    # moves on to its next step.
    explained = {
        "sections: True when the product is split into sections": r"get_test \d+:",
        "testing type external": "critical bugs of",
        "forwarded = reported to the customer, waiting for their decision": "critical bugs of",
        "acceptance = accepted / (accepted + rejected)": "Done in",
    }
    for explanation, next_step in explained.items():
        assert explanation in text, explanation
        step = re.search(next_step, text)
        assert step, next_step
        assert text.index(explanation) < step.start(), explanation
