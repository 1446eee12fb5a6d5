"""Every log line of a run names its alarm event: the event id travels with the work.

The workflow binds the id of the event it is acting on (`bind_event`) in its run's context:
its own log lines carry it (logs.py merges the context into every line). This interceptor
copies it into a header of each activity the run starts, and binds it again, with the
workflow id, run id and activity, around the activity, so the activity's lines, and the
vSphere adapter's lines under it, carry the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

HEADER = "vsphere-preemption-event-id"
EVENT_ID = "eventID"


def bind_event(event_id: str) -> None:
    """From now on in this task (a workflow's run), log lines carry `eventID`."""
    structlog.contextvars.bind_contextvars(**{EVENT_ID: event_id})


def _current_event() -> str | None:
    value = structlog.contextvars.get_contextvars().get(EVENT_ID)
    return value if isinstance(value, str) else None


class LogContextInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _WorkflowInbound


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_event(input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_event(input.headers)
        return super().start_local_activity(input)


def _with_event(headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
    event_id = _current_event()
    if event_id is None:
        return headers
    return {**headers, HEADER: Payload(metadata={"encoding": b"binary/plain"},
                                       data=event_id.encode())}  # fmt: skip


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        fields = {
            "workflowID": info.workflow_id,
            "runID": info.workflow_run_id,
            "activity": info.activity_type,
        }
        header = input.headers.get(HEADER)
        if header is not None:
            fields[EVENT_ID] = header.data.decode("utf-8", "replace")
        # The SDK runs a sync activity in a copy of this context: the binding reaches it.
        with structlog.contextvars.bound_contextvars(**fields):
            return await super().execute_activity(input)
