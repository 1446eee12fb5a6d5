"""The stand-in the `preemptctl workflow` tests run as PreemptVMsWorkflow: it speaks the wire
contract (signal, `current_state` query, result) without the real workflow's activities, so
those tests exercise the CLI, not the workflow."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from temporalio import workflow

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.wire import (
    QUERY_NAME,
    SIGNAL_NAME,
    WORKFLOW_TYPE,
    WorkflowRequest,
    WorkflowResponse,
)


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class StandInPreemptVMs:
    """Every signal 'preempts' `VMS`; `changes` says what else of the request the state shows."""

    VMS: tuple[VmRef, ...] = (VmRef("vm-58"), VmRef("vm-1021"))

    def __init__(self) -> None:
        info = workflow.info()
        self._state = WorkflowResponse(
            workflow_id=info.workflow_id, run_id=info.run_id, workflow_name=info.workflow_type
        )

    @workflow.run
    async def run(self) -> dict[str, Any]:
        # Like the real one: a cancel completes the workflow with its last state.
        with contextlib.suppress(asyncio.CancelledError):
            await workflow.wait_condition(lambda: False)
        return dict(self._state.to_wire())

    @workflow.signal(name=SIGNAL_NAME)
    def preempt(self, payload: dict[str, Any]) -> None:
        request = WorkflowRequest.from_wire(payload)
        self._state = replace(
            self._state,
            last_preemption=workflow.now(),
            virtual_machines=self.VMS,
            tag=request.tag,
            criticality=request.criticality,
            event=request.event,
            **self.changes(request),
        )

    def changes(self, request: WorkflowRequest) -> dict[str, Any]:
        """The state's fields beyond the VMs, tag, criticality and event."""
        return {"reply_to": request.reply_to}

    @workflow.query(name=QUERY_NAME)
    def current_state(self) -> str:
        return self._state.to_json()
