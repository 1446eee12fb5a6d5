"""Benchmark: a worker killed mid-run (kill -9) and restarted at once; how soon the run resumes.

    .venv/bin/python -m bench.kill_resume [--trials 5] [--delay-ms 3000] [--vms 3]

All real, on loopback: a Temporal dev server, vcsim with `-method-delay PowerOffVM_Task:<ms>`
(each power-off takes that long, one at a time: PREEMPTION_MAX_CONCURRENCY=1), and
`python -m vsphere_preemption worker` as its own process, as tests/test_worker_process.py runs it.

Per trial (a fresh task queue and tag, the VMs powered on again, not timed): signal-with-start
(the Go function's signal, HIGH: hard power-off); once the first VM is off the worker is killed
with SIGKILL while PowerOffVMs is in flight, and a new worker process is started at once.
Measured from the kill (this machine's clock, the same as the server's on loopback) to server
event times in the workflow's history:
- kill -> retry started: the ActivityTaskStarted of the PowerOffVMs attempt that completed;
- kill -> power-off completed: the ActivityTaskCompleted of PowerOffVMs;
- kill -> run done: the ActivityTaskCompleted of AnnotateVms (the run's last activity here).
The work left after the kill (the VMs not yet off, `--delay-ms` each) is part of the last two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench.machine import machine, quiet_logs
from bench.worker_preempt import completed_at, config_for, signal
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

INVENTORY = ("-cluster", "1", "-host", "2", "-vm", "4")
POWER_OFF = "PowerOffVMs"
ANNOTATE = "AnnotateVms"


@dataclass
class Trial:
    trial: int
    kill_to_retry_started_s: float
    kill_to_power_off_completed_s: float
    kill_to_run_done_s: float
    power_off_attempts: int
    off_at_kill: int


def event_times(history: Any, activity: str, event_type: int) -> list[tuple[float, int]]:
    """(server time, attempt or 0) of each `event_type` event of activity `activity`."""
    names = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    out = []
    for e in history.events:
        if e.event_type != event_type:
            continue
        if event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs: Any = e.activity_task_started_event_attributes
            attempt = attrs.attempt
        else:
            attrs = e.activity_task_completed_event_attributes
            attempt = 0
        if names.get(attrs.scheduled_event_id) == activity:
            out.append((e.event_time.ToDatetime().timestamp(), attempt))
    return out


async def wait_for(what: str, probe: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


async def one_trial(
    n: int,
    client: Client,
    sim: Vcsim,
    admin: VSphereClient,
    inventory: Inventory,
    vms: list[VmRef],
    secret: Path,
    server: TemporalDevServer,
    logs: Path,
) -> Trial:
    tag = f"kill-{n}-{uuid.uuid4().hex[:6]}"
    inventory.power_on(vms)  # not timed
    inventory.tag(tag, vms)
    task_queue = f"kill-{uuid.uuid4().hex[:8]}"
    env = {
        "TEMPORAL_URL": server.address, "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "TEMPORAL_TASKQUEUE": task_queue, "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
        "VCENTER_SECRET_PATH": str(secret), "PREEMPTION_COOLDOWN": "0",
        "PREEMPTION_MAX_VMS": str(len(vms)), "PREEMPTION_SCOPE": "vcenter",
        "PREEMPTION_MAX_CONCURRENCY": "1", "PREEMPTION_NOTICE_LOW": "0",
        "PREEMPTION_NOTICE_MEDIUM": "0",
    }  # fmt: skip
    first = WorkerProcess(env, logs / f"worker-{n}-1.log").start()
    second = WorkerProcess(env, logs / f"worker-{n}-2.log")
    try:
        handle: WorkflowHandle[Any, Any] = await client.start_workflow(
            WORKFLOW_TYPE,
            id=f"kill-{n}-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
            execution_timeout=timedelta(hours=1),
            start_signal=SIGNAL_NAME,
            start_signal_args=[signal(tag)],
        )

        async def first_off() -> set[VmRef]:
            states = await asyncio.to_thread(admin.read_vms, vms)
            return {r for r, s in states.items() if s.power_state == PowerState.POWERED_OFF}

        off = await wait_for("the first VM off", first_off)
        first.kill()
        killed = time.time()
        second.start()
        if len(off) >= len(vms):
            raise RuntimeError("the kill came too late to be mid-run")

        async def run_done() -> float | None:
            try:
                return await completed_at(handle, ANNOTATE)
            except RuntimeError:
                return None

        done = await wait_for("the run done", run_done, timeout=300)
        history = await handle.fetch_history()
        await handle.terminate("benchmark trial done")
    finally:
        first.stop()
        second.stop()
    started = event_times(history, POWER_OFF, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    completed = event_times(history, POWER_OFF, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    if len(started) != 1 or len(completed) != 1:
        raise RuntimeError(f"trial {n}: PowerOffVMs started {started}, completed {completed}")
    return Trial(
        trial=n,
        kill_to_retry_started_s=round(started[0][0] - killed, 2),
        kill_to_power_off_completed_s=round(completed[0][0] - killed, 2),
        kill_to_run_done_s=round(done - killed, 2),
        power_off_attempts=started[0][1],
        off_at_kill=len(off),
    )


async def bench(args: argparse.Namespace) -> list[Trial]:
    flags = (*INVENTORY, "-method-delay", f"PowerOffVM_Task:{args.delay_ms}")
    trials: list[Trial] = []
    with (
        TemporalDevServer() as server,
        Vcsim(args=flags) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        secret = Path(tmp) / "vsphere"
        secret.mkdir()
        (secret / "username").write_text(sim.username)
        (secret / "password").write_text(sim.password)
        admin = VSphereClient(config_for(sim), poll_interval=0.1)
        inventory = Inventory(admin)
        vms = [s.ref for s in inventory.vms()][: args.vms]
        client = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
        for n in range(1, args.trials + 1):
            trial = await one_trial(n, client, sim, admin, inventory, vms, secret, server,
                                    Path(tmp))  # fmt: skip
            trials.append(trial)
            print(json.dumps(asdict(trial)), flush=True)
        admin.close()
    return trials


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--delay-ms", type=int, default=3000)
    parser.add_argument("--vms", type=int, default=3)
    args = parser.parse_args(argv)
    quiet_logs()
    trials = asyncio.run(bench(args))
    print(json.dumps({
        "median_kill_to_retry_started_s": statistics.median(
            t.kill_to_retry_started_s for t in trials),
        "median_kill_to_power_off_completed_s": statistics.median(
            t.kill_to_power_off_completed_s for t in trials),
        "median_kill_to_run_done_s": statistics.median(t.kill_to_run_done_s for t in trials),
        "work_left_at_kill_s": "up to (vms - off_at_kill) x delay",
        "machine": machine(),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
