"""The Temporal calls behind `preemptctl workflow run | status | cancel`.

The workflow is addressed by its type NAME (`PreemptVMsWorkflow`), never by our
class, so the CLI drives a Go worker or ours alike. Every failure becomes a
`CommandFailed` with a one-line message; the CLI prints it, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import RawValue
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from vsphere_preemption.cli.workflow_render import WorkflowSummary
from vsphere_preemption.temporal.client import signal_payload_bytes
from vsphere_preemption.wire import (
    QUERY_NAME,
    SIGNAL_NAME,
    WORKFLOW_TYPE,
    WireError,
    WorkflowRequest,
    WorkflowResponse,
)

# The Go CLI gives each command 5 s; we give that to the connection and to each call.
CONNECT_TIMEOUT = timedelta(seconds=5)
RPC_TIMEOUT = timedelta(seconds=5)
CLI_EXECUTION_TIMEOUT = timedelta(minutes=5)  # the Go CLI's, so its workflows end alike


class CommandFailed(Exception):
    """A verb could not do its job; `str()` is the one line the user sees."""


@dataclass(frozen=True)
class Started:
    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class State:
    """What `status` learned: the execution, the last run, and its JSON as received."""

    summary: WorkflowSummary
    response: WorkflowResponse
    raw_json: str


def connect_failure_reason(error: BaseException) -> str:
    """The useful part of a connection error from temporalio's Rust core, in one line."""
    if isinstance(error, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT.total_seconds():.0f}s"
    text = " ".join(str(error).split())
    # The core wraps the OS reason in Rust debug output: keep the innermost message.
    for pattern in (r'message: "([^"]+)"', r'error: "([^"]+)"', r'ConnectError\("([^"]+)"'):
        found = re.findall(pattern, text)
        if found:
            return str(found[-1])
    return text.removeprefix("Failed client connect: ")[:200]


async def connect(server: str, namespace: str, runtime: Runtime) -> Client:
    try:
        return await asyncio.wait_for(
            Client.connect(
                server,
                namespace=namespace,
                runtime=runtime,
                connect_timeout=CONNECT_TIMEOUT,
            ),
            timeout=CONNECT_TIMEOUT.total_seconds(),
        )
    except (RuntimeError, ValueError, TimeoutError, RPCError) as exc:
        raise CommandFailed(
            f"cannot reach the Temporal server at {server}: {connect_failure_reason(exc)}"
        ) from None


def _run_label(workflow_id: str, run_id: str | None) -> str:
    return f"workflow {workflow_id!r}" + (f" (run {run_id})" if run_id else "")


def summarize(description: WorkflowExecutionDescription) -> WorkflowSummary:
    status = description.status.name.lower() if description.status else "unknown"
    timeout = description.raw_description.execution_config.workflow_execution_timeout
    timeout_at = None
    if timeout.ToNanoseconds() > 0 and description.close_time is None:
        timeout_at = description.start_time + timeout.ToTimedelta()
    return WorkflowSummary(
        workflow_id=description.id,
        run_id=description.run_id,
        workflow_type=description.workflow_type,
        task_queue=description.task_queue,
        status=status,
        start_time=description.start_time,
        close_time=description.close_time,
        timeout_at=timeout_at,
    )


async def signal_with_start(
    client: Client, request: WorkflowRequest, workflow_id: str, task_queue: str
) -> Started:
    """Send PreemptVMsChan; Temporal starts the workflow first if it is not running."""
    try:
        handle: WorkflowHandle[Any, Any] = await client.start_workflow(
            WORKFLOW_TYPE,
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=CLI_EXECUTION_TIMEOUT,
            start_signal=SIGNAL_NAME,
            # Our own json/plain bytes in Go's field order (the SDK's converter sorts keys).
            start_signal_args=[
                RawValue(
                    Payload(
                        metadata={"encoding": b"json/plain"}, data=signal_payload_bytes(request)
                    )
                )
            ],
            rpc_timeout=RPC_TIMEOUT,
        )
    except RPCError as exc:
        raise CommandFailed(
            f"cannot signal {_run_label(workflow_id, None)}: {exc.message}"
        ) from None
    return Started(workflow_id=handle.id, run_id=handle.result_run_id or "")


async def describe(client: Client, workflow_id: str, run_id: str | None) -> WorkflowSummary:
    try:
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe(
            rpc_timeout=RPC_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CommandFailed(
                f"no {_run_label(workflow_id, run_id)} in namespace {client.namespace!r} "
                f"({exc.message})"
            ) from None
        raise CommandFailed(
            f"cannot describe {_run_label(workflow_id, run_id)}: {exc.message}"
        ) from None
    return summarize(description)


def _as_json_text(value: Any) -> str:
    # The Go workflow answers the query with a JSON string and returns the same
    # structure as an object when it completes; `--json` prints either as JSON text.
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


async def _completion_result(handle: WorkflowHandle[Any, Any]) -> Any:
    # A completed PreemptVMsWorkflow returns its last state: read it from history,
    # which needs no worker (a query on a closed workflow needs one to replay).
    try:
        return await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    except Exception:  # noqa: BLE001 - any failure here only means "ask the query instead"
        return None


def _query_failure_reason(exc: Exception) -> str:
    if isinstance(exc, RPCError) and exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {RPC_TIMEOUT.total_seconds():.0f}s"
    if isinstance(exc, RPCError | WorkflowQueryFailedError):
        return exc.message
    return str(exc)


async def current_state(client: Client, workflow_id: str, run_id: str | None) -> State:
    """The execution and its last run (`current_state`, or the result once completed)."""
    summary = await describe(client, workflow_id, run_id)
    handle = client.get_workflow_handle(workflow_id, run_id=summary.run_id)
    answer: Any = None
    if summary.status == WorkflowExecutionStatus.COMPLETED.name.lower():
        answer = await _completion_result(handle)
    if answer is None:
        try:
            answer = await handle.query(QUERY_NAME, rpc_timeout=RPC_TIMEOUT)
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
            reason = _query_failure_reason(exc)
            raise CommandFailed(
                f"{_run_label(workflow_id, summary.run_id)} is {summary.status_text} but did not "
                f"answer the {QUERY_NAME!r} query: {reason} "
                f"(is a worker polling task queue {summary.task_queue!r}?)"
            ) from None
    raw = _as_json_text(answer)
    try:
        response = WorkflowResponse.from_wire(raw)
    except WireError as exc:
        raise CommandFailed(
            f"{_run_label(workflow_id, summary.run_id)} answered {QUERY_NAME!r} with something "
            f"that is not a WorkflowResponse: {exc}"
        ) from None
    return State(summary=summary, response=response, raw_json=raw)


async def request_cancel(client: Client, workflow_id: str, run_id: str | None) -> WorkflowSummary:
    """Ask the running execution to cancel; the worker ends it after its current step."""
    summary = await describe(client, workflow_id, run_id)
    if summary.status != WorkflowExecutionStatus.RUNNING.name.lower():
        raise CommandFailed(
            f"{_run_label(workflow_id, summary.run_id)} is not running "
            f"({summary.status_text}): nothing to cancel"
        )
    try:
        await client.get_workflow_handle(workflow_id, run_id=summary.run_id).cancel(
            rpc_timeout=RPC_TIMEOUT
        )
    except RPCError as exc:
        raise CommandFailed(
            f"cannot cancel {_run_label(workflow_id, summary.run_id)}: {exc.message}"
        ) from None
    return summary
