"""Inside the worker's run: the server's timeline merged with the worker's own steps.

    .venv/bin/python -m bench.worker_trace [--runs 5]

bench/side_by_side_worker.py sees a run from outside (the history's event times). This runs
the worker in this process, built as `preemptctl worker` builds it (PREEMPTION_SCOPE=vcenter,
10 tagged VMs, no notice, no cooldown), against a Temporal dev server and vcsim of its own, with
timing wrappers around what it does between the server's events: the workflow sandbox's
instance creation, each workflow activation (with its jobs), the policy's local activity,
PlanPreemption and in it the gather's tag and fact reads and the plan, and ReadPauses. Per run,
from just before the signal-with-start, until PowerOffVMs is scheduled; then the medians of
`--runs` runs after a first. What lies between a server event and the worker's next step (a
task handed over, an activation's completion sent) is the SDK's own (its Rust core, the bridge
to Python, the event loop and the workflow thread). The runs are apart (1 s) and nothing else of
the bench runs in this process meanwhile (its own polling would take the GIL from the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import _activity as sdk_activity
from temporalio.worker import _workflow as sdk_workflow
from temporalio.worker.workflow_sandbox import _runner

import vsphere_preemption.temporal.activities as activities
import vsphere_preemption.temporal.client as temporal_client
import vsphere_preemption.vsphere.client as vsphere_client
import vsphere_preemption.vsphere.gather as gather
from bench.machine import loadavg, quiet_logs
from bench.side_by_side_worker import VMS, timeline
from bench.worker_preempt import config_for, signal
from vsphere_preemption import worker
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.settings import WorkerSettings, load
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

TAG = "bench-trace"
UNTIL = "PowerOffVMs scheduled"


class Marks:
    """(ms since the run began, label), from any thread."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.seen: list[tuple[float, str]] = []

    def __call__(self, label: str) -> None:
        self.seen.append(((time.perf_counter() - self.began) * 1000, label))

    def restart(self) -> None:
        self.began = time.perf_counter()
        self.seen = []


MARKS = Marks()


def _jobs(args: tuple[Any, ...]) -> str:
    jobs = getattr(args[1], "jobs", ()) if len(args) > 1 else ()
    return ", ".join(str(j.WhichOneof("variant")) for j in jobs)


def timed(owner: Any, name: str, label: str, *, jobs: bool = False) -> None:
    """Wrap `owner.name` (a function or coroutine function) to mark its start and end."""
    original: Callable[..., Any] = getattr(owner, name)
    if asyncio.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            MARKS(f"{label} starts")
            try:
                return await original(*args, **kwargs)
            finally:
                MARKS(f"{label} ends")

        setattr(owner, name, wrapped_async)
        return

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        MARKS(f"{label} starts" + (f" ({_jobs(args)})" if jobs else ""))
        try:
            return original(*args, **kwargs)
        finally:
            MARKS(f"{label} ends")

    setattr(owner, name, wrapped)


def instrument() -> None:
    # When a task reaches Python from the SDK's core (on the event loop), before our code.
    timed(sdk_workflow._WorkflowWorker, "_handle_activation", "SDK: workflow activation handled")
    timed(sdk_workflow._WorkflowWorker, "_create_workflow_instance", "SDK: new workflow")
    timed(sdk_activity._ActivityWorker, "_handle_start_activity_task", "SDK: activity task handled")
    timed(sdk_activity._ActivityWorker, "_execute_activity", "SDK: activity input decoded, run")
    timed(_runner._Instance, "__init__", "sandbox instance")
    timed(_runner._Instance, "activate", "activation", jobs=True)
    timed(activities.PreemptionActivities, "get_policy", "local activity GetPreemptionPolicy")
    timed(activities.PreemptionActivities, "plan_preemption", "PlanPreemption (worker)")
    timed(activities.PreemptionActivities, "read_pauses", "ReadPauses (worker)")
    timed(vsphere_client.VSphereClient, "gather", "  gather")
    timed(gather, "read_tags", "    tags (REST)")
    timed(gather, "_read_facts", "    facts (SOAP)")
    timed(activities, "plan", "  plan()")
    timed(activities, "_pause_read_result", "  the pauses awaited")
    timed(temporal_client.PreemptionClient, "read_pauses", "  the pause query (event loop)")


