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
    assert "numpy" not in loaded  # the first metrics query loads it


MIRROR_PROBE = """
import asyncio, json, sys, tempfile
import testio_mirror.cli.main, testio_mirror.sync.service
from testio_mirror.settings import load_settings
from testio_mirror.store.mirror import Mirror

async def main():
    mirror = await Mirror.open(load_settings(mirror_home=tempfile.mkdtemp()), None)
    try:
        before = "numpy" in sys.modules
        async with mirror.db.reader() as conn:
            await mirror.bug_facts.current(conn)
        print(json.dumps([before, "numpy" in sys.modules]))
    finally:
        await mirror.close()

asyncio.run(main())
"""


def test_numpy_is_loaded_by_the_first_metrics_query_only() -> None:
    # About 15 MB and 80 ms: a sync, the CLI and a server nobody asks for metrics go without.
    found = subprocess.run(
        [sys.executable, "-c", MIRROR_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(found.stdout.strip().splitlines()[-1]) == [False, True]
