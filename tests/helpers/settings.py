"""Settings for a mirror of a sandbox: the one place the tests' knobs are chosen.

Every knob a test could feel is explicit, so TESTIO_* variables and a ``.env`` file cannot leak
in: no refresh loop, no bugs in the background syncs, short retries, a short HTTP timeout and
sync-lock wait, a read-through deadline no busy machine misses, the API's page size. A test
passes overrides for what it needs differently.

Example::

    settings = make_settings(sandbox, tmp_path / "home", refresh_interval_seconds=1)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.sandbox import SandboxServer
from testio_mirror.settings import Settings, load_settings

PAGE_SIZE = 25


def make_settings(sandbox: SandboxServer, home: Path, **overrides: Any) -> Settings:
    """Settings for a mirror at ``home`` of ``sandbox``, with ``overrides`` applied."""
    knobs: dict[str, Any] = {
        "customer_api_token": sandbox.token,
        "customer_api_base_url": sandbox.base_url,
        "mirror_home": home,
        "page_size": PAGE_SIZE,
        "bug_batch_size": 15,
        "max_concurrent_requests": 10,
        "retry_max_attempts": 2,
        "retry_max_delay_seconds": 0.05,
        "http_timeout_seconds": 10.0,
        "full_reconcile_interval_seconds": 24 * 3600,
        "sync_lock_timeout_seconds": 5.0,
        "read_through_timeout_seconds": 10.0,
        "read_through_probe_interval_seconds": 10.0,
        "refresh_interval_seconds": 0,
        # No bugs in the server's background syncs unless a test asks: the sandbox's tests
        # end around a fixed date, and which are recent would depend on today's.
        "recent_bug_days": 0,
        "log_level": "WARNING",
    }
    knobs.update(overrides)
    return load_settings(**knobs)


def settings_free_of_the_environment(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """``make_settings`` for ``sandbox`` in a process without the developer's TESTIO_ variables
    and with no ``.env`` in the working directory (the tests that load settings themselves)."""
    for name in list(os.environ):
        if name.startswith("TESTIO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return make_settings(sandbox, tmp_path / "home")
