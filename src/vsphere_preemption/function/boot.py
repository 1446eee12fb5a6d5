"""Liveness from the first moment: the function's app is built while it is already served.

Building the app means importing what it runs on (structlog, prometheus-client, our own
modules: most of a cold start) and reading the settings. A
liveness probe need not wait for that, so the server listens first with `Booting` in front:
it answers liveness at once and readiness "starting", builds the app in a thread (the event
loop keeps serving meanwhile), then hands every request to the app. A request that arrives
while the app is being built waits for it; if the build fails, requests get 503 with the
reason and `on_failure` is told (the command then stops the server and exits).

The garbage collector is off while the app is built: the imports make a few hundred thousand
objects and no garbage worth a collection, and the collections they would set off cost ~5-10 %
of the build (measured: BENCHMARKS.md). It is on again once the app is built.

Only the standard library is imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LIVENESS = "/health/liveness"
READINESS = "/health/readiness"


class App(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...
    async def startup(self) -> None: ...
    async def shutdown(self) -> None: ...


async def _respond(send: Send, status: int, content: dict[str, str]) -> None:
    body = json.dumps(content, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """The garbage collector off within, for a burst of imports; on after, as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Booting:
    """An ASGI app that serves health while `build` (run in a thread) makes the real one."""

    def __init__(
        self, build: Callable[[], App], on_failure: Callable[[BaseException], None] = print
    ) -> None:
        self._build = build
        self._on_failure = on_failure
        self._app: App | None = None
        self._failure: BaseException | None = None
        self._building: asyncio.Task[App | None] | None = None

    @property
    def app(self) -> App | None:
        """The app once built."""
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is not None:
            await app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._while_booting(scope, receive, send)

    async def _while_booting(self, scope: Scope, receive: Receive, send: Send) -> None:
        building = self._start()
        if self._failure is None and scope["method"] in ("GET", "HEAD"):
            if scope["path"] == LIVENESS:
                return await _respond(send, 200, {"status": "alive"})
            if scope["path"] == READINESS:
                return await _respond(send, 503, {"status": "not ready", "reason": "starting"})
        app = await asyncio.shield(building)
        if app is None:
            failure = f"{type(self._failure).__name__}: {self._failure}"
            return await _respond(send, 503, {"error": f"function did not start: {failure}"})
        await app(scope, receive, send)

    def _start(self) -> asyncio.Task[App | None]:
        if self._building is None:
            self._building = asyncio.create_task(self._make(), name="function-build")
        return self._building

    async def _make(self) -> App | None:
        try:
            with collector_off():
                app = await asyncio.to_thread(self._build)
            await app.startup()
        except Exception as exc:  # noqa: BLE001 (told to the command, which stops the server)
            self._failure = exc
            self._on_failure(exc)
            return None
        self._app = app
        return app

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()  # not awaited: the server listens while the app is built
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                building = self._start()
                if not building.done():
                    building.cancel()  # the thread finishes alone; nothing waits for it
                elif self._app is not None:
                    await self._app.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
