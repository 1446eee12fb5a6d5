"""The workflow of bench/floor_vcenter_worker.py, in a module of its own: the sandbox imports a
workflow's module afresh for every new workflow, and this one holds nothing else (as
bench/floor_worker.py's workflow, it costs a new workflow what the SDK alone does)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.floor_worker import ACTIVITY, PLAN, POLICY, POWER_OFF, SIGNAL, TIMEOUT, WORKFLOW


@workflow.defn(name=WORKFLOW)
class FloorVCenterWorkflow:
    def __init__(self) -> None:
        self._tags: list[str] = []

    @workflow.run
    async def run(self) -> None:
        # As ours and Go's: a run per signal, and the workflow waits for the next one (the
        # bench terminates it).
        while True:
            await workflow.wait_condition(lambda: bool(self._tags))
            tag = self._tags.pop(0)
            await workflow.execute_local_activity(POLICY, start_to_close_timeout=TIMEOUT)
            vms = await workflow.execute_activity(
                PLAN, tag, start_to_close_timeout=TIMEOUT, result_type=list[str]
            )
            await workflow.execute_activity(POWER_OFF, vms, start_to_close_timeout=TIMEOUT)
            await workflow.execute_activity(ACTIVITY, start_to_close_timeout=TIMEOUT)

    @workflow.signal(name=SIGNAL)
    def preempt(self, request: Any) -> None:
        # The Go form of the signal: {"tag": ..., "criticality": ..., "event": ...}
        self._tags.append(str(request.get("tag", "")))
