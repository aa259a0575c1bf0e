"""stdio served on the event loop's own pipes, without a thread hand-off per message.

The SDK's stdio transport reads and writes through anyio's file wrappers, which send every
line read, every write and every flush to a worker thread: three hand-offs per tool call, about
0.2 ms each on a small machine and more on a busy one. When stdin and stdout are pipes or
sockets (as every MCP client spawns its server), this transport registers them with the event
loop instead, which takes 0.5 to 0.9 ms off each call here (docs/performance.md). Anything else (a
terminal, a file) is served by the SDK's transport.

Like the SDK's, it takes the wire away from file descriptors 0 and 1 while serving: fd 0 reads
the null device and fd 1 writes to stderr, so a stray ``print`` or a child process can never
corrupt the protocol. Both are put back when serving ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO, Any

import anyio
import mcp_types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage

logger = logging.getLogger(__name__)

# A line longer than this is read in pieces of this size; no line is ever refused.
READ_CHUNK_BYTES = 1 << 20


def pipes_servable(stdin_fd: int = 0, stdout_fd: int = 1) -> bool:
    """True when both descriptors are pipes or sockets, which the event loop can watch.

    A terminal is left to the SDK: the loop would switch it to non-blocking mode, and the
    shell sharing it would inherit that after the server exits."""
    if sys.platform == "win32":  # pragma: no cover - the SDK serves Windows consoles
        return False
    try:
        modes = (os.fstat(stdin_fd).st_mode, os.fstat(stdout_fd).st_mode)
    except OSError:
        return False
    return all(stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) for mode in modes)


@contextlib.contextmanager
def claimed_wire(stdin_fd: int = 0, stdout_fd: int = 1) -> Iterator[tuple[int, int]]:
    """Private duplicates of stdin and stdout for the protocol, with the standard descriptors
    pointed at the null device and at stderr meanwhile; restored on exit."""
    sys.stdout.flush()
    wire_in, wire_out = os.dup(stdin_fd), os.dup(stdout_fd)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, stdin_fd)
        os.dup2(2, stdout_fd)
        yield wire_in, wire_out
    finally:
        os.close(null)
        for wire, std in ((wire_in, stdin_fd), (wire_out, stdout_fd)):
            with contextlib.suppress(OSError):
                # The loop made the pipe non-blocking; whoever shares it expects it blocking.
                os.set_blocking(wire, True)
                os.dup2(wire, std)
            os.close(wire)


class LineReader:
    """Newline-delimited messages from a pipe registered with the running loop."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readline(self) -> bytes:
        """The next line with its newline (the last one may lack it); ``b""`` at the end of
        input. A line longer than the reader's limit is gathered in pieces, never refused."""
        pieces: list[bytes] = []
        while True:
            try:
                pieces.append(await self._reader.readuntil(b"\n"))
                break
            except asyncio.IncompleteReadError as end:
                pieces.append(end.partial)
                break
            except asyncio.LimitOverrunError as overrun:
                pieces.append(await self._reader.readexactly(overrun.consumed))
        return b"".join(pieces)


def _borrowed(fd: int, mode: str) -> IO[bytes]:
    """A file object over ``fd`` that leaves it open when closed (``claimed_wire`` owns it)."""
    return os.fdopen(fd, mode, buffering=0, closefd=False)


async def open_wire(
    wire_in: int, wire_out: int, limit: int = READ_CHUNK_BYTES
) -> tuple[LineReader, asyncio.StreamWriter]:
    """Register the two descriptors with the running loop (they stay open when it lets go)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), _borrowed(wire_in, "rb")
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, _borrowed(wire_out, "wb")
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return LineReader(reader), writer


async def _pump_in(
    lines: LineReader, sink: MemoryObjectSendStream[SessionMessage | Exception]
) -> None:
    async with sink:
        while line := await lines.readline():
            if not line.strip():
                continue
            try:
                message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except Exception as exc:  # the session answers or logs a malformed message
                await sink.send(exc)
                continue
            await sink.send(SessionMessage(message))


async def _pump_out(
    source: MemoryObjectReceiveStream[SessionMessage], writer: asyncio.StreamWriter
) -> None:
    async with source:
        async for session_message in source:
            body = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
            writer.write(body.encode() + b"\n")
            try:
                await writer.drain()
            except ConnectionError:
                # The client closed its end: nobody reads answers any more. Keep taking them,
                # so the server is never stuck on a full stream, until the session ends.
                logger.debug("the client stopped reading stdout")


async def serve_on_pipes(server: MCPServer[Any], wire_in: int, wire_out: int) -> None:
    """Serve ``server`` over the two descriptors until the client closes its end."""
    lines, writer = await open_wire(wire_in, wire_out)
    inbound_send, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outbound, outbound_receive = anyio.create_memory_object_stream[SessionMessage](0)
    # The SDK keeps the low-level server private; its own in-memory client reaches it the same way.
    lowlevel = server._lowlevel_server
    try:
        async with anyio.create_task_group() as writing:
            # Answers already produced are written out before the writer ends.
            writing.start_soon(_pump_out, outbound_receive, writer)
            async with anyio.create_task_group() as reading, outbound:
                reading.start_soon(_pump_in, lines, inbound_send)
                await lowlevel.run(inbound, outbound, lowlevel.create_initialization_options())
                # Ended by the client closing stdin, or by the server itself stopping.
                reading.cancel_scope.cancel()
    finally:
        writer.transport.close()


def serve_stdio_pipes(server: MCPServer[Any]) -> None:
    """Serve over the process's stdin and stdout, which must be pipes or sockets."""
    with claimed_wire() as (wire_in, wire_out):
        anyio.run(serve_on_pipes, server, wire_in, wire_out)
