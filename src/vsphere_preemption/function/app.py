"""The function's ASGI app: the event endpoint, Knative's health paths, /metrics.

`POST /` takes one CloudEvent (binary or structured mode). The body is read as a stream and
refused with 413 as soon as it passes 1 MiB, before it is all in memory; a body that has not
all come BODY_TIMEOUT after it was first asked for (a client that sent less than its
Content-Length, or stalled) is answered 408 and the connection closed. Errors are one-line
JSON (`{"error": "..."}`), including 404 and 405; an unexpected exception is logged with its
traceback and answered 500 with a reason, and the next request is served as usual.

A plain ASGI callable rather than a framework: four fixed paths need no router, and the event
endpoint is the hot path (an ignored event costs a few tens of microseconds of our own work;
a framework's request, routing and response objects cost as much again, see BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from types import SimpleNamespace
from typing import Any

from vsphere_preemption.function.auth import CHALLENGE, UNAUTHORIZED, authorized
from vsphere_preemption.function.cloudevent_http import RequestHeaders
from vsphere_preemption.function.handler import EventHandler
from vsphere_preemption.function.metrics import Metrics
from vsphere_preemption.function.temporal_link import TemporalLink
from vsphere_preemption.logs import get_logger
from vsphere_preemption.settings import FunctionSettings
from vsphere_preemption.settings.function import TemporalConnect

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1024 * 1024  # 1 MiB: a vCenter event is a few KiB
BODY_TIMEOUT = 10.0  # seconds for a body to come (BODY_TIMEOUT): a broker sends it at once
# After a 413, what is left of the body is read and dropped for at most this long and this much
# (as function/http_protocol.py's LINGER_*), for a server that lets the app read after
# answering: closed with the body unread, the close would be a reset that can overtake the 413.
DRAIN_SECONDS = 2.0
DRAIN_BYTES = 16 * 1024 * 1024
JSON = b"application/json"
# Compact and UTF-8, as web frameworks write JSON; one encoder, not one per reply.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client went away before its whole body was read: there is no one to answer."""


class BodyTimeout(Exception):
    """The body did not all come in time; `received` bytes of it did."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


class BodyDeadlines:
    """Bounds how long a request's body may take to arrive, for every request at once.

    A timer per request (`asyncio.timeout`, or `loop.call_at`) costs 4 to 8 µs of an ignored
    event's ~90, and the body nearly always came with the head. So a reader is only noted
    with its deadline (a dict entry), and one watcher task, running while anyone reads,
    looks every `tick` and cancels the readers past their deadline: a body may take up to
    `timeout + tick`."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.tick = min(max(timeout / 4, 0.01), 1.0)
        self._clock = clock
        self._readers: dict[asyncio.Task[Any], float] = {}
        self._overdue: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None

    async def read(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        """read_body, or BodyTimeout when `timeout` passed first."""
        task = asyncio.current_task()
        if task is None or self.timeout <= 0:
            return await read_body(headers, receive)
        received = [0]
        self._readers[task] = self._clock() + self.timeout
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="body-deadlines")
        try:
            return await read_body(headers, receive, received=received)
        except asyncio.CancelledError:
            if task not in self._overdue:
                raise
            task.uncancel()
            raise BodyTimeout(received[0]) from None
        finally:
            del self._readers[task]
            self._overdue.discard(task)

    async def _watch(self) -> None:
        try:
            while self._readers:
                await asyncio.sleep(self.tick)
                now = self._clock()
                for task, deadline in list(self._readers.items()):
                    if deadline <= now and task not in self._overdue:
                        self._overdue.add(task)
                        task.cancel()
        finally:
            self._watcher = None

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


def request_headers(scope: Scope) -> RequestHeaders:
    """The request's headers by name, in lower case as ASGI servers give them; a header sent
    twice keeps its first value (as Go's Header.Get reads it), and a CloudEvents header sent
    twice is noted, for the event to be refused (cloudevent_http.RequestHeaders)."""
    return RequestHeaders(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )


async def read_body(
    headers: Mapping[str, str],
    receive: Receive,
    limit: int = MAX_BODY,
    received: list[int] | None = None,
) -> bytes:
    """The body, or BodyTooLarge as soon as more than `limit` bytes are announced or read
    (`received`, when given, counts the bytes read so far)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = b""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if received is not None:
            received[0] = size
        if size > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            if not parts:
                return chunk  # the usual case: the whole body in one message, no copy
            parts.append(chunk)
            return body.join(parts)
        parts.append(chunk)


async def drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body, until it ends or DRAIN_SECONDS or DRAIN_BYTES
    pass (RFC 9112, 9.6). uvicorn answers a read after the answer with a disconnect at once
    (its protocol, function/http_protocol.py, drains instead); granian lets the app read on."""
    left = DRAIN_BYTES
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while left > 0:
                message = await receive()
                left -= len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    raw = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def respond_json(
    send: Send, status: int, content: Any, headers: Iterable[tuple[str, str]] = ()
) -> None:
    await respond(send, status, _encode(content).encode(), headers=headers)


