"""uvicorn's httptools protocol, writing each response with one system call.

uvicorn writes a response's status line and headers when the app starts it, and the body when
the app sends it: two `send` calls on the socket for every event, and on loopback each costs
about as much as parsing the request (py-spy, BENCHMARKS.md). Here the transport is wrapped so
that what is written during one turn of the event loop goes out together at the start of the
next: the headers and the body of a reply leave in one call. Nothing is held longer than
that turn, and closing the connection sends what is pending first.

It also bounds a request's head: httptools, unlike h11, sets no limit, and a header line is
held in memory until it ends. A head still incomplete after MAX_HEAD bytes is answered 400
and the connection closed, as h11 (uvicorn's other parser) does past its own limit.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport whose writes of one event-loop turn are sent as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the socket's transport's
        return getattr(self._transport, name)


# The request line and headers together: a vCenter event's are well under 2 KiB. Go's
# net/http allows 1 MiB; 64 KiB is what nginx and most proxies in front would pass.
MAX_HEAD = 64 * 1024


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    _head_bytes = 0  # bytes received while the current request's head stays incomplete
    _in_head = True  # between a request's end (or the connection's start) and its headers
    _moved = False  # a head or a request ended within the chunk being parsed

    def data_received(self, data: bytes) -> None:
        self._moved = False
        super().data_received(data)
        # Counted after parsing, and only chunks in which nothing ended: a chunk that
        # completes a head, or carries requests and the start of the next one, never
        # counts (so memory stays within MAX_HEAD plus one read).
        if self._in_head and not self._moved and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self.send_400_response(f"Request head over {MAX_HEAD} bytes.")

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._moved = False, 0, True
        # A head that came whole in one read is measured here; raising makes it the
        # parser's error, which uvicorn answers 400 and closes.
        if len(self.url) + sum(len(n) + len(v) for n, v in self.headers) > MAX_HEAD:
            raise ValueError(f"request head over {MAX_HEAD} bytes")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._moved = True, True  # what comes next is the next request's head
        super().on_message_complete()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods.)
        coalescing = _CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))
