"""The stdio wire between the client and the SDK: hostile lines answered, and the session ended
when the client stops reading stdout.

The SDK's stdio transport drops a line it cannot validate without an answer, so a client that
sent one waits forever. It also reads stdin in a worker thread blocked in ``read``, and ends a
session only when that read sees end of file: a client that stops reading our answers but keeps
stdin open leaves that thread parked forever.

``StdinRelay`` puts pipes of ours on fd 0 and fd 1 before the transport claims them. One thread
copies the client's stdin into the SDK's pipe line by line, vetting each line first
(``jsonrpc_envelope.vet_message``); a refused line never reaches the SDK, and its JSON-RPC error
is queued for stdout. Another thread copies the SDK's output to the client's stdout and writes
the queued errors only between the SDK's lines, so every line on the wire is whole. When the
client closes stdin, or stdout's reader goes away, the SDK's stdin pipe is closed: the transport
reads end of file and ends the session as it does when a client hangs up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
from collections.abc import Iterator
from typing import Final

from testio_mirror.server.jsonrpc_envelope import vet_message

logger = logging.getLogger("testio_mirror.server")

STDIN_FD: Final = 0
STDOUT_FD: Final = 1
CHUNK_BYTES: Final = 1 << 16
JOIN_SECONDS: Final = 2.0
# Long enough to hand the last answers to a client that is still reading.
FLUSH_SECONDS: Final = 10.0
# Refusals waiting for stdout; past this the client's further lines wait (a client that floods
# hostile lines without reading the answers holds a bounded queue, not ever more memory).
QUEUED_ANSWERS: Final = 1024
# poll reports these whatever was asked: on a pipe's write end, POLLERR means its reader is gone.
GONE: Final = select.POLLERR | select.POLLHUP | select.POLLNVAL


def _write_all(fd: int, data: bytes) -> None:
    """Raises OSError when ``fd`` cannot take it (EPIPE: its reader is gone)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class StdinRelay:
    """Relays stdin (vetted) to the SDK and the SDK's output to stdout from the moment it is
    made; ends the SDK's stdin when the session is over."""

    def __init__(self) -> None:
        self._client_stdin = os.dup(STDIN_FD)
        self._wire_stdout = os.dup(STDOUT_FD)
        self._stop_in_read, self._stop_in_write = os.pipe()
        self._stop_out_read, self._stop_out_write = os.pipe()
        self._wake_read, self._wake_write = os.pipe()
        relay_read, self._relay_write = os.pipe()
        self._sdk_output, sdk_output_write = os.pipe()
        os.dup2(relay_read, STDIN_FD)
        os.dup2(sdk_output_write, STDOUT_FD)
        os.close(relay_read)
        os.close(sdk_output_write)
        self._errors: queue.Queue[bytes] = queue.Queue(QUEUED_ANSWERS)
        self._client_gone = False
        self._inbound = threading.Thread(target=self._relay_in, name="stdin-relay", daemon=True)
        self._outbound = threading.Thread(target=self._relay_out, name="stdout-relay", daemon=True)
        self._inbound.start()
        self._outbound.start()

    # --- stdin -> SDK ---------------------------------------------------------------------

    def _relay_in(self) -> None:
        poller = select.poll()
        poller.register(self._client_stdin, select.POLLIN)
        poller.register(self._stop_in_read, select.POLLIN)
        head = bytearray()
        try:
            while True:
                events = dict(poller.poll())
                if self._stop_in_read in events:
                    return
                if self._client_stdin in events and not self._copy_lines(head):
                    return
        finally:
            os.close(self._relay_write)

    def _copy_lines(self, head: bytearray) -> bool:
        """Passes on the whole lines the client sent; False at its end of file (or when a pipe
        broke)."""
        try:
            chunk = os.read(self._client_stdin, CHUNK_BYTES)
        except OSError:  # stdin broke: the session is over
            return False
        if not chunk:
            if head.strip():
                self._pass_line(bytes(head))
            return False
        searched = len(head)
        head += chunk
        while (end := head.find(b"\n", searched)) >= 0:
            line = bytes(head[: end + 1])
            del head[: end + 1]
            searched = 0
            if not self._pass_line(line):
                return False
        return True

    def _pass_line(self, line: bytes) -> bool:
        """Hands ``line`` to the SDK, or queues the error that answers it; False when the SDK's
        pipe is gone."""
        if not line.strip():
            return True  # not a message; the SDK would only log a failed parse
        rejection = vet_message(line)
        if rejection is not None:
            logger.debug("refused a message from the client: %s", rejection.message)
            self._errors.put(rejection.answer())
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"x")
            return True
        try:
            _write_all(self._relay_write, line)
        except OSError:  # the transport is gone (EPIPE): the session is over
            return False
        return True

    # --- SDK -> stdout --------------------------------------------------------------------

    def _relay_out(self) -> None:
        poller = select.poll()
        poller.register(self._sdk_output, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        poller.register(self._wire_stdout, 0)
        poller.register(self._stop_out_read, select.POLLIN)
        pending = bytearray()  # SDK output not yet on the wire: at most the head of a line
        while True:
            events = dict(poller.poll())
            if events.get(self._wire_stdout, 0) & GONE:
                poller.unregister(self._wire_stdout)
                self._lose_client()
            if events.get(self._sdk_output, 0):
                chunk = os.read(self._sdk_output, CHUNK_BYTES)
                if not chunk:
                    poller.unregister(self._sdk_output)
                pending += chunk
            if self._wake_read in events:
                os.read(self._wake_read, CHUNK_BYTES)
            if self._stop_out_read in events:
                pending += self._rest_of_sdk_output()
                self._write_out(pending, final=True)
                return
            self._write_out(pending, final=False)

    def _rest_of_sdk_output(self) -> bytes:
        os.set_blocking(self._sdk_output, False)
        rest = bytearray()
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._sdk_output, CHUNK_BYTES):
                rest += chunk
        return bytes(rest)

    def _write_out(self, pending: bytearray, *, final: bool) -> None:
        """Writes the SDK's whole lines, then the queued errors when no line is half written."""
        end = len(pending) if final else pending.rfind(b"\n") + 1
        if end:
            self._to_client(bytes(pending[:end]))
            del pending[:end]
        if pending:
            return
        while True:
            try:
                answer = self._errors.get_nowait()
            except queue.Empty:
                return
            self._to_client(answer)

    def _to_client(self, data: bytes) -> None:
        if self._client_gone:
            return  # drained all the same, so the SDK never blocks on a full pipe
        try:
            _write_all(self._wire_stdout, data)
        except OSError:
            self._lose_client()

    def _lose_client(self) -> None:
        if not self._client_gone:
            self._client_gone = True
            logger.info("the client stopped reading stdout; the session ends")
            with contextlib.suppress(OSError):
                os.write(self._stop_in_write, b"x")

    def close(self) -> None:
        """Stops both threads, the SDK's last output written, and gives fd 0 and fd 1 back."""
        with contextlib.suppress(OSError):
            os.write(self._stop_in_write, b"x")
        self._inbound.join(JOIN_SECONDS)
        with contextlib.suppress(OSError):
            os.write(self._stop_out_write, b"x")
        self._outbound.join(FLUSH_SECONDS)
        os.dup2(self._client_stdin, STDIN_FD)
        os.dup2(self._wire_stdout, STDOUT_FD)
        if self._inbound.is_alive() or self._outbound.is_alive():
            # Blocked on a pipe nobody serves any more (the client went on sending after the
            # session ended, or stopped reading without closing): the daemon threads end with
            # the process, and their descriptors stay open until then.
            return
        for fd in (
            self._client_stdin,
            self._wire_stdout,
            self._sdk_output,
            self._stop_in_read,
            self._stop_in_write,
            self._stop_out_read,
            self._stop_out_write,
            self._wake_read,
            self._wake_write,
        ):
            os.close(fd)


@contextlib.contextmanager
def relayed_stdin() -> Iterator[None]:
    relay = StdinRelay()
    try:
        yield
    finally:
        relay.close()
