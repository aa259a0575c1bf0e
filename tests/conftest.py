"""Shared fixtures: sandboxes on loopback, started and stopped through their own handles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testio_mirror.sandbox import DatasetSpec, SandboxConfig, SandboxKnobs, SandboxServer

SMALL = DatasetSpec(seed=3, products=3, section_products=1, tests_per_product=30, bugs_per_test=3)

SandboxFactory = Callable[..., SandboxServer]


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    """Start sandboxes with any dataset or knobs; every one is stopped when the test ends."""
    started: list[SandboxServer] = []

    def start(
        dataset: DatasetSpec = SMALL, knobs: SandboxKnobs | None = None, **config: Any
    ) -> SandboxServer:
        server = SandboxServer(
            SandboxConfig(dataset=dataset, knobs=knobs or SandboxKnobs(), **config)
        )
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> SandboxServer:
    """A small sandbox of three products, the first with sections."""
    return make_sandbox()


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """An authenticated client for the ``sandbox`` fixture, rooted at the API base URL."""
    with httpx.Client(
        base_url=sandbox.base_url + "/", headers=sandbox.auth_headers, timeout=10.0
    ) as client:
        yield client
