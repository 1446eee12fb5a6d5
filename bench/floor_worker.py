"""The floor under the worker's memory: a bare Temporal Python worker, nothing of ours.

    python -m bench.floor_worker      # TEMPORAL_URL, TEMPORAL_NAMESPACE, TEMPORAL_TASKQUEUE

The Temporal Python SDK alone (its Rust core, the API's protobuf messages, the client and the
worker), serving one workflow in the default sandbox that takes the preemption signal and runs
one activity that does nothing. bench/side_by_side_worker.py runs it beside ours and the Go
worker and reads its resident memory the same way: what any Python worker on this SDK holds
before it reads a setting, imports pyVmomi or talks to vCenter. It imports the SDK only (not
our package), so the names below are the wire's, written out (the side by side checks them).
SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

WORKFLOW = "PreemptVMsWorkflow"  # vsphere_preemption.wire.WORKFLOW_TYPE
SIGNAL = "PreemptVMsChan"  # vsphere_preemption.wire.SIGNAL_NAME
ACTIVITY = "AnnotateVms"  # the last activity of a run, which the bench waits for


@activity.defn(name=ACTIVITY)
async def nothing() -> None:
    """An activity, so that a run goes through the activity worker as ours does."""


@workflow.defn(name=WORKFLOW)
class FloorWorkflow:
    def __init__(self) -> None:
        self._signals = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._signals > 0)
        await workflow.execute_activity(nothing, start_to_close_timeout=timedelta(seconds=30))

    @workflow.signal(name=SIGNAL)
    def preempt(self, _: Any) -> None:
        self._signals += 1


async def serve() -> None:
    client = await Client.connect(
        os.environ["TEMPORAL_URL"], namespace=os.environ["TEMPORAL_NAMESPACE"]
    )
    worker = Worker(
        client,
        task_queue=os.environ["TEMPORAL_TASKQUEUE"],
        workflows=[FloorWorkflow],
        activities=[nothing],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
