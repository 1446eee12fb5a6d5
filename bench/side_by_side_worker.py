"""The worker against the Go worker, side by side: signal -> 10 VMs read back powered off.

    .venv/bin/python -m bench.side_by_side_worker --go-worker DIR [--python PY]
        [--rounds 5] [--runs 5] [--pause 3] [--poll-ms 5] [--vcsim-vms-per-pool 30]
        [--temporal HOST:PORT] [--logs DIR]

DIR is the Go worker's source (a snapshot of embano1/vsphere-preemption: the Go module proxy
refuses that module, so `git archive` of a snapshot); its `cmd/worker` is built here with
`go build` (its dependencies from the Go module proxy) into a temporary directory, never into
this repository. All real, on loopback: one Temporal dev server, one vcsim
(`-cluster 2 -host 2 -standalone-host 0 -vm <per pool>`), 10 powered-on VMs spread over both
clusters carrying one tag, and the two workers as processes of their own, one at a time:
each round starts ours and then Go's (the order swaps every round), each on a fresh task
queue, stopped after its turn.

Both act on the same 10 VMs: the Go worker takes the first 10 VMs carrying the tag (its cap);
ours runs with PREEMPTION_SCOPE=vcenter (every tagged VM, as Go), PREEMPTION_MAX_VMS=10,
PREEMPTION_NOTICE_HIGH=0 and PREEMPTION_COOLDOWN=0. The signal is the Go function's
(signal-with-start, fixture 02, `criticality: HIGH`: hard power-off, no `replyTo`), a fresh
workflow id per run.

Per turn: the worker is started, the bench waits until it polls the task queue, then a first
run (reported apart: the worker's first, with whatever it does lazily) and `--runs` measured
runs. Per run, timed from just before the signal-with-start call:
- **all off (read back)**: the bench polls the 10 VMs' power state (one batched
  PropertyCollector read every `--poll-ms`, the same for both) until all 10 read powered off.
  The Go worker does not wait for its power-off tasks (nor check them); ours returns from
  PowerOffVMs only once vCenter says every VM is off: the same observation for both.
- **run done**: the server's completion time of AnnotateVms (the last activity of both).
- the workflow's history as a timeline (server event times, same clock on loopback): first
  workflow task, each activity scheduled / started / completed, local activity markers;
  medians per program, to see where the time goes.
Between runs: the run's end is awaited, its workflow terminated, the VMs powered on again
and `--pause` seconds left idle (not timed): alarms come minutes apart, and the Go worker
(Temporal Go SDK v1.10) hands its tasks over ~45 ms late each when runs follow each other
back to back (`--pause 0` shows it; BENCHMARKS.md). The load average before and after each
turn is printed with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from bench.go_originals import build_go
from bench.machine import loadavg, quiet_logs
from bench.worker_preempt import config_for, signal
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

VMS = 10  # the Go worker's cap
TAG = "bench-side-by-side"
ANNOTATE = "AnnotateVms"
OFF = "all off (read back)"


@dataclass
class Worker:
    name: str  # "ours" | "Go"
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def start(self, common: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, **common, **self.env}
        with open(log, "ab") as out:
            return subprocess.Popen(
                self.command, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def polled(client: Client, task_queue: str, proc: subprocess.Popen[bytes]) -> None:
    """Until a worker polls `task_queue` for workflow tasks (it is connected and ready)."""
    request = DescribeTaskQueueRequest(
        namespace=DEFAULT_NAMESPACE,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        answer = await client.workflow_service.describe_task_queue(request)
        if answer.pollers:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no worker polled {task_queue} within 60 s")


def wait_all_off(admin: VSphereClient, vms: Sequence[VmRef], poll: float, timeout: float) -> float:
    """Epoch seconds at which a read first found every VM of `vms` powered off."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = admin.read_vms(vms)
        if len(states) == len(vms) and all(
            s.power_state == PowerState.POWERED_OFF for s in states.values()
        ):
            return time.time()
        time.sleep(poll)
    raise RuntimeError(f"the {len(vms)} VMs were not all off within {timeout} s")


def timeline(history: Any, since: float) -> dict[str, float]:
    """Milliseconds from `since` to each step of a run (the first of each label)."""
    names: dict[int, str] = {}
    steps: dict[str, float] = {}
    after = "the signal"  # workflow tasks are named by the step they follow

    def at(label: str, event: Any) -> None:
        steps.setdefault(label, (event.event_time.ToDatetime().timestamp() - since) * 1000)

    for e in history.events:
        kind = e.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            at("workflow started (signal-with-start)", e)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            at(f"workflow task started (after {after})", e)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            at(f"workflow task completed (after {after})", e)
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            at("local activity marker recorded", e)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = e.activity_task_scheduled_event_attributes
            names[e.event_id] = attrs.activity_type.name
            at(f"{attrs.activity_type.name} scheduled", e)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            name = names.get(e.activity_task_started_event_attributes.scheduled_event_id, "?")
            at(f"{name} started", e)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name = names.get(e.activity_task_completed_event_attributes.scheduled_event_id, "?")
            at(f"{name} completed", e)
            after = name
    return steps


