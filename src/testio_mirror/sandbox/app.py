"""The sandbox's HTTP face: the Customer API v2 routes, the gate in front of them, the admin API.

Every request below ``/customer/v2/`` passes the gate, in this order: it is timed and logged, waits
the configured latency, meets an injected fault if a rule matches, is checked for
``Authorization: Token <token>`` (401 otherwise), and only then reaches the route.

The admin API below ``/_sandbox/`` (same token, never logged, never faulted) lets a test in another
process steer a running sandbox:

=========================  =========================================================
``GET /_sandbox/health``   liveness and the account's counts
``GET|DELETE requests``    the request log / clear it
``GET|POST|DELETE faults`` list / add (a ``FaultRule`` as JSON) / clear fault rules
``GET|PUT config``         read / change the runtime knobs (``SandboxKnobs`` fields)
``POST evolve?steps=N``    move the account forward N steps
``GET snapshot``           everything the account holds now
``POST bugs/{id}/triage``  triage a bug as another TestIO user would (not an API write)
=========================  =========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, cast
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from testio_mirror.sandbox.errors import NotFoundError, UnprocessableError
from testio_mirror.sandbox.faults import (
    APPLYING_KINDS,
    FaultPlan,
    FaultRule,
    RequestLog,
    RequestRecord,
)
from testio_mirror.sandbox.test_case_routes import test_case_routes
from testio_mirror.sandbox.triage import TRIAGE_ACTIONS, wire_action
from testio_mirror.sandbox.wire_faults import (
    echo_body,
    hang,
    send_after_applying,
    send_fault,
    send_half,
    send_raw,
    send_trickled,
)
from testio_mirror.sandbox.world import SandboxWorld

API_PREFIX = "/customer/v2"
ADMIN_PREFIX = "/_sandbox"

logger = logging.getLogger("testio_mirror.sandbox")


@dataclass
class SandboxKnobs:
    """Behaviour that tests may change while the sandbox runs."""

    latency_ms: float = 0.0
    # The largest per_page honoured; bigger asks are silently capped, as an unknown server may.
    max_per_page: int = 100
    # How many tests a listing without ``page`` returns (some deployments answer the last 150).
    unpaged_limit: int = 150
    # Some staging deployments ignore paging and answer every test at once.
    ignore_paging: bool = False
    # Evolve the account once every N API requests (0 = never): changes land mid-listing.
    evolve_every_requests: int = 0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update, checking names and types.

        Raises:
            ValueError: unknown knob or unusable value.
        """
        known = {f.name: f for f in fields(self)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown knob {name!r}; knobs: {', '.join(known)}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")
            if name == "max_per_page" and value < 1:
                raise ValueError("max_per_page must be >= 1")
            checked[name] = type(current)(value)
        # All or nothing: a rejected update must not leave half its changes behind.
        for name, value in checked.items():
            setattr(self, name, value)


class FastJSONResponse(JSONResponse):
    """A JSON answer written by orjson: a page of bugs is ~60 KB, and the sandbox shares the
    machine with the client a benchmark measures, so its own CPU time should stay small."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int_list(raw: str, name: str) -> list[int]:
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise UnprocessableError(f"{name} must be a comma-separated list of integers") from None


def _positive_int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UnprocessableError(f"{name} must be an integer") from None
    if value < 1:
        raise UnprocessableError(f"{name} must be >= 1")
    return value


Handler = Callable[[Request], Awaitable[Response]]


class SandboxApp:
    """The ASGI application: API gate + API routes + admin routes."""

    def __init__(
        self,
        world: SandboxWorld,
        token: str,
        knobs: SandboxKnobs | None = None,
        faults: FaultPlan | None = None,
        requests: RequestLog | None = None,
        evolve_interval_seconds: float = 0.0,
    ) -> None:
        self.world = world
        self.knobs = knobs if knobs is not None else SandboxKnobs()
        self.faults = faults if faults is not None else FaultPlan()
        self.requests = requests if requests is not None else RequestLog()
        self._token = token
        self._evolve_interval = evolve_interval_seconds
        self._api_calls = 0
        self._routes = Starlette(
            routes=self._api_routes() + self._admin_routes(),
            exception_handlers={HTTPException: self._http_error},  # type: ignore[dict-item]
            lifespan=self._lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX + "/"):
            await self._gate(scope, receive, send)
        else:
            await self._routes(scope, receive, send)

    # -- the gate ----------------------------------------------------------------------------

    async def _gate(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        arrived = time.time()
        method = scope["method"]
        path = scope["path"][len(API_PREFIX) + 1 :].rstrip("/")
        fault = self.faults.take(method, path)
        status = 0
        logged = False

        def log() -> None:
            # Runs before the last body byte leaves, so a client that has its answer can already
            # see the request in the log; answers that never complete are logged in `finally`.
            nonlocal logged
            if logged:
                return
            logged = True
            ms = (time.perf_counter() - started) * 1000
            query = scope.get("query_string", b"").decode("latin-1")
            kind = fault.kind if fault else None
            self.requests.append(
                RequestRecord(method, path, query, status, round(ms, 3), kind, arrived)
            )
            logger.info("%s /%s?%s -> %s in %.1f ms", method, path, query, status, ms)
            self._count_api_call()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log()
            await send(message)

        try:
            if self.knobs.latency_ms > 0:
                await asyncio.sleep(self.knobs.latency_ms / 1000)
            if fault is not None and fault.kind == "hang":
                replay = await hang(fault.hang_seconds, receive)
                if replay is None:
                    return  # the client gave up: nothing was sent, the record keeps status 0
                receive = replay
            if fault is None or fault.kind == "hang":
                await self._respond(scope, receive, recording_send)
            elif fault.kind == "truncated":
                await send_half(lambda sink: self._respond(scope, receive, sink), recording_send)
            elif fault.kind == "trickle":
                await send_trickled(
                    lambda sink: self._respond(scope, receive, sink), recording_send, fault, receive
                )
            elif fault.kind in APPLYING_KINDS:
                await send_after_applying(
                    lambda sink: self._respond(scope, receive, sink), recording_send, fault, receive
                )
            elif fault.kind == "echo_secret":
                await send_raw(recording_send, *echo_body(fault, self._presented(scope)))
            else:
                await send_fault(fault, recording_send)
        finally:
            log()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._authorized(scope):
            await self._routes(scope, receive, send)
        else:
            await _error(401, "missing or wrong token: send Authorization: Token <token>")(
                scope, receive, send
            )

    def _authorized(self, scope: Scope) -> bool:
        return secrets.compare_digest(self._presented(scope), self._token)

    @staticmethod
    def _presented(scope: Scope) -> str:
        """The token an ``Authorization: Token <token>`` header presents ("" without one)."""
        headers = dict(scope["headers"])
        presented = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = presented.partition(" ")
        return value.strip() if scheme == "Token" else ""

    def _count_api_call(self) -> None:
        self._api_calls += 1
        every = self.knobs.evolve_every_requests
        if every and self._api_calls % every == 0:
            self.world.evolve()

    @staticmethod
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # Keep Starlette's headers: a 405 must say what is Allowed.
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        task = None
        if self._evolve_interval > 0:
            task = asyncio.create_task(self._evolve_forever())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _evolve_forever(self) -> None:
        while True:
            await asyncio.sleep(self._evolve_interval)
            report = self.world.evolve()
            logger.info("evolved: %s", report.as_json())

    # -- API routes --------------------------------------------------------------------------

    def _api_routes(self) -> list[Route]:
        p = API_PREFIX
        return [
            Route(f"{p}/products", self._wrap(self._products)),
            Route(f"{p}/products/{{pid:int}}", self._wrap(self._product)),
            Route(f"{p}/products/{{pid:int}}/features", self._wrap(self._features)),
            Route(
                f"{p}/products/{{pid:int}}/sections/{{sid:int}}/features",
                self._wrap(self._section_features),
            ),
            Route(f"{p}/products/{{pid:int}}/user_stories", self._wrap(self._user_stories)),
            Route(f"{p}/products/{{pid:int}}/exploratory_tests", self._wrap(self._tests)),
            Route(f"{p}/products/{{pid:int}}/test_environments", self._wrap(self._environments)),
            Route(f"{p}/exploratory_tests/{{tid:int}}", self._wrap(self._test)),
            Route(f"{p}/bugs", self._wrap(self._bugs)),
            Route(f"{p}/bugs/reject_reasons", self._wrap(self._reject_reasons)),
            Route(f"{p}/bugs/{{bid:int}}", self._wrap(self._bug)),
            Route(f"{p}/bugs/{{bid:int}}/{{action}}", self._wrap(self._triage), methods=["PUT"]),
            *test_case_routes(p, self.world, self._wrap),
        ]

    @staticmethod
    def _wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except NotFoundError as exc:
                return _error(404, str(exc))
            except UnprocessableError as exc:
                return _error(422, str(exc))

        return endpoint

    async def _products(self, request: Request) -> Response:
        return FastJSONResponse({"products": self.world.products()})

    async def _product(self, request: Request) -> Response:
        return FastJSONResponse({"product": self.world.product(request.path_params["pid"])})

    async def _features(self, request: Request) -> Response:
        return FastJSONResponse({"features": self.world.features(request.path_params["pid"])})

    async def _section_features(self, request: Request) -> Response:
        pid, sid = request.path_params["pid"], request.path_params["sid"]
        return FastJSONResponse({"features": self.world.section_features(pid, sid)})

    async def _user_stories(self, request: Request) -> Response:
        section_id = _positive_int(request, "section_id", None)
        stories = self.world.user_stories(request.path_params["pid"], section_id)
        return FastJSONResponse({"user_stories": stories})

    async def _environments(self, request: Request) -> Response:
        environments = self.world.test_environments(request.path_params["pid"])
        return FastJSONResponse({"test_environments": environments})

    async def _tests(self, request: Request) -> Response:
        pid = request.path_params["pid"]
        knobs = self.knobs
        page = _positive_int(request, "page", None)
        per_page = _positive_int(request, "per_page", 25)
        assert per_page is not None
        if knobs.ignore_paging:
            tests = self.world.tests_page(pid, 1, max(self.world.test_count(pid), 1))
        elif page is None:
            tests = self.world.tests_page(pid, 1, knobs.unpaged_limit)
        else:
            tests = self.world.tests_page(pid, page, min(per_page, knobs.max_per_page))
        return FastJSONResponse({"exploratory_tests": tests})

    async def _test(self, request: Request) -> Response:
        return FastJSONResponse({"exploratory_test": self.world.test(request.path_params["tid"])})

    async def _bugs(self, request: Request) -> Response:
        query = request.query_params
        filters: dict[str, list[int] | None] = {}
        for param, key in (
            ("filter_test_cycle_ids", "test_ids"),
            ("filter_product_ids", "product_ids"),
            ("filter_section_ids", "section_ids"),
        ):
            raw = query.get(param)
            filters[key] = _int_list(raw, param) if raw is not None else None
        bugs = self.world.bugs(**filters, export_status=query.get("export_status"))
        return FastJSONResponse({"bugs": bugs})

    async def _bug(self, request: Request) -> Response:
        return FastJSONResponse({"bug": self.world.bug(request.path_params["bid"])})

    async def _reject_reasons(self, request: Request) -> Response:
        return FastJSONResponse({"reject_reasons": self.world.reject_reasons()})

    async def _triage(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in TRIAGE_ACTIONS:
            raise NotFoundError(f"unknown bug action {action!r}")
        body = await _read_body(request)
        bug = self.world.triage(
            request.path_params["bid"],
            action,
            reason=_optional_str(body.get("reason")),
            comment=_optional_str(body.get("comment")),
        )
        return FastJSONResponse({"bug": bug})

    # -- admin routes ------------------------------------------------------------------------

    def _admin_routes(self) -> list[Route]:
        a = ADMIN_PREFIX
        return [
            Route(f"{a}/health", self._admin(self._health)),
            Route(f"{a}/requests", self._admin(self._requests), methods=["GET", "DELETE"]),
            Route(f"{a}/faults", self._admin(self._faults), methods=["GET", "POST", "DELETE"]),
            Route(f"{a}/config", self._admin(self._config), methods=["GET", "PUT"]),
            Route(f"{a}/evolve", self._admin(self._evolve), methods=["POST"]),
            Route(f"{a}/snapshot", self._admin(self._snapshot)),
            Route(
                f"{a}/bugs/{{bid:int}}/triage",
                self._admin(self._as_person),
                methods=["POST"],
            ),
        ]

    def _admin(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not self._authorized(request.scope):
                return _error(401, "missing or wrong token: send Authorization: Token <token>")
            try:
                return await handler(request)
            except (ValueError, TypeError) as exc:
                return _error(422, str(exc))
            except NotFoundError as exc:
                return _error(404, str(exc))

        return endpoint

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "counts": self.world.counts()})

    async def _requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.requests.clear()
        return JSONResponse({"requests": [r.as_json() for r in self.requests.records()]})

    async def _faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
        elif request.method == "POST":
            body = await _read_body(request)
            self.faults.add(FaultRule(**body))
        return JSONResponse({"faults": [r.as_json() for r in self.faults.rules()]})

    async def _config(self, request: Request) -> Response:
        if request.method == "PUT":
            self.knobs.update(await _read_body(request))
        return JSONResponse({"config": asdict(self.knobs)})

    async def _evolve(self, request: Request) -> Response:
        steps = _positive_int(request, "steps", 1)
        assert steps is not None
        return JSONResponse({"evolved": self.world.evolve(steps).as_json()})

    async def _snapshot(self, request: Request) -> Response:
        return JSONResponse({"snapshot": self.world.snapshot()})

    async def _as_person(self, request: Request) -> Response:
        # Another TestIO user's decision: the account changes, the request log does not.
        body = await _read_body(request)
        bug = self.world.triage(
            request.path_params["bid"],
            wire_action(str(body.get("action", ""))),
            reason=_optional_str(body.get("reason")),
            comment=_optional_str(body.get("comment")),
        )
        return JSONResponse({"bug": bug})


async def _read_body(request: Request) -> dict[str, Any]:
    """A JSON object or a form body; an empty body is an empty object."""
    raw = await request.body()
    if not raw.strip():
        return {}
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise UnprocessableError("the body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise UnprocessableError("the body must be a JSON object")
        return cast(dict[str, Any], parsed)
    return {key: values[-1] for key, values in parse_qs(raw.decode()).items()}


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
