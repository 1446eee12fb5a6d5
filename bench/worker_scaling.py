"""The worker from 10 to 100 to 1,000 tagged VMs: signal -> all off, and vCenter's round trips.

Run by bench/side_by_side_worker.py (`--scale 10,100,1000`), ours only: the Go worker caps a run
at 10 VMs. Ours runs as a process as in the side by side (`python -m vsphere_preemption worker`,
PREEMPTION_SCOPE=vcenter, PREEMPTION_NOTICE_HIGH=0, PREEMPTION_COOLDOWN=0), with
PREEMPTION_MAX_VMS the largest size and METRICS_ADDRESS set: the round trips are the worker's
own count, its `vsphere_preemption_worker_vcenter_requests_total` (temporal/run_metrics.py,
every SOAP and REST request to vCenter, whatever its outcome), scraped before and after each run.

vcsim serves an inventory of `-cluster 2 -host 2 -standalone-host 0 -vm <per pool>` (1,000 VMs
by default) from the cache of bench/inventories.py (built once, then loaded in seconds). For each
size N the first N VMs, spread over both clusters, carry a tag of their own. Per size, a first
run (reported apart: it looks the tag's name up, cached afterwards; the very first also logs in)
and `runs` runs, each timed from just before the signal-with-start (the Go function's signal,
`criticality: HIGH`: hard power-off) to the server's completion time of PowerOffVMs, which
returns only once vCenter says every VM is off (the bench reads the N power states back and
fails unless all are off), and to AnnotateVms' completion (run done). The VMs are powered on
again between runs, untimed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench.inventories import served
from bench.machine import loadavg
from bench.processes import Worker, polled, resident_mib, stop
from bench.worker_preempt import config_for, signal, spread
from vsphere_preemption.devtools.devservers import free_ports
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.temporal.run_metrics import VCENTER_REQUESTS
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

REQUESTS = f"{VCENTER_REQUESTS}_total"


def requests_so_far(metrics_url: str) -> dict[str, float]:
    """The worker's vCenter requests so far, by API (`soap`, `rest`), from its endpoint."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(REQUESTS + "{"):
            continue
        labels, _, value = line.rpartition(" ")
        api = labels.split('api="', 1)[1].split('"', 1)[0]
        counts[api] = counts.get(api, 0.0) + float(value)
    return counts


async def completions(handle: WorkflowHandle[Any, Any]) -> dict[str, float]:
    """Server completion time (epoch s) of each activity of the run, by name (the last)."""
    history = await handle.fetch_history()
    names: dict[int, str] = {}
    done: dict[str, float] = {}
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = e.activity_task_completed_event_attributes.scheduled_event_id
            done[names.get(scheduled, "?")] = e.event_time.ToDatetime().timestamp()
    return done