async def one_run(
    client: Client,
    task_queue: str,
    admin: VSphereClient,
    inventory: Inventory,
    vms: Sequence[VmRef],
    poll: float,
    pause: float,
) -> dict[str, float]:
    inventory.power_on(vms)  # not timed
    states = admin.read_vms(vms)
    if sum(s.power_state == PowerState.POWERED_ON for s in states.values()) != len(vms):
        raise RuntimeError("the VMs are not all on before the run")
    await asyncio.sleep(pause)  # idle between runs, as alarms come minutes apart
    started = time.time()
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        WORKFLOW_TYPE,
        id=f"bench-sbs-{uuid.uuid4().hex[:10]}",
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=10),
        start_signal=SIGNAL_NAME,
        start_signal_args=[signal(TAG)],
    )
    off = await asyncio.to_thread(wait_all_off, admin, vms, poll, 120.0)
    steps = {OFF: (off - started) * 1000}
    deadline = time.monotonic() + 120
    while True:  # the run's end (annotations written), before the VMs go on again
        history = await handle.fetch_history()
        steps |= timeline(history, started)
        if f"{ANNOTATE} completed" in steps:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{handle.id}: no {ANNOTATE} completed within 120 s")
        await asyncio.sleep(0.05)
    await handle.terminate("benchmark run done")
    return steps


async def turn(
    worker: Worker,
    temporal: str,
    client: Client,
    sim: Vcsim,
    secret: Path,
    admin: VSphereClient,
    inventory: Inventory,
    vms: Sequence[VmRef],
    args: argparse.Namespace,
    logs: Path,
) -> dict[str, Any]:
    task_queue = f"bench-{worker.name.lower()}-{uuid.uuid4().hex[:8]}"
    common = {
        "TEMPORAL_URL": temporal, "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "TEMPORAL_TASKQUEUE": task_queue, "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
        "VCENTER_SECRET_PATH": str(secret), "DEBUG": "false",
    }  # fmt: skip
    before = loadavg()
    proc = worker.start(common, logs / f"{worker.name}-{task_queue}.log")
    try:
        await polled(client, task_queue, proc)
        first = await one_run(
            client, task_queue, admin, inventory, vms, args.poll_ms / 1000, args.pause
        )
        runs = [
            await one_run(
                client, task_queue, admin, inventory, vms, args.poll_ms / 1000, args.pause
            )
            for _ in range(args.runs)
        ]
    finally:
        stop(proc)
    return {"first": first, "runs": runs, "loadavg": f"{before} -> {loadavg()}"}


