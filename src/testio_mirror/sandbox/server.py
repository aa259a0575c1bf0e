"""Running the sandbox: in a background thread for tests and the demo, or in the foreground.

Example::

    with SandboxServer(SandboxConfig(dataset=DatasetSpec(products=2))) as sandbox:
        httpx.get(f"{sandbox.base_url}/products",
                  headers={"Authorization": f"Token {sandbox.token}"})
        sandbox.faults.add(FaultRule(kind="error", path="bugs", status=524))
        sandbox.requests.records()      # what the client asked for
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import uvicorn

from testio_mirror.errors import MirrorError
from testio_mirror.sandbox.app import ADMIN_PREFIX, API_PREFIX, SandboxApp, SandboxKnobs
from testio_mirror.sandbox.dataset import JSON, DatasetSpec
from testio_mirror.sandbox.faults import FaultPlan, RequestLog
from testio_mirror.sandbox.triage import wire_action
from testio_mirror.sandbox.wire_faults import quiet_deliberate_disconnects
from testio_mirror.sandbox.world import SandboxWorld

_START_TIMEOUT_SECONDS = 15.0
_STOP_TIMEOUT_SECONDS = 10.0


def new_token() -> str:
    """A random sandbox token (the sandbox holds no secrets, but tokens should not be guessable)."""
    return secrets.token_urlsafe(18)


class SandboxError(MirrorError):
    """The sandbox could not start (address in use, not a loopback address, ...)."""


@dataclass
class SandboxConfig:
    """How to build and serve a sandbox."""

    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    token: str = field(default_factory=new_token)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port
    knobs: SandboxKnobs = field(default_factory=SandboxKnobs)
    evolve_interval_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.token:
            raise SandboxError("the sandbox token must not be empty")
        if self.host == "localhost":
            self.host = "127.0.0.1"
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise SandboxError(f"the sandbox only serves loopback addresses, not {self.host!r}")

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def url_host(self) -> str:
        """The host as written in a URL (IPv6 addresses in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host


class SandboxServer:
    """A sandbox account served over HTTP on loopback."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.world = SandboxWorld(self.config.dataset)
        self.faults = FaultPlan()
        self.requests = RequestLog()
        self.app = SandboxApp(
            self.world,
            self.config.token,
            knobs=self.config.knobs,
            faults=self.faults,
            requests=self.requests,
            evolve_interval_seconds=self.config.evolve_interval_seconds,
        )
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return self.config.token

    @property
    def knobs(self) -> SandboxKnobs:
        return self.config.knobs

    @property
    def port(self) -> int:
        if self._socket is None:
            raise SandboxError("the sandbox is not bound yet")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """The value for TESTIO_CUSTOMER_API_BASE_URL."""
        return f"http://{self.config.url_host}:{self.port}{API_PREFIX}"

    @property
    def admin_url(self) -> str:
        """Where the admin API lives (``/health``, ``/faults``, ...); it takes the same token."""
        return f"http://{self.config.url_host}:{self.port}{ADMIN_PREFIX}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def triage_as_person(
        self, bug_id: int, action: str, reason: str | None = None, comment: str | None = None
    ) -> JSON:
        """Triage a bug as another TestIO user would (a conflict for the mirror): the account
        changes, no API request is logged. ``action`` as the API (``mark_as_known``) or the
        mirror's tools (``mark_known``) name it; answers the bug as it is now.

        Raises:
            NotFoundError: unknown bug.
            UnprocessableError: unknown action, or a reject without a known reason key.
        """
        return self.world.triage(bug_id, wire_action(action), reason=reason, comment=comment)

    def bind(self) -> None:
        """Take the port now, so its address is known before serving starts.

        Raises:
            SandboxError: the address cannot be bound.
        """
        if self._socket is not None:
            return
        # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only for sockets that say they
        # are TCP, and without that every small answer waits for a delayed ACK.
        sock = socket.socket(self.config.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            where = f"{self.config.host}:{self.config.port}"
            raise SandboxError(f"cannot listen on {where}: {exc.strerror}") from None
        self._socket = sock

    def start(self) -> Self:
        """Serve in a background thread; returns once the server accepts connections.

        Raises:
            SandboxError: the server did not start.
        """
        self.bind()
        assert self._socket is not None
        server = self._make_server()
        sockets = [self._socket]
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": sockets}, name="testio-sandbox", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not server.started:
            if not thread.is_alive():
                raise SandboxError("the sandbox server stopped while starting")
            if waited >= _START_TIMEOUT_SECONDS:
                self.stop()
                raise SandboxError("the sandbox server did not start in time")
            deadline.wait(0.01)
            waited += 0.01
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C or SIGTERM)."""
        self.bind()
        assert self._socket is not None
        self._server = self._make_server()
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._close_socket()

    def stop(self) -> None:
        """Stop serving and wait for the server thread; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(_STOP_TIMEOUT_SECONDS)
            self._thread = None
        self._server = None
        self._close_socket()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _make_server(self) -> uvicorn.Server:
        quiet_deliberate_disconnects()
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
            # Keep-alive long enough that a client's pooled connections are reused across pages.
            timeout_keep_alive=30,
        )
        return uvicorn.Server(config)

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
