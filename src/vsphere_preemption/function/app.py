"""The function's ASGI app (Starlette): the event endpoint, Knative's health paths, /metrics.

`POST /` takes one CloudEvent (binary or structured mode). The body is read as a stream and
refused with 413 as soon as it passes 1 MiB, before it is all in memory. Errors are one-line
JSON (`{"error": "..."}`), including 404 and 405; an unexpected exception is logged with its
traceback and answered 500 with a reason, and the next request is served as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vsphere_preemption.function.auth import CHALLENGE, UNAUTHORIZED, authorized
from vsphere_preemption.function.handler import EventHandler
from vsphere_preemption.function.metrics import Metrics
from vsphere_preemption.function.temporal_link import TemporalLink
from vsphere_preemption.logs import get_logger
from vsphere_preemption.settings import FunctionSettings

MAX_BODY = 1024 * 1024  # 1 MiB: a vCenter event is a few KiB


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, or BodyTooLarge as soon as more than `limit` bytes are announced or read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def create_app(
    settings: FunctionSettings,
    *,
    link: TemporalLink | None = None,
    metrics: Metrics | None = None,
    log: Any = None,
    tracing: bool = False,
) -> Starlette:
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
        )
    handler = EventHandler(settings, link, metrics, log, tracing=tracing)

    token = settings.bearer_token

    async def receive_event(request: Request) -> Response:
        metrics.received.inc()
        if not authorized(request.headers, token):
            reply = handler.reject(401, "unauthorized", UNAUTHORIZED)
            return JSONResponse(reply.body, 401, headers=CHALLENGE)
        try:
            body = await read_body(request)
        except ClientDisconnect:
            # The client went away mid-body, or its framing broke (a bad chunk: the server
            # has answered 400 already). Nobody is left to answer: not an error of ours.
            log.info("request body not received: the client disconnected")
            return Response(status_code=400)
        except BodyTooLarge:
            reply = handler.reject(413, "too_large", f"request body over {MAX_BODY} bytes")
            # The rest of the body is never read: the connection cannot be reused.
            return JSONResponse(reply.body, 413, headers={"Connection": "close"})
        try:
            reply = await handler.handle(request.headers, body)
        except Exception as exc:  # a bug must not take the next request down
            log.exception("event handling failed", error=type(exc).__name__)
            return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, 500)
        return JSONResponse(reply.body, reply.status, headers=dict(reply.headers))

    async def liveness(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readiness(request: Request) -> Response:
        if link.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": link.last_error}, 503)

    async def prometheus(request: Request) -> Response:
        data, content_type = metrics.render()
        return Response(data, headers={"Content-Type": content_type})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 405 and request.url.path == "/":
            message += " (POST CloudEvents here)"
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None if link.ready else asyncio.create_task(link.run(), name="temporal-connect")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(
        routes=[
            Route("/", receive_event, methods=["POST"]),
            Route("/health/liveness", liveness, methods=["GET"]),
            Route("/health/readiness", readiness, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.link = link
    app.state.metrics = metrics
    return app
