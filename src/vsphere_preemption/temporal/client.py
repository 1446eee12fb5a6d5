"""The Temporal calls the function makes: signal-with-start one alarm's workflow, or cancel it.

temporalio is imported inside `PreemptionClient.connect`, not at module level: loading the SDK
takes about half a second, and the function wants to answer liveness meanwhile (it imports this
module cheaply, then connects in the background).

The signal goes out as a raw `json/plain` payload we encode ourselves: the SDK's JSON converter
sorts keys, and the Go worker and our fixtures expect the field order Go writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from vsphere_preemption.wire import SIGNAL_NAME, WORKFLOW_TYPE, WorkflowRequest, go_json

if TYPE_CHECKING:
    from temporalio.client import Client

# The Go function's workflow execution timeout (docs/wire.md, Names).
EXECUTION_TIMEOUT = timedelta(hours=24)
# Bounds on one call, retries included: the broker's delivery should get an answer in time to
# retry itself rather than time out.
RPC_TIMEOUT = timedelta(seconds=5)
CONNECT_TIMEOUT = timedelta(seconds=5)


class TemporalError(Exception):
    """A Temporal call failed; the message is one line, safe to return to the caller."""


class TemporalUnavailable(TemporalError):
    """Temporal cannot be reached (not connected, down, timed out): worth retrying."""


class TemporalRejected(TemporalError):
    """Temporal answered with an error (unknown namespace, invalid request, ...)."""


class CancelOutcome(StrEnum):
    CANCEL_REQUESTED = "cancel_requested"
    NOT_RUNNING = "not_running"  # no workflow of that ID, or it has closed already: fine


@dataclass(frozen=True)
class StartedRun:
    workflow_id: str
    run_id: str


def signal_payload_bytes(request: WorkflowRequest) -> bytes:
    """The exact bytes of the `PreemptVMsChan` signal's single argument."""
    return go_json(request.to_wire())


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _classify(exc: BaseException, what: str) -> TemporalError:
    """A one-line TemporalError for the caller: retryable (unavailable) or not (rejected)."""
    from temporalio.service import RPCError, RPCStatusCode

    if isinstance(exc, RPCError):
        retryable = {
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.CANCELLED,
            RPCStatusCode.RESOURCE_EXHAUSTED,
            RPCStatusCode.UNKNOWN,
        }
        kind = TemporalUnavailable if exc.status in retryable else TemporalRejected
        return kind(f"{what}: Temporal {exc.status.name}: {_describe(exc)}")
    return TemporalUnavailable(f"{what}: {_describe(exc)}")


class PreemptionClient:
    """One connected Temporal client, bound to the namespace and task queue of the function."""

    def __init__(self, client: Client, *, task_queue: str) -> None:
        self._client = client
        self.task_queue = task_queue

    @property
    def client(self) -> Client:
        return self._client

    @classmethod
    async def connect(cls, target: str, *, namespace: str, task_queue: str) -> PreemptionClient:
        """Connect (raises TemporalUnavailable with the reason when Temporal cannot be reached)."""
        from temporalio.client import Client
        from temporalio.service import RetryConfig

        try:
            client = await Client.connect(
                target,
                namespace=namespace,
                connect_timeout=CONNECT_TIMEOUT,
                # The SDK retries transient errors itself; keep that inside one RPC_TIMEOUT.
                retry_config=RetryConfig(max_elapsed_time_millis=4000, max_retries=5),
            )
        except Exception as exc:  # any failure to connect means: not connected
            raise _classify(exc, f"cannot connect to Temporal at {target}") from exc
        return cls(client, task_queue=task_queue)

    async def signal_with_start(self, workflow_id: str, request: WorkflowRequest) -> StartedRun:
        """Signal `PreemptVMsChan` to the workflow, starting it first if none is running."""
        from temporalio.api.common.v1 import Payload
        from temporalio.common import RawValue

        payload = Payload(metadata={"encoding": b"json/plain"}, data=signal_payload_bytes(request))
        try:
            handle = await self._client.start_workflow(
                WORKFLOW_TYPE,  # by name: the Go or the Python worker runs it
                id=workflow_id,
                task_queue=self.task_queue,
                execution_timeout=EXECUTION_TIMEOUT,
                start_signal=SIGNAL_NAME,
                start_signal_args=[RawValue(payload)],
                rpc_timeout=RPC_TIMEOUT,
            )
        except Exception as exc:  # every failure is reported, classified
            raise _classify(exc, "signal-with-start") from exc
        return StartedRun(workflow_id, handle.result_run_id or "")

    async def cancel(self, workflow_id: str) -> CancelOutcome:
        """Request cancellation of this workflow ID's running preemption workflow, only that one.

        The server accepts a cancel request for a run that has closed already, so we look
        first: a closed run, or a workflow of another type under that ID, is not running.
        """
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.service import RPCError, RPCStatusCode

        try:
            description = await self._client.get_workflow_handle(workflow_id).describe(
                rpc_timeout=RPC_TIMEOUT
            )
            if (
                description.status != WorkflowExecutionStatus.RUNNING
                or description.workflow_type != WORKFLOW_TYPE
            ):
                return CancelOutcome.NOT_RUNNING
            # That run exactly: a run started after we looked is not the one that lowered.
            handle = self._client.get_workflow_handle(workflow_id, run_id=description.run_id)
            await handle.cancel(rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return CancelOutcome.NOT_RUNNING
            raise _classify(exc, "cancel") from exc
        except Exception as exc:
            raise _classify(exc, "cancel") from exc
        return CancelOutcome.CANCEL_REQUESTED