class FunctionApp:
    """The ASGI app. Its `state` holds the Temporal `link` and the `metrics`."""

    def __init__(
        self,
        handler: EventHandler,
        link: TemporalLink,
        metrics: Metrics,
        log: Any,
        *,
        token: bytes | None = None,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.state = SimpleNamespace(link=link, metrics=metrics)
        self._bodies = BodyDeadlines(body_timeout)
        self._handler = handler
        self._token = token  # FUNCTION_TOKEN_FILE's token: POST / needs it (function/auth.py)
        self._link = link
        self._metrics = metrics
        self._log = log
        # path -> (the methods it answers, its endpoint); GET paths answer HEAD too.
        self._routes: dict[str, tuple[tuple[str, ...], Endpoint]] = {
            "/": (("POST",), self.event),
            "/health/liveness": (("GET", "HEAD"), self.liveness),
            "/health/readiness": (("GET", "HEAD"), self.readiness),
            "/metrics": (("GET", "HEAD"), self.prometheus),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            route = self._routes.get(path)
            if route is None:
                await respond_json(send, 404, {"error": f"{method} {path}: Not Found"})
            elif method not in route[0]:
                message = f"{method} {path}: Method Not Allowed"
                if path == "/":
                    message += " (POST CloudEvents here)"
                allow = [("Allow", ", ".join(route[0]))]
                await respond_json(send, 405, {"error": message}, allow)
            else:
                try:
                    await route[1](scope, receive, send)
                except Exception as exc:  # noqa: BLE001 (logged; the event endpoint answers its own)
                    self._log.exception("request failed", path=path, error=type(exc).__name__)
                    await respond_json(
                        send, 500, {"error": f"internal error: {type(exc).__name__}"}
                    )
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def event(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /: one CloudEvent in, the decision out."""
        self._metrics.received.inc()
        headers = request_headers(scope)
        # Before the body is read: a refused request costs no more than its headers.
        if not authorized(headers, self._token):
            reply = self._handler.reject(401, "unauthorized", UNAUTHORIZED)
            await respond_json(send, 401, reply.body, CHALLENGE.items())
            return
        try:
            body = await self._bodies.read(headers, receive)
        except BodyTooLarge:
            reply = self._handler.reject(413, "too_large", f"request body over {MAX_BODY} bytes")
            # The rest of the body is never read: the connection cannot be reused.
            await respond_json(send, 413, reply.body, [("Connection", "close")])
            await drain(receive)
            return
        except BodyTimeout as late:
            declared = headers.get("content-length")
            of = f" of {declared}" if declared is not None else ""
            message = (
                f"request body not received within {self._bodies.timeout:g} s "
                f"({late.received}{of} bytes came)"
            )
            reply = self._handler.reject(408, "body_timeout", message)
            # What the client still sends would be read as the next request: close.
            await respond_json(send, 408, reply.body, [("Connection", "close")])
            return
        except ClientGone:
            # The client went away mid-body, or its framing broke (a bad chunk: the server
            # has answered 400 already). Nobody is left to answer: not an error of ours.
            self._log.info("request body not received: the client disconnected")
            return
        try:
            reply = await self._handler.handle(headers, body)
        except Exception as exc:  # noqa: BLE001 (logged: a bug must not take the next request down)
            self._log.exception("event handling failed", error=type(exc).__name__)
            await respond_json(send, 500, {"error": f"internal error: {type(exc).__name__}"})
            return
        await respond_json(send, reply.status, reply.body, reply.headers.items())

    async def liveness(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, b'{"status":"alive"}')

    async def readiness(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._link.ready:
            await respond(send, 200, b'{"status":"ready"}')
        else:
            reason = {"status": "not ready", "reason": self._link.last_error}
            await respond_json(send, 503, reason)

    async def prometheus(self, scope: Scope, receive: Receive, send: Send) -> None:
        data, content_type = self._metrics.render()
        await respond(send, 200, data, content_type.encode("latin-1"))

    async def startup(self) -> None:
        """Connect to Temporal in the background (unless the link is connected already, or
        connects only when an event needs it: TEMPORAL_CONNECT=first-use)."""
        self._link.begin()

    async def shutdown(self) -> None:
        self._bodies.stop()
        await self._link.stop()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    settings: FunctionSettings,
    *,
    link: TemporalLink | None = None,
    metrics: Metrics | None = None,
    log: Any = None,
    tracing: bool = False,
) -> FunctionApp:
    """The app; unless given a connected `link`, it connects to Temporal when it starts.
    With `tracing` (the tracer provider installed: tracing.install), each event's handling
    is a span, and the trace goes on into the workflow."""
    log = log if log is not None else get_logger("function")
    metrics = metrics if metrics is not None else Metrics()
    if link is None:
        link = TemporalLink(
            settings.temporal_url,
            namespace=settings.temporal_namespace,
            task_queue=settings.temporal_taskqueue,
            log=log,
            tracing=tracing,
            security=settings.temporal_security,
            on_first_use=settings.temporal_connect is TemporalConnect.FIRST_USE,
        )
    handler = EventHandler(
        settings,
        link,
        metrics,
        log,
        tracing=tracing,
        signal_spacing=settings.signal_spacing.total_seconds(),
    )
    return FunctionApp(
        handler,
        link,
        metrics,
        log,
        token=settings.bearer_token,
        body_timeout=settings.body_timeout.total_seconds(),
    )
