"""The function's one Temporal client, connected in the background; readiness follows it.

The process serves liveness at once; readiness turns true when the client has connected.
Until then (Temporal down at start, wrong address) it retries with a capped backoff, and
events that need Temporal are answered 503 with the last connection error, so the broker
retries them. Readiness stays true once connected: the SDK reconnects by itself, and an event
that meets Temporal down meanwhile gets a 503 too.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

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
    ) -> None:
        self.target = target
        self._security = security
        self._tracing = tracing
        self.namespace = namespace
        self.task_queue = task_queue
        self._log = log
        self._client: PreemptionClient | None = None
        self._last_error = "connecting"

    @property
    def ready(self) -> bool:
        return self._client is not None

    @property
    def last_error(self) -> str:
        return self._last_error

    def require(self) -> PreemptionClient:
        """The connected client, or TemporalUnavailable saying why there is none yet."""
        if self._client is None:
            raise TemporalUnavailable(
                f"not connected to Temporal at {self.target} yet: {self._last_error}"
            )
        return self._client

    async def run(self) -> None:
        """Connect, retrying until it works (cancel the task to give up)."""
        # The SDK takes half a second to import: do it off the event loop so that liveness
        # and readiness probes are answered meanwhile.
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
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY)
        self._log.info(
            "connected to temporal",
            temporal=self.target,
            namespace=self.namespace,
            queue=self.task_queue,
        )

    def use(self, client: PreemptionClient) -> None:
        """Adopt a client connected elsewhere (tests, embedding)."""
        self._client = client
