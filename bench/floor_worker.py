"""The floor under the worker: a bare Temporal Python worker, nothing of ours.

    python -m bench.floor_worker      # TEMPORAL_URL, TEMPORAL_NAMESPACE, TEMPORAL_TASKQUEUE

The Temporal Python SDK alone (its Rust core, the API's protobuf messages, the client and the
worker), serving one workflow in the default sandbox that takes the preemption signal and then
issues the same commands, in the same workflow tasks, as a run of ours that acts: the policy's
local activity, PlanPreemption (which reads the pauses too, patch pauses-in-plan), then
PowerOffVMs, then AnnotateVms; every activity does nothing. bench/side_by_side_worker.py runs
it beside ours and the Go worker: its resident memory is what any Python worker on this SDK
holds before it reads a setting, imports pyVmomi or talks to vCenter, and its timeline is what
the SDK alone costs for our run's shape (what is left of ours' time above it is our own code
and vCenter). It imports the SDK only (not our package), so the names below are the wire's,
written out (the side by side checks them). SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

WORKFLOW = "PreemptVMsWorkflow"  # vsphere_preemption.wire.WORKFLOW_TYPE
SIGNAL = "PreemptVMsChan"  # vsphere_preemption.wire.SIGNAL_NAME
TIMEOUT = timedelta(seconds=30)
ACTIVITY = "AnnotateVms"  # the last activity of a run, which the bench waits for
# Ours' activities up to AnnotateVms, in their order (temporal/contracts.py's names).
POLICY, PLAN, POWER_OFF = ("GetPreemptionPolicy", "PlanPreemption", "PowerOffVMs")


def _nothing(name: str) -> Any:
    """An activity called `name` that does nothing: the run goes through the activity worker
    as ours does, synchronous like ours (a thread of the activity pool)."""

    def sync() -> None:
        pass

    return activity.defn(name=name)(sync)


ACTIVITIES = {name: _nothing(name) for name in (POLICY, PLAN, POWER_OFF, ACTIVITY)}


@workflow.defn(name=WORKFLOW)
class FloorWorkflow:
    def __init__(self) -> None:
        self._signals = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._signals > 0)
        await workflow.execute_local_activity(POLICY, start_to_close_timeout=TIMEOUT)
        await workflow.execute_activity(PLAN, start_to_close_timeout=TIMEOUT)
        await workflow.execute_activity(POWER_OFF, start_to_close_timeout=TIMEOUT)
        await workflow.execute_activity(ACTIVITY, start_to_close_timeout=TIMEOUT)

    @workflow.signal(name=SIGNAL)
    def preempt(self, _: Any) -> None:
        self._signals += 1


async def serve() -> None:
    client = await Client.connect(
        os.environ["TEMPORAL_URL"], namespace=os.environ["TEMPORAL_NAMESPACE"]
    )
    executor = ThreadPoolExecutor(max_workers=10)
    worker = Worker(
        client,
        task_queue=os.environ["TEMPORAL_TASKQUEUE"],
        workflows=[FloorWorkflow],
        activities=list(ACTIVITIES.values()),
        # As ours: its synchronous activities run on a thread pool.
        activity_executor=executor,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with executor:
        async with worker:
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