async def trace(args: argparse.Namespace, tmp: Path) -> list[list[tuple[float, str]]]:
    flags = ["-cluster", "2", "-host", "2", "-standalone-host", "0", "-vm", "30"]
    with TemporalDevServer(log_file=tmp / "temporal.log") as server, Vcsim(args=flags) as sim:
        admin = VSphereClient(config_for(sim), poll_interval=0.05)
        inventory = Inventory(admin)
        vms = [s.ref for s in inventory.vms()][:VMS]
        inventory.tag(TAG, vms)
        (tmp / "username").write_text(sim.username)
        (tmp / "password").write_text(sim.password)
        task_queue = f"bench-trace-{uuid.uuid4().hex[:6]}"
        settings = load(WorkerSettings, {
            "TEMPORAL_URL": server.address, "TEMPORAL_TASKQUEUE": task_queue,
            "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true", "VCENTER_SECRET_PATH": str(tmp),
            "PREEMPTION_SCOPE": "vcenter", "PREEMPTION_MAX_VMS": str(VMS),
            "PREEMPTION_NOTICE_HIGH": "0", "PREEMPTION_COOLDOWN": "0",
        })  # fmt: skip
        client = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(settings, stop))
        runs: list[list[tuple[float, str]]] = []
        try:
            await asyncio.sleep(2)  # connected, polling, vCenter logged in
            for _ in range(args.runs + 1):
                inventory.power_on(vms)
                await asyncio.sleep(1.0)
                MARKS.restart()
                started = time.time()
                handle = await client.start_workflow(
                    WORKFLOW_TYPE, id=f"bench-trace-{uuid.uuid4().hex[:8]}",
                    task_queue=task_queue, execution_timeout=timedelta(minutes=5),
                    start_signal=SIGNAL_NAME, start_signal_args=[signal(TAG)],
                )  # fmt: skip
                steps: dict[str, float] = {}
                while UNTIL not in steps:
                    await asyncio.sleep(0.2)
                    steps = timeline(await handle.fetch_history(), started)
                await asyncio.sleep(0.5)  # the run's end, before its workflow goes
                await handle.terminate("benchmark run done")
                server_steps = [(ms, f"server: {label}") for label, ms in steps.items()]
                end = steps[UNTIL]
                runs.append(sorted(m for m in [*MARKS.seen, *server_steps] if m[0] <= end))
        finally:
            stop.set()
            await running
            admin.close()
    return runs[1:]


def report(runs: Sequence[list[tuple[float, str]]]) -> list[str]:
    """Each label's median time over the runs (labels in the first run's order; a label seen
    several times in a run is numbered)."""
    numbered: list[dict[str, float]] = []
    for run in runs:
        seen: dict[str, int] = {}
        named: dict[str, float] = {}
        for ms, label in run:
            seen[label] = seen.get(label, 0) + 1
            named[label if seen[label] == 1 else f"{label} #{seen[label]}"] = ms
        numbered.append(named)
    order = sorted(numbered[0], key=numbered[0].__getitem__)
    lines = ["| ms from the signal (median) | step |", "| --- | --- |"]
    for label in order:
        values = [n[label] for n in numbered if label in n]
        lines.append(f"| {statistics.median(values):.1f} | {label} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    quiet_logs()
    instrument()
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="worker-trace-") as name:
        runs = asyncio.run(trace(args, Path(name)))
    print(f"{len(runs)} runs after a first; load average {before} -> {loadavg()}")
    print("\n".join(report(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
