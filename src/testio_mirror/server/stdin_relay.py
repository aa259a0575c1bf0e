"""Ending a stdio session when the client stops reading stdout.

The SDK's stdio transport reads stdin in a worker thread blocked in ``read``, and ends a session
when that read sees end of file. A client that stops reading our answers but keeps stdin open
(crashed half-way, or closed one pipe only) leaves that thread parked forever: the answer that
fails with ``EPIPE`` cancels the session, but the transport still waits for the parked reader,
and the process never exits.

``StdinRelay`` puts a pipe of ours on fd 0 before the transport claims it, and copies the
client's stdin into it from a thread that also watches stdout. When the client closes stdin, or
stdout's reader goes away, the relay closes its pipe: the transport reads end of file and ends the
session as it does when a client hangs up, with the lifespan closed in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Iterator
from typing import Final

logger = logging.getLogger("testio_mirror.server")

STDIN_FD: Final = 0
STDOUT_FD: Final = 1
CHUNK_BYTES: Final = 1 << 16
JOIN_SECONDS: Final = 2.0
# poll reports these whatever was asked: on a pipe's write end, POLLERR means its reader is gone.
GONE: Final = select.POLLERR | select.POLLHUP | select.POLLNVAL


class StdinRelay:
    """Copies the client's stdin into a pipe on fd 0 from the moment it is made; closes the
    pipe when the session is over."""

    def __init__(self) -> None:
        self._client_stdin = os.dup(STDIN_FD)
        self._wire_stdout = os.dup(STDOUT_FD)
        self._stop_read, self._stop_write = os.pipe()
        relay_read, self._relay_write = os.pipe()
        os.dup2(relay_read, STDIN_FD)
        os.close(relay_read)
        self._thread = threading.Thread(target=self._relay, name="stdin-relay", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        poller = select.poll()
        poller.register(self._client_stdin, select.POLLIN)
        poller.register(self._wire_stdout, 0)
        poller.register(self._stop_read, select.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if self._stop_read in events:
                    return
                if events.get(self._wire_stdout, 0) & GONE:
                    logger.info("the client stopped reading stdout; the session ends")
                    return
                if self._client_stdin in events and not self._copy_chunk():
                    return
        finally:
            os.close(self._relay_write)

    def _copy_chunk(self) -> bool:
        """Copies what the client sent; False at its end of file (or when fd 0 is unusable)."""
        try:
            chunk = os.read(self._client_stdin, CHUNK_BYTES)
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._relay_write, view) :]
        except OSError:  # the transport is gone (EPIPE) or stdin broke: the session is over
            return False
        return bool(chunk)

    def close(self) -> None:
        """Stops the thread and gives fd 0 back to the client's stdin."""
        with contextlib.suppress(OSError):
            os.write(self._stop_write, b"x")
        self._thread.join(JOIN_SECONDS)
        os.dup2(self._client_stdin, STDIN_FD)
        if self._thread.is_alive():
            # Blocked writing into a pipe nobody reads any more (the client went on sending
            # after the session ended): the daemon thread ends with the process, and its
            # descriptors stay open until then.
            return
        for fd in (self._client_stdin, self._wire_stdout, self._stop_read, self._stop_write):
            os.close(fd)


@contextlib.contextmanager
def relayed_stdin() -> Iterator[None]:
    relay = StdinRelay()
    try:
        yield
    finally:
        relay.close()
