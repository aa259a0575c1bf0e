"""Running ``testio-mirror`` as a user runs it: a child process without the developer's
TESTIO_ variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def env_without_testio(**extra: str) -> dict[str, str]:
    """This process's environment minus every TESTIO_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(extra)
    return env


def run_command(
    *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m testio_mirror *args`` to its end; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "testio_mirror", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_testio(**env),
        cwd=cwd,
        check=False,
    )
