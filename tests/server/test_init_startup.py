"""What the server loads before it can answer tools/list: that only (the App loads the rest)."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded by the App in the background, never needed to list the tools.
LOADED_WITH_THE_APP = (
    "httpx",
    "aiosqlite",
    "testio_mirror.app",
    "testio_mirror.store.readthrough.rule",
    "testio_mirror.upstream.client",
    "testio_mirror.upstream.models",
)

PROBE = """
import json, sys
from testio_mirror.server import build_server
from testio_mirror.settings import load_settings
server = build_server(load_settings(customer_api_token=None), initial_sync=False)
print(json.dumps(sorted(sys.modules)))
"""


def test_building_the_server_loads_nothing_the_first_answers_do_not_need() -> None:
    found = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(found.stdout.strip().splitlines()[-1]))
    assert "testio_mirror.server.answers" in loaded  # the probe did build the server
    assert sorted(loaded & set(LOADED_WITH_THE_APP)) == []
