"""A simulated TestIO Customer API v2 on loopback: for the demo, the tests and the benchmarks.

It is built from the API's documented facts (``docs/testio-api.md``), not from the client's models,
so it checks the client honestly. Start with ``SandboxServer``; see ``docs/sandbox.md``.
"""

from testio_mirror.sandbox.app import API_PREFIX, SandboxApp, SandboxKnobs
from testio_mirror.sandbox.dataset import DatasetSpec
from testio_mirror.sandbox.errors import NotFoundError, UnprocessableError
from testio_mirror.sandbox.evolve_report import EvolveReport
from testio_mirror.sandbox.faults import (
    FAULT_KINDS,
    FaultPlan,
    FaultRule,
    RequestLog,
    RequestRecord,
)
from testio_mirror.sandbox.server import SandboxConfig, SandboxError, SandboxServer, new_token
from testio_mirror.sandbox.world import SandboxWorld

__all__ = [
    "API_PREFIX",
    "FAULT_KINDS",
    "DatasetSpec",
    "EvolveReport",
    "FaultPlan",
    "FaultRule",
    "NotFoundError",
    "RequestLog",
    "RequestRecord",
    "SandboxApp",
    "SandboxConfig",
    "SandboxError",
    "SandboxKnobs",
    "SandboxServer",
    "SandboxWorld",
    "UnprocessableError",
    "new_token",
]
