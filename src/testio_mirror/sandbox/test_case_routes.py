"""The routes of test-case tests: ``GET products/{pid}/test_case_tests/{tid}`` and its
``/results``, each in the shape its product answers (``test_case_data.wraps_*``).

They sit behind the same gate as every API route (latency, faults, the token, the request log)
and the same error mapping (``SandboxApp._wrap``: 404 for an exploratory test or an unknown id).

Example::

    routes = test_case_routes("/customer/v2", world, wrap)   # two starlette Routes
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from testio_mirror.sandbox.test_case_data import wraps_results, wraps_test_case_test
from testio_mirror.sandbox.world import SandboxWorld

Handler = Callable[[Request], Awaitable[Response]]


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def test_case_routes(
    prefix: str, world: SandboxWorld, wrap: Callable[[Handler], Handler]
) -> list[Route]:
    """The two routes below ``prefix``, each handler passed through ``wrap``."""

    async def cases(request: Request) -> Response:
        pid, tid = request.path_params["pid"], request.path_params["tid"]
        answer = world.test_case_test(pid, tid)
        return _json({"test_case_test": answer} if wraps_test_case_test(pid) else answer)

    async def results(request: Request) -> Response:
        pid, tid = request.path_params["pid"], request.path_params["tid"]
        executions = world.test_case_results(pid, tid)
        return _json({"test_case_results": executions} if wraps_results(pid) else executions)

    base = f"{prefix}/products/{{pid:int}}/test_case_tests/{{tid:int}}"
    return [Route(base, wrap(cases)), Route(f"{base}/results", wrap(results))]
