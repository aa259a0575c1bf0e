"""Running ``testio-mirror`` as a user runs it: a child process without the developer's
TESTIO_ variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testio_mirror.sandbox import SandboxServer


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


CHILD_TIMEOUT = 60.0


def sync_env(sandbox: SandboxServer | None, home: Path, **extra: str) -> dict[str, str]:
    """The child's environment: none of the developer's TESTIO_ variables, a wide terminal."""
    chosen: dict[str, str] = {"TESTIO_MIRROR_HOME": str(home), "COLUMNS": "250"}
    if sandbox is not None:
        chosen["TESTIO_CUSTOMER_API_TOKEN"] = sandbox.token
        chosen["TESTIO_CUSTOMER_API_BASE_URL"] = sandbox.base_url
    return env_without_testio(**{**chosen, **extra})


class Children:
    """Child processes of one test, each stopped through its own handle at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[subprocess.Popen[str]] = []

    def start(self, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "testio_mirror", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        self.started.append(process)
        return process

    def run(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        process = self.start(env, *args)
        stdout, stderr = process.communicate(timeout=CHILD_TIMEOUT)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=CHILD_TIMEOUT)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def one_line(text: str) -> str:
    """Rich wraps long lines; join them back."""
    return " ".join(text.split())
