"""docs/tools.md's example answers are what `serve --sandbox` answers (scripts/tool_examples.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_documented_examples_are_what_the_server_answers() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "tool_examples.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_the_check_fails_when_an_example_is_wrong(tmp_path: Path) -> None:
    """The check compares values, not only shapes: a changed title is caught."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import tool_examples
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    answer = {"bugs": [{"id": 1, "title": "Cart freezes"}], "next_cursor": "abc"}
    documented = {"bugs": [{"id": 1, "title": "Cart crashes"}], "next_cursor": "xyz"}
    assert tool_examples.masked(answer) != tool_examples.masked(documented)
    documented["bugs"][0]["title"] = "Cart freezes"
    assert tool_examples.masked(answer) == tool_examples.masked(documented)
