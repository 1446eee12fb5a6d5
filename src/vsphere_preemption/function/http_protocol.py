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

And it closes a connection in the middle of a request the way RFC 9112 (section 9.6) asks: a
413, say, is answered while the client is still sending the body it refused. Closed at once,
the unread data turns the close into a reset, and a reset can reach the client before it has
read the answer: on a busy machine, a client sending 2 MiB saw a broken pipe instead of the
413 in nearly half of its tries, and a broker retries a reset where it gives up on a 413. So
the answer is written, the write side is shut (the client sees the end of the answer), and
what still comes is read and thrown away until the client closes, for at most LINGER_SECONDS
and LINGER_BYTES; then the connection is closed. A connection idle between requests (its
keep-alive timeout, a stop) is closed at once as before: nothing unread is there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport whose writes of one event-loop turn are sent as one."""

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        closer: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._closer = closer if closer is not None else transport.close
        self.closing = False  # closed by the server: lingering, or closed

    def write(self, data: bytes) -> None:
        if self.closing:
            return  # nothing goes out after the close (nor after the write side's shutdown)
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
        if self.closing:
            return
        self._flush()
        self.closing = True
        self._closer()

    def is_closing(self) -> bool:
        return self.closing or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # everything else is the socket's transport's
        return getattr(self._transport, name)


# The request line and headers together: a vCenter event's are well under 2 KiB. Go's
# net/http allows 1 MiB; 64 KiB is what nginx and most proxies in front would pass.
MAX_HEAD = 64 * 1024
# How long, and how much, a connection closed in the middle of a request is still read (and
# thrown away) once its answer is written: long enough for a client on a busy machine to
# finish sending a body of a few MiB and read the answer; short enough that a client which
# never stops holds nothing for long.
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    _head_bytes = 0  # bytes received while the current request's head stays incomplete
    _in_head = True  # between a request's end (or the connection's start) and its headers
    _moved = False  # a head or a request ended within the chunk being parsed
    _idle = True  # no request begun since the last one ended (or the connection opened)
    _raw: asyncio.Transport | None = None  # the socket's transport (self.transport wraps it)
    _lingering = False  # closing: the answer is out, what comes is read and dropped
    _linger_left = 0  # bytes it may still read and drop
    _linger_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self._close_now()
            return
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

    def on_message_begin(self) -> None:
        self._idle = False
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._in_head, self._moved = True, True  # what comes next is the next request's head
        self._idle = True
        super().on_message_complete()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods.)
        self._raw = cast(asyncio.Transport, transport)
        coalescing = _CoalescingTransport(self._raw, self.loop, self._close)
        super().connection_made(cast(asyncio.Transport, coalescing))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def _close(self) -> None:
        """Close, in stages when a request is still arriving (RFC 9112, 9.6): the write side
        first, then what comes is read and dropped until the client closes (its end of file
        closes the transport), LINGER_SECONDS pass or LINGER_BYTES come."""
        raw = self._raw
        assert raw is not None
        if self._idle or raw.is_closing() or not raw.can_write_eof():
            raw.close()
            return
        try:
            raw.write_eof()  # after what is buffered: the answer reaches the client whole
        except (OSError, RuntimeError):
            raw.close()
            return
        self._lingering, self._linger_left = True, LINGER_BYTES
        raw.resume_reading()  # flow control may have paused it while the app did not read
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # Closed before the app answered (a request HTTP cannot parse, or a stop): the app
            # hears of it now, as it would of the connection lost.
            cycle.disconnected = True
            cycle.message_event.set()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self._close_now)

    def _close_now(self) -> None:
        if self._raw is not None and not self._raw.is_closing():
            self._raw.close()
