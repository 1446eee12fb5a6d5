"""End-to-end benchmark of the worker: signal to all selected VMs confirmed off.

    .venv/bin/python -m bench.worker_preempt [--sizes 10,100,1000] [--repeats 3]
        [--vcsim-vms-per-pool 1000] [--concurrency 5]

On loopback, all real: a Temporal dev server, vcsim with 10 clusters x 3 hosts and
1,000 VMs per cluster (10,000 VMs; vcsim builds it in many minutes the first time, then
it is loaded from a cache outside the repository: bench/inventories.py), and the worker
built from its settings as `preemptctl worker` builds it, in this process so that its
vCenter client's round-trip counter can be read.

For each size N, N powered-on VMs spread over the clusters carry a tag of their own;
the cap (PREEMPTION_MAX_VMS) is N, the signal is HIGH (hard power-off), the
cooldown 0. Measured per run:
- signal -> confirmed off: from just before the signal-with-start call to the
  server's completion time of the PowerOffVMs activity (which returns only once
  vCenter says each VM is off); the VMs' power states are read back to check;
- signal -> run done: to the completion of the last activity (annotations written);
- vCenter round trips (SOAP + REST, VSphereClient.round_trips) of the whole run,
  and of find + power-off alone.
Between repetitions the VMs are powered on again (not timed). The first run of a
worker also logs in to vCenter (its round trips include the logins).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
from urllib.parse import urlsplit, urlunsplit

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench.inventories import served
from bench.machine import machine, quiet_logs
from vsphere_preemption import worker
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.settings import WorkerSettings, load
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.tasks import Fanout
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"


@dataclass
class Run:
    size: int
    repeat: int
    to_confirmed_off_s: float
    to_run_done_s: float
    round_trips_run: int
    round_trips_find_and_power_off: int
    powered_off: int


@dataclass
class Target:
    """Where vcsim answers: the SDK URL without credentials, and the credentials."""

    url: str
    username: str
    password: str


def target_of(govc_url: str) -> Target:
    parts = urlsplit(govc_url)
    netloc = f"{parts.hostname}:{parts.port}"
    return Target(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/sdk", "", "")),
        username=parts.username or "user",
        password=parts.password or "pass",
    )


def config_for(sim: Target | Vcsim) -> VCenterConfig:
    return VCenterConfig(url=sim.url, username=sim.username, password=sim.password, insecure=True)


def spread(inventory: Inventory) -> list[VmRef]:
    by_cluster: dict[str, list[VmRef]] = {}
    for state in inventory.vms():
        by_cluster.setdefault(str(state.cluster), []).append(state.ref)
    columns = [by_cluster[k] for k in sorted(by_cluster)]
    return [c[i] for i in range(max(map(len, columns))) for c in columns if i < len(c)]


def signal(tag: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (FIXTURES / "02_old-router_PreemptVMsChan-signal-WorkflowRequest.json").read_text()
    )
    payload.update(tag=tag, criticality="HIGH", replyTo="")
    return payload


async def completed_at(handle: WorkflowHandle[Any, Any], activity: str) -> float:
    """Server time (epoch s) at which the last scheduled `activity` completed."""
    history = await handle.fetch_history()
    names = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    done = [
        e.event_time.ToDatetime().timestamp()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and names.get(e.activity_task_completed_event_attributes.scheduled_event_id) == activity
    ]
    if not done:
        raise RuntimeError(f"{activity} never completed in {handle.id}")
    return done[-1]


async def one_run(
    client: Client, task_queue: str, vcenter: VSphereClient, tag: str, size: int, repeat: int
) -> Run:
    before = vcenter.round_trips
    started = time.time()
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        id=f"bench-{size}-{repeat}-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue,
        execution_timeout=timedelta(hours=1),
        start_signal=SIGNAL_NAME,
        start_signal_args=[signal(tag)],
    )
    while True:  # the run is done once the query answers it and annotations are in
        state = json.loads(await handle.query("current_state", result_type=str))
        if state["virtualMachines"] is not None:
            try:
                annotated = await completed_at(handle, "AnnotateVms")
                break
            except RuntimeError:
                pass
        await asyncio.sleep(0.05)
    round_trips_run = vcenter.round_trips - before
    off = await completed_at(handle, "PowerOffVMs")
    await handle.terminate("benchmark run done")
    return Run(
        size=size,
        repeat=repeat,
        to_confirmed_off_s=off - started,
        to_run_done_s=annotated - started,
        round_trips_run=round_trips_run,
        round_trips_find_and_power_off=-1,  # filled by the caller (needs a separate count)
        powered_off=len(state["virtualMachines"]),
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    inventory_flags = ["-cluster", "10", "-host", "3", "-standalone-host", "0",
                       "-vm", str(args.vcsim_vms_per_pool)]  # fmt: skip
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        sim: Target | Vcsim
        if args.vcsim_url:
            # A vcsim already running (its GOVC_URL): building 10,000 VMs takes long.
            sim = target_of(args.vcsim_url)
            vcsim_startup: float | None = None
        else:
            # Built once, then loaded from the cache (bench/inventories.py).
            sim = stack.enter_context(served(inventory_flags)).sim
            vcsim_startup = time.monotonic() - t0
            print(f"vcsim {' '.join(inventory_flags)}: ready in {vcsim_startup:.0f} s", flush=True)
        server = stack.enter_context(TemporalDevServer())
        admin = VSphereClient(config_for(sim), poll_interval=0.2)
        inventory = Inventory(admin, task_timeout=1800)
        vms = spread(inventory)
        print(f"inventory: {len(vms)} VMs", flush=True)
        chosen: dict[int, list[VmRef]] = {}
        offset = 0
        for size in sizes:
            chosen[size] = vms[offset : offset + size]
            offset += size
            inventory.tag(f"bench-{size}", chosen[size])
        client = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
        runs: list[Run] = []
        with tempfile.TemporaryDirectory() as tmp:
            secret = Path(tmp)
            (secret / "username").write_text(sim.username)
            (secret / "password").write_text(sim.password)
            for size in sizes:
                task_queue = f"bench-{size}-{uuid.uuid4().hex[:6]}"
                settings = load(WorkerSettings, {
                    "TEMPORAL_URL": server.address, "TEMPORAL_TASKQUEUE": task_queue,
                    "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
                    "VCENTER_SECRET_PATH": str(secret), "PREEMPTION_COOLDOWN": "0",
                    "PREEMPTION_MAX_VMS": str(size),
                    # every tagged VM, spread over the clusters (fixture 02's alarmed host
                    # is not in vcsim): the Go worker's choice, as before select-by-plan
                    "PREEMPTION_SCOPE": "vcenter",
                    "PREEMPTION_MAX_CONCURRENCY": str(args.concurrency),
                })  # fmt: skip
                vcenter = VSphereClient(worker.vcenter_config(settings))
                stop = asyncio.Event()
                task = asyncio.create_task(worker.run(settings, stop, vcenter=vcenter))
                try:
                    for repeat in range(args.repeats):
                        inventory.power_on(chosen[size])  # not timed
                        run = await one_run(
                            client, task_queue, vcenter, f"bench-{size}", size, repeat
                        )
                        states = admin.read_vms(chosen[size])
                        off = sum(s.power_state == PowerState.POWERED_OFF for s in states.values())
                        if off != size or run.powered_off != size:
                            raise RuntimeError(
                                f"size {size}: {off} off, run says {run.powered_off}"
                            )
                        # find + power-off alone, on the warm session, outside the workflow
                        inventory.power_on(chosen[size])
                        before = vcenter.round_trips
                        selection = vcenter.find_preemptible(f"bench-{size}", size)
                        vcenter.power_off(selection.selected, force=True,
                                          soft_shutdown_grace=timedelta(0),
                                          fanout=Fanout(args.concurrency))  # fmt: skip
                        run.round_trips_find_and_power_off = vcenter.round_trips - before
                        runs.append(run)
                        print(json.dumps(asdict(run)), flush=True)
                finally:
                    stop.set()
                    await task
                    vcenter.close()
        admin.close()
    return {
        "vcsim_startup_s": None if vcsim_startup is None else round(vcsim_startup, 1),
        "vms": len(vms),
        "runs": [asdict(r) for r in runs],
        "summary": summarize(runs, sizes),
    }


def summarize(runs: Sequence[Run], sizes: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        mine = [r for r in runs if r.size == size]
        off = [r.to_confirmed_off_s for r in mine]
        rows.append({
            "size": size,
            "median_to_confirmed_off_s": round(statistics.median(off), 3),
            "max_to_confirmed_off_s": round(max(off), 3),
            "median_to_run_done_s": round(statistics.median(r.to_run_done_s for r in mine), 3),
            "round_trips_first_run": mine[0].round_trips_run,
            "round_trips_warm_run": statistics.median(r.round_trips_run for r in mine[1:])
            if len(mine) > 1 else None,
            "round_trips_find_and_power_off": mine[-1].round_trips_find_and_power_off,
        })  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vcsim-vms-per-pool", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument(
        "--vcsim-url", help="use this running vcsim (its GOVC_URL); never a real vCenter"
    )
    args = parser.parse_args(argv)
    quiet_logs()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    result = asyncio.run(bench(args))
    result["machine"] = machine()
    print(json.dumps(result["summary"], indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in {"runs", "summary"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
