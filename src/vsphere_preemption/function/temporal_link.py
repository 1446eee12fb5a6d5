"""The function's one Temporal client, connected in the background; readiness follows it.

The process serves liveness at once; readiness turns true when the client has connected.
Until then (Temporal down at start, wrong address) it retries with a capped backoff, and
events that need Temporal are answered 503 with the last connection error, so the broker
retries them. Once connected, the link keeps asking Temporal's health endpoint (every
`WATCH_EVERY`): readiness turns false while Temporal is unreachable (restarted, network
gone), with the reason, and true again when it answers. The client is kept throughout (the
SDK reconnects by itself); an event that meets Temporal down gets a 503, as before.

With `on_first_use` (TEMPORAL_CONNECT=first-use) the SDK is neither imported nor connected
until an event needs Temporal: the SDK is ~27 MiB of the function's memory and most of its
start-up, and an event of another alarm never needs it. Until then readiness is true (there
is nothing to wait for); the first raise or lowering starts the connection and waits for its
first attempt (a 503 if that fails, retried meanwhile), and from then on the link is as above.
Either way, an event that needs Temporal while the first attempt is under way waits for it
rather than being refused (an ignored event never waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from vsphere_preemption.function.boot import collector_off
from vsphere_preemption.temporal.client import (
    PreemptionClient,
    TemporalError,
    TemporalUnavailable,
)
from vsphere_preemption.tracing import temporal_interceptors

if TYPE_CHECKING:
    from vsphere_preemption.settings import TemporalSecurity

_FIRST_RETRY = 0.2
_MAX_RETRY = 5.0
# How often a connected link asks Temporal whether it serves, and how long it waits for the
# answer: readiness follows an outage within about WATCH_EVERY + WATCH_TIMEOUT.
WATCH_EVERY = 2.0
WATCH_TIMEOUT = timedelta(seconds=2)


class TemporalLink:
    def __init__(
        self,
        target: str,
        *,
        namespace: str,
        task_queue: str,
        log: Any,
        tracing: bool = False,
        security: TemporalSecurity | None = None,
        on_first_use: bool = False,
    ) -> None:
        self.target = target
        self._security = security
        self._tracing = tracing
        self.namespace = namespace
        self.task_queue = task_queue
        self._log = log
        self._client: PreemptionClient | None = None
        self._last_error = "connecting"
        self._reachable = True  # the last health check's answer, once connected
        self._on_first_use = on_first_use
        self._task: asyncio.Task[None] | None = None  # run(): connect, then watch
        self._attempted = asyncio.Event()  # the first connection attempt has ended
        if on_first_use:
            self._last_error = "not connected yet: connects when an event needs Temporal"

    @property
    def ready(self) -> bool:
        if self._on_first_use and self._task is None and self._client is None:
            return True  # not needed yet: nothing to wait for
        return self._client is not None and self._reachable

    @property
    def last_error(self) -> str:
        return self._last_error

    async def require(self) -> PreemptionClient:
        """The connected client; while the first connection attempt is under way (or, with
        `on_first_use`, not begun), the client once that attempt has ended (connecting
        first); else TemporalUnavailable saying why there is no client."""
        if self._client is not None:
            return self._client
        if self._on_first_use or (self._task is not None and not self._attempted.is_set()):
            return await self.connected()
        raise self._unavailable()

    def _unavailable(self) -> TemporalUnavailable:
        return TemporalUnavailable(
            f"not connected to Temporal at {self.target} yet: {self._last_error}"
        )

    def begin(self) -> None:
        """Connect in the background now, unless only on first use (or connected already)."""
        if not self._on_first_use:
            self.start()

    def start(self) -> None:
        """Connect, then follow Temporal's health, in a task of its own (once)."""
        if self._task is None and self._client is None:
            self._task = asyncio.create_task(self.run(), name="temporal-connect")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._attempted.set()  # whoever waits for a connection gets its 503 now

    async def connected(self) -> PreemptionClient:
        """The client, connecting first if need be: waits for the first attempt, then
        TemporalUnavailable while none succeeded (the attempts go on)."""
        self.start()
        if self._client is None:
            await self._attempted.wait()
        if self._client is None:
            raise self._unavailable()
        return self._client

    async def run(self) -> None:
        """Connect, then follow Temporal's health, until cancelled (the app's lifespan task)."""
        await self.connect()
        await self.watch()

    async def connect(self) -> None:
        """Connect, retrying until it works (cancel the task to give up); then return."""
        # The SDK takes half a second to import: do it off the event loop so that liveness
        # and readiness probes are answered meanwhile (and without collections: boot.py).
        with collector_off():
            await asyncio.to_thread(importlib.import_module, "temporalio.client")
        # With tracing on, the signal carries the event's trace to the workflow.
        interceptors = await asyncio.to_thread(temporal_interceptors) if self._tracing else []
        delay = _FIRST_RETRY
        while self._client is None:
            try:
                self._client = await PreemptionClient.connect(
                    self.target,
                    namespace=self.namespace,
                    task_queue=self.task_queue,
                    interceptors=interceptors,
                    security=self._security,
                )
            except TemporalError as exc:
                self._last_error = str(exc)
                self._log.warning("temporal not reachable", error=str(exc), retryIn=delay)
                self._attempted.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY)
        self._attempted.set()
        self._log.info(
            "connected to temporal",
            temporal=self.target,
            namespace=self.namespace,
            queue=self.task_queue,
        )

    async def watch(self, every: float = WATCH_EVERY) -> None:
        """Follow Temporal's health while connected (cancel the task to stop)."""
        while self._client is not None:
            await asyncio.sleep(every)
            reason = await self._health(self._client)
            if reason and self._reachable:
                self._log.warning("temporal unreachable: not ready", temporal=self.target,
                                  error=reason)  # fmt: skip
            elif not reason and not self._reachable:
                self._log.info("temporal reachable again: ready", temporal=self.target)
            self._reachable = not reason
            if reason:
                self._last_error = reason

    async def _health(self, client: PreemptionClient) -> str:
        """Empty when Temporal serves; else why not."""
        try:
            serving = await client.client.service_client.check_health(timeout=WATCH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 (any failure to answer means: not reachable)
            return f"Temporal at {self.target} does not answer: {type(exc).__name__}: {exc}"
        return "" if serving else f"Temporal at {self.target} answers but does not serve"

    def use(self, client: PreemptionClient) -> None:
        """Adopt a client connected elsewhere (tests, embedding)."""
        self._client = client