def median_steps(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    labels = {label for run in runs for label in run}
    return {
        label: statistics.median(run[label] for run in runs if label in run) for label in labels
    }


async def bench(args: argparse.Namespace, workers: Sequence[Worker], tmp: Path) -> dict[str, Any]:
    flags = ["-cluster", "2", "-host", "2", "-standalone-host", "0",
             "-vm", str(args.vcsim_vms_per_pool)]  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {w.name: [] for w in workers}
    with contextlib.ExitStack() as stack:
        if args.temporal:  # a server started by hand, e.g. with other dynamic config
            temporal = args.temporal
        else:
            temporal = stack.enter_context(TemporalDevServer(log_file=tmp / "temporal.log")).address
        sim = stack.enter_context(Vcsim(args=flags))
        secret = tmp / "vsphere"
        secret.mkdir()
        (secret / "username").write_text(sim.username)
        (secret / "password").write_text(sim.password)
        admin = VSphereClient(config_for(sim), poll_interval=0.05)
        inventory = Inventory(admin)
        everything = inventory.vms()
        clusters = sorted({str(s.cluster) for s in everything})
        per_cluster = [[s.ref for s in everything if str(s.cluster) == c] for c in clusters]
        vms = [c[i] for i in range(VMS) for c in per_cluster if i < len(c)][:VMS]
        inventory.tag(TAG, vms)
        print(f"vcsim {' '.join(flags)}: {len(everything)} VMs; {VMS} tagged {TAG!r}: "
              f"{', '.join(v.value for v in vms)}", file=sys.stderr, flush=True)  # fmt: skip
        client = await Client.connect(temporal, namespace=DEFAULT_NAMESPACE)
        try:
            for number in range(args.rounds):
                order = list(workers) if number % 2 == 0 else list(reversed(workers))
                for worker in order:
                    result = await turn(worker, temporal, client, sim, secret, admin, inventory,
                                        vms, args, args.logs or tmp)  # fmt: skip
                    results[worker.name].append(result)
                    offs = [round(r[OFF]) for r in result["runs"]]
                    print(f"round {number + 1} {worker.name}: first {result['first'][OFF]:.0f} ms,"
                          f" runs {offs} ms; load average {result['loadavg']}",
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            admin.close()
    return results


def report(results: Mapping[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    lines = []
    runs = {name: [r for turn in turns for r in turn["runs"]] for name, turns in results.items()}
    firsts = {name: [turn["first"] for turn in turns] for name, turns in results.items()}
    med = {name: median_steps(rs) for name, rs in runs.items()}
    ours, go = med["ours"], med["Go"]
    lines.append(f"{args.rounds} rounds, alternating, {args.runs} runs per turn after a first run; "
                 f"medians over {len(runs['ours'])} runs each. {os.cpu_count()} CPUs.")  # fmt: skip
    for number in range(args.rounds):
        lines.append(f"round {number + 1}: load average " + "; ".join(
            f"{name} {turns[number]['loadavg']}" for name, turns in results.items()))  # fmt: skip
    lines.append("")
    lines.append("| signal → | ours | Go | ours ÷ Go |")
    lines.append("| --- | --- | --- | --- |")

    def row(label: str, a: float | None, b: float | None) -> str:
        fa = "—" if a is None else f"{a:.0f} ms"
        fb = "—" if b is None else f"{b:.0f} ms"
        ratio = f"{a / b:.2f}" if a is not None and b else "—"
        return f"| {label} | {fa} | {fb} | {ratio} |"

    lines.append(row(f"**{OFF}, {VMS} VMs** (median)", ours[OFF], go[OFF]))
    spread = {name: sorted(r[OFF] for r in rs) for name, rs in runs.items()}
    cells = [f"{spread[n][0]:.0f} to {spread[n][-1]:.0f} ms" for n in ("ours", "Go")]
    lines.append(f"| {OFF}: fastest to slowest run | {cells[0]} | {cells[1]} | |")
    first = {name: median_steps(f)[OFF] for name, f in firsts.items()}
    label = f"{OFF}, a worker's first run (median of {args.rounds})"
    lines.append(row(label, first["ours"], first["Go"]))
    lines.append(row("run done (AnnotateVms completed)", ours[f"{ANNOTATE} completed"],
                     go[f"{ANNOTATE} completed"]))  # fmt: skip
    lines.append("")
    lines.append("Where the time goes (median ms from the signal, server event times):")
    lines.append("")
    lines.append("| step | ours | Go |")
    lines.append("| --- | --- | --- |")
    labels = sorted(set(ours) | set(go), key=lambda k: ours.get(k, go.get(k, 0.0)))
    for label in labels:
        a = f"{ours[label]:.1f}" if label in ours else "—"
        b = f"{go[label]:.1f}" if label in go else "—"
        lines.append(f"| {label} | {a} | {b} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--go-worker",
        type=Path,
        required=True,
        help="the Go worker's source (a snapshot of embano1/vsphere-preemption)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for ours")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per turn")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="power-state read interval")
    parser.add_argument("--vcsim-vms-per-pool", type=int, default=30)
    parser.add_argument("--temporal", help="a running Temporal server (host:port) to use")
    parser.add_argument("--pause", type=float, default=3.0, help="idle seconds before each run")
    parser.add_argument("--logs", type=Path, help="keep the workers' logs in this directory")
    args = parser.parse_args(argv)  # fmt: skip
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="side-by-side-worker-") as name:
        tmp = Path(name)
        binary = build_go(args.go_worker.resolve(), tmp, "./cmd/worker", "go-worker")
        workers = [
            Worker("ours", [args.python, "-m", "vsphere_preemption", "worker"], {
                "PREEMPTION_SCOPE": "vcenter", "PREEMPTION_MAX_VMS": str(VMS),
                "PREEMPTION_NOTICE_HIGH": "0", "PREEMPTION_COOLDOWN": "0",
                "MALLOC_ARENA_MAX": "2",  # as the image runs ours (Dockerfile)
            }),
            Worker("Go", [str(binary)]),
        ]  # fmt: skip
        results = asyncio.run(bench(args, workers, tmp))
    print(f"ours: {args.python} -m vsphere_preemption worker; Go: go build of "
          f"{args.go_worker}/cmd/worker; poll every {args.poll_ms:g} ms")  # fmt: skip
    print(report(results, args))
    go = subprocess.run(["go", "version"], capture_output=True, text=True, check=False)
    print(go.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
