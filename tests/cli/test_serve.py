"""``testio-mirror serve`` run as a user runs it: a configuration it cannot serve exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.serving import child_env, serve_args


@pytest.mark.parametrize("sandbox_flag", [[], ["--sandbox"]], ids=["account", "sandbox"])
def test_serve_http_beyond_loopback_without_token_exits_2(
    tmp_path: Path, sandbox_flag: list[str]
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            *serve_args("--transport", "http", "--host", "0.0.0.0", "--port", "0"),
            *sandbox_flag,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "TESTIO_MIRROR_HTTP_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
