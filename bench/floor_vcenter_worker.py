"""The floor of our design: a bare Temporal Python worker that makes ours' vCenter calls.

    python -m bench.floor_vcenter_worker   # the worker's settings: TEMPORAL_*, VCENTER_*

bench/floor_worker.py is the SDK alone, each activity doing nothing. This is the same workflow
shape (the policy's local activity, PlanPreemption, PowerOffVMs, AnnotateVms, in ours' workflow
tasks) with the two activities that talk to vCenter doing what ours do there, through ours'
vSphere adapter: PlanPreemption reads the signal's tag and every tagged VM's facts
(`VSphereClient.gather`: the tagging REST call and one SOAP read, as a run of ours), and
PowerOffVMs powers the running ones off and waits until vCenter confirms each
(`VSphereClient.power_off`). None of ours' workflow, policy, plan, pauses, records or logs.

Beside ours and Go in bench/side_by_side_worker.py (`--floor-vcenter`), what ours takes above
this is ours' own workflow and activity code; what this takes above Go is the Python SDK and
what choosing victims by their facts reads from vCenter (Go's worker lists the tag's objects and
reads nothing else). SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from bench.floor_vcenter_workflow import FloorVCenterWorkflow
from bench.floor_worker import ACTIVITY, PLAN, POLICY, POWER_OFF
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.settings import WorkerSettings, load
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.worker import vcenter_config

MAX_VMS = 10  # as ours runs in the side by side (PREEMPTION_MAX_VMS), and the Go worker's cap


class VCenterActivities:
    def __init__(self, client: VSphereClient) -> None:
        self._client = client

    @activity.defn(name=POLICY)
    def policy(self) -> None:
        pass

    @activity.defn(name=PLAN)
    def plan(self, tag: str) -> list[str]:
        """The running VMs carrying `tag`, by name, at most MAX_VMS: no policy, no scoring."""
        gathered = self._client.gather(tag, None)
        running = [f for f in gathered.facts if f.power_state == PowerState.POWERED_ON]
        return [f.ref.value for f in sorted(running, key=lambda f: f.name)[:MAX_VMS]]

    @activity.defn(name=POWER_OFF)
    def power_off(self, vms: list[str]) -> int:
        outcome = self._client.power_off(
            [VmRef(v) for v in vms], force=True, soft_shutdown_grace=timedelta(seconds=120)
        )
        return len(outcome.powered_off)

    @activity.defn(name=ACTIVITY)
    def annotate(self) -> None:
        pass


async def serve() -> None:
    settings = load(WorkerSettings, dict(os.environ))
    vcenter = VSphereClient(vcenter_config(settings))
    client = await Client.connect(settings.temporal_url, namespace=settings.temporal_namespace)
    executor = ThreadPoolExecutor(max_workers=10)
    activities = VCenterActivities(vcenter)
    worker = Worker(
        client,
        task_queue=settings.temporal_taskqueue,
        workflows=[FloorVCenterWorkflow],
        activities=[activities.policy, activities.plan, activities.power_off, activities.annotate],
        activity_executor=executor,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        with executor:
            async with worker:
                await stop.wait()
    finally:
        vcenter.close()


if __name__ == "__main__":
    asyncio.run(serve())