async def one_run(
    client: Client,
    task_queue: str,
    admin: VSphereClient,
    inventory: Inventory,
    metrics_url: str,
    tag: str,
    vms: Sequence[Any],
) -> dict[str, Any]:
    inventory.power_on(vms)  # not timed
    await asyncio.sleep(1.0)  # idle before the run
    before = requests_so_far(metrics_url)
    started = time.time()
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        WORKFLOW_TYPE,
        id=f"bench-scale-{len(vms)}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        execution_timeout=timedelta(hours=1),
        start_signal=SIGNAL_NAME,
        start_signal_args=[signal(tag)],
    )
    deadline = time.monotonic() + 1800
    while "AnnotateVms" not in (done := await completions(handle)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{handle.id}: not done within 1,800 s")
        await asyncio.sleep(0.05)
    after = requests_so_far(metrics_url)
    await handle.terminate("benchmark run done")
    states = admin.read_vms(list(vms))
    off = sum(s.power_state == PowerState.POWERED_OFF for s in states.values())
    if off != len(vms):
        raise RuntimeError(f"{len(vms)} VMs: only {off} read back powered off")
    by_api = {api: round(after.get(api, 0.0) - before.get(api, 0.0)) for api in after}
    return {
        "vms": len(vms),
        "off_s": done["PowerOffVMs"] - started,
        "done_s": done["AnnotateVms"] - started,
        "requests": sum(by_api.values()),
        "by_api": by_api,
    }


async def scale(
    sizes: Sequence[int],
    runs: int,
    temporal: str,
    client: Client,
    command: Sequence[str],
    env: Mapping[str, str],
    logs: Path,
    per_pool: int,
) -> dict[str, Any]:
    """Ours at each size; `command`/`env` start it (the side by side's, without its settings)."""
    flags = ["-cluster", "2", "-host", "2", "-standalone-host", "0", "-vm", str(per_pool)]
    with served(flags) as inventory_served:
        sim = inventory_served.sim
        admin = VSphereClient(config_for(sim), poll_interval=0.1)
        inventory = Inventory(admin, task_timeout=1800)
        vms = spread(inventory)
        if max(sizes) > len(vms):
            raise RuntimeError(f"{max(sizes)} VMs asked for, the inventory has {len(vms)}")
        for size in sizes:
            inventory.tag(f"bench-scale-{size}", vms[:size])
        secret = logs / f"scale-secret-{uuid.uuid4().hex[:6]}"
        secret.mkdir()
        (secret / "username").write_text(sim.username)
        (secret / "password").write_text(sim.password)
        port = free_ports(1)[0]
        task_queue = f"bench-scale-{uuid.uuid4().hex[:8]}"
        worker = Worker("ours", list(command), {
            **env, "PREEMPTION_MAX_VMS": str(max(sizes)), "METRICS_ADDRESS": f"127.0.0.1:{port}",
        })  # fmt: skip
        common = {
            "TEMPORAL_URL": temporal, "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
            "TEMPORAL_TASKQUEUE": task_queue, "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
            "VCENTER_SECRET_PATH": str(secret), "DEBUG": "false",
        }  # fmt: skip
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        results: dict[str, Any] = {"inventory": len(vms), "loadavg_before": loadavg()}
        proc = worker.start(common, logs / f"scale-{task_queue}.log")
        try:
            await polled(client, task_queue, proc)
            rows = []
            for size in sizes:
                # The first run at a size also looks its tag's name up (cached after); the
                # worker's very first also logs in and looks the custom field's key up.
                for number in range(runs + 1):
                    rows.append(await one_run(
                        client, task_queue, admin, inventory, metrics_url,
                        f"bench-scale-{size}", vms[:size],
                    ) | {"warm": number > 0})  # fmt: skip
                    print(f"scale {size}: off {rows[-1]['off_s']:.2f} s, "
                          f"{rows[-1]['requests']} vCenter requests {rows[-1]['by_api']}",
                          flush=True)  # fmt: skip
            results["rss_after"] = resident_mib(proc.pid)
        finally:
            stop(proc)
            admin.close()
        results["runs"] = rows
        results["loadavg_after"] = loadavg()
    return results


def report(results: Mapping[str, Any], sizes: Sequence[int]) -> list[str]:
    lines = [
        f"Scaling, ours only ({results['inventory']}-VM vcsim; load average "
        f"{results['loadavg_before']} -> {results['loadavg_after']}); medians:",
        "",
        "| tagged VMs | signal → all confirmed off | signal → run done "
        "| vCenter round trips per run (SOAP + REST) | per VM | the first run at that size |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        rows = [r for r in results["runs"] if r["vms"] == size and r["warm"]]
        off = statistics.median(r["off_s"] for r in rows)
        done = statistics.median(r["done_s"] for r in rows)
        requests = statistics.median(r["requests"] for r in rows)
        apis = " + ".join(f"{statistics.median(r['by_api'].get(a, 0) for r in rows):.0f}"
                          for a in ("soap", "rest"))  # fmt: skip
        cold = next(r for r in results["runs"] if r["vms"] == size and not r["warm"])
        lines.append(f"| {size:,} | {off:.2f} s | {done:.2f} s | {requests:.0f} ({apis}) "
                     f"| {requests / size:.2f} | {cold['requests']} round trips, off in "
                     f"{cold['off_s']:.2f} s |")  # fmt: skip
    lines.append("")
    lines.append(f"The first run at a size also looks its tag's name up (the first of all, at "
                 f"{sizes[0]:,} VMs, also logs in and looks the custom field up). Resident "
                 f"memory of ours after the runs: {results['rss_after']} MiB.")  # fmt: skip
    return lines
