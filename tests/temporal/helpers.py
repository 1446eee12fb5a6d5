"""What the worker tests share: starting the workflow as the Go function does, waiting."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RawValue
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import fixture_json
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.wire import QUERY_NAME, SIGNAL_NAME, WORKFLOW_TYPE, go_json

SIGNAL_FIXTURE = "02_old-router_PreemptVMsChan-signal-WorkflowRequest.json"
ANNOTATION_FIXTURE = "01_old-router_AlarmStatusChangedEvent.json"

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def signal_payload(**changes: Any) -> dict[str, Any]:
    """The exact signal JSON the Go function sent (fixture 02), with `changes` applied."""
    payload: dict[str, Any] = fixture_json(SIGNAL_FIXTURE)
    payload.update(changes)
    return payload


async def signal_with_start(
    client: Client, workflow_id: str, task_queue: str, payload: Any
) -> WorkflowHandle[Any, Any]:
    """What the Go function does: signal-with-start by type name, no workflow args, 24 h.

    The payload goes out as Go's encoding/json bytes (field order kept), not through the
    SDK's converter, which would sort the keys.
    """
    raw = RawValue(Payload(metadata={"encoding": b"json/plain"}, data=go_json(payload)))
    return await client.start_workflow(
        WORKFLOW_TYPE,
        id=workflow_id,
        task_queue=task_queue,
        execution_timeout=timedelta(hours=24),
        start_signal=SIGNAL_NAME,
        start_signal_args=[raw],
    )


async def query_state(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The `current_state` answer: a JSON string, parsed."""
    text = await handle.query(QUERY_NAME, result_type=str)
    assert isinstance(text, str)
    state: dict[str, Any] = json.loads(text)
    return state


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    timeout: float = 60.0,
    what: str = "condition",
) -> T:
    """Poll `probe` until `until(result)`; a deadline only so a broken test cannot hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last value: {value!r}")
        await asyncio.sleep(0.1)


async def has_run(handle: WorkflowHandle[Any, Any], timeout: float = 120) -> dict[str, Any]:
    """The `current_state` answer once a run has named the VMs it preempted."""
    return await eventually(
        lambda: query_state(handle),
        lambda s: s["virtualMachines"] is not None,
        timeout=timeout,
        what="a run",
    )


def refs(state: dict[str, Any]) -> set[VmRef]:
    """The VMs a `current_state` answer names."""
    return {VmRef(v["Value"], v["Type"]) for v in state["virtualMachines"] or []}


async def wait_for(
    check: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition"
) -> None:
    async def probe() -> bool:
        return check()

    await eventually(probe, bool, timeout=timeout, what=what)


def workflow_task_failures(events: Any) -> list[Any]:
    """The history's failed workflow tasks: the workflow code's failures (a bad decode, a
    non-determinism, a deadlock). Not the server's own flush: when signals pile up past its
    buffer (100 events or 2 MB, say a storm or two 1.5 MB signals) while a workflow task is
    in flight, the history service fails that task itself (FORCE_CLOSE_COMMAND) so that the
    next one takes them all; no code of ours ran, and nothing is lost."""
    from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause

    flush = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND
    return [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and not (
            e.workflow_task_failed_event_attributes.cause == flush
            and e.workflow_task_failed_event_attributes.identity == "history-service"
        )
    ]


async def pollers_of(client: Client, queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    """The identities now polling `queue` for `kind` tasks, for tests that wait for workers.

    Asked two ways, because neither alone sees every worker at once. A task queue has several
    partitions, and a worker's long poll waits on one of them; the plain describe answers
    from the root partition only, so a worker whose poll sits on another stays unseen until
    that poll ends, up to a minute later (measured: two worker processes on a new queue, the
    second activity poller unseen for ~50 s in 2 runs of 6). The enhanced describe asks every
    partition, but the server caches its answer for ~5 s. The union: at once when the root
    has them, within ~5 s when it has not.

    A CANCELLED answer counts as none seen yet: Temporal's matching service cancels what is in
    flight on a task queue partition that it is loading or unloading, which happens just as
    workers begin to poll a new queue (the cancel temporalio/temporal#12201 describes). Any
    other refusal is raised, and the caller's `eventually` bounds the wait.
    """
    root = DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
    )
    every_partition = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
        task_queue_types=[kind],
        report_pollers=True,
    )
    try:
        answer = await client.workflow_service.describe_task_queue(root)
        found = {poller.identity for poller in answer.pollers}
        answer = await client.workflow_service.describe_task_queue(every_partition)
    except RPCError as err:
        if err.status is RPCStatusCode.CANCELLED:
            return set()
        raise
    for version in answer.versions_info.values():
        for info in version.types_info.values():
            found |= {poller.identity for poller in info.pollers}
    return found
