"""The worker against the Go worker, side by side: signal -> 10 VMs read back powered off,
resident memory, and ours from 10 to 100 to 1,000 VMs with vCenter's round trips (issue 20).

    .venv/bin/python -m bench.side_by_side_worker --go-worker DIR [--python PY | --image-venv V]
        [--no-compile] [--rounds 5] [--runs 5] [--pause 3] [--poll-ms 5]
        [--vcsim-vms-per-pool 30] [--temporal HOST:PORT] [--logs DIR]
        [--scale 10,100,1000] [--scale-runs 2] [--scale-vms-per-pool 500] [--floor-vcenter]

DIR is the Go worker's source (a snapshot of embano1/vsphere-preemption: the Go module proxy
refuses that module, so `git archive` of a snapshot); its `cmd/worker` is built here with
`go build` (its dependencies from the Go module proxy) into a temporary directory, never into
this repository. All real, on loopback: one Temporal dev server, one vcsim
(`-cluster 2 -host 2 -standalone-host 0 -vm <per pool>`), 10 powered-on VMs spread over both
clusters carrying one tag, and the workers as processes of their own, one at a time: each round
starts ours, Go's and the floor (the order turns every round), each on a fresh task queue,
stopped after its turn.

Ours runs as the image runs it: from compiled bytecode (the Dockerfile's `compileall`; the
bench compiles the package `--python` imports, unless `--no-compile`: a checkout under
PYTHONDONTWRITEBYTECODE has no `.pyc` of its own, and the workflow sandbox then compiles the
workflow module's source for every new workflow), or, with `--image-venv V`, from a virtualenv
built at V as the Dockerfile builds /opt/venv (bench/image_venv.py: the runtime lock only, the
package as a wheel, compiled, no pip or setuptools). MALLOC_ARENA_MAX=2 as the image sets it.

Both act on the same 10 VMs: the Go worker takes the first 10 VMs carrying the tag (its cap);
ours runs with PREEMPTION_SCOPE=vcenter (every tagged VM, as Go), PREEMPTION_MAX_VMS=10,
PREEMPTION_NOTICE_HIGH=0 and PREEMPTION_COOLDOWN=0. The signal is the Go function's
(signal-with-start, fixture 02, `criticality: HIGH`: hard power-off, no `replyTo`), a fresh
workflow id per run.

Per turn: the worker is started, the bench waits until it polls the task queue and reads its
resident memory (idle), then a first run (reported apart: the worker's first, with whatever it
does lazily) and `--runs` measured runs, then its resident memory again (after the runs). Per
run, timed from just before the signal-with-start call:
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

**The floor** (bench/floor_worker.py): a bare Temporal Python worker from the same interpreter,
nothing of ours, whose workflow takes the same signal and issues ours' commands in ours' workflow
tasks (the policy's local activity, PlanPreemption, PowerOffVMs, AnnotateVms),
each activity doing nothing: its memory after the same number of runs, and its signal ->
AnnotateVms done, are what any worker on the Python SDK costs for a run of ours' shape. With
them, the resident memory of a fresh interpreter after importing the SDK, then pyVmomi, then all
of the worker: where ours' memory goes. With `--floor-vcenter`, also **the floor with ours'
vCenter calls** (bench/floor_vcenter_worker.py): the same shape, its PlanPreemption reading the
tag's VMs and their facts and its PowerOffVMs powering them off through ours' vSphere adapter,
run as ours is (10 VMs read back off): the floor of a Python worker that chooses by facts.

**Scaling** (bench/worker_scaling.py, `--scale`, empty to skip): ours alone on a 1,000-VM
inventory, 10, 100 and 1,000 tagged VMs, signal -> all confirmed off and the vCenter round
trips of each run as the worker counts them (its vcenter_requests metric).
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench import floor_worker, image_venv, worker_scaling
from bench.go_originals import build_go
from bench.machine import loadavg, quiet_logs
from bench.processes import Worker, polled, resident, stop
from bench.worker_preempt import config_for, signal
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.temporal.contracts import (
    ANNOTATE_VMS,
    GET_POLICY,
    PLAN_PREEMPTION,
    POWER_OFF_VMS,
)
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

VMS = 10  # the Go worker's cap
TAG = "bench-side-by-side"
ANNOTATE = "AnnotateVms"
OFF = "all off (read back)"
FLOOR_VC = "floor+vCenter"  # bench/floor_vcenter_worker.py
DONE = f"{ANNOTATE} completed"
# Issue 20's goals for the worker, against the Go worker in the same run.
TIME_GOAL = 1.0  # signal -> 10 VMs off, ours / Go
MEMORY_GOAL = 1.5  # resident memory after the runs, ours / Go
# What a fresh interpreter imports, step by step, for "where the memory goes".
IMPORT_STEPS = (
    ("the interpreter alone", ()),
    ("+ the Temporal SDK (client, worker)", ("temporalio.client", "temporalio.worker")),
    ("+ pyVmomi", ("pyVim.connect",)),
    ("+ all of the worker (ours)", ("vsphere_preemption.worker",)),
)

Run = Callable[[Client, str], Awaitable[dict[str, float]]]

if (floor_worker.WORKFLOW, floor_worker.SIGNAL) != (WORKFLOW_TYPE, SIGNAL_NAME):
    raise RuntimeError("bench/floor_worker.py names another workflow or signal than the wire")
_FLOOR_ACTIVITIES = (GET_POLICY, PLAN_PREEMPTION, POWER_OFF_VMS, ANNOTATE_VMS)
if tuple(floor_worker.ACTIVITIES) != _FLOOR_ACTIVITIES:
    raise RuntimeError("bench/floor_worker.py names other activities than ours")


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


async def start(client: Client, task_queue: str) -> tuple[float, WorkflowHandle[Any, Any]]:
    """The Go function's signal-with-start on a fresh workflow id; when it was sent."""
    started = time.time()
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        WORKFLOW_TYPE,
        id=f"bench-sbs-{uuid.uuid4().hex[:10]}",
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=10),
        start_signal=SIGNAL_NAME,
        start_signal_args=[signal(TAG)],
    )
    return started, handle


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
    started, handle = await start(client, task_queue)
    off = await asyncio.to_thread(wait_all_off, admin, vms, poll, 120.0)
    steps = {OFF: (off - started) * 1000}
    deadline = time.monotonic() + 120
    while True:  # the run's end (annotations written), before the VMs go on again
        history = await handle.fetch_history()
        steps |= timeline(history, started)
        if DONE in steps:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{handle.id}: no {ANNOTATE} completed within 120 s")
        await asyncio.sleep(0.05)
    await handle.terminate("benchmark run done")
    return steps


async def floor_run(client: Client, task_queue: str, pause: float) -> dict[str, float]:
    """A run of the floor worker: the same signal, its activities done, its workflow ended."""
    await asyncio.sleep(pause)
    started, handle = await start(client, task_queue)
    await handle.result()
    return timeline(await handle.fetch_history(), started)


async def turn(
    worker: Worker,
    common: Mapping[str, str],
    client: Client,
    run: Run,
    runs: int,
    logs: Path,
) -> dict[str, Any]:
    task_queue = f"bench-{worker.name.lower()}-{uuid.uuid4().hex[:8]}"
    before = loadavg()
    proc = worker.start({**common, "TEMPORAL_TASKQUEUE": task_queue},
                        logs / f"{worker.name}-{task_queue}.log")  # fmt: skip
    try:
        await polled(client, task_queue, proc)
        idle = resident(proc.pid)
        first = await run(client, task_queue)
        measured = [await run(client, task_queue) for _ in range(runs)]
        after = resident(proc.pid)
    finally:
        stop(proc)
    return {"first": first, "runs": measured, "loadavg": f"{before} -> {loadavg()}",
            "rss_idle": idle["VmRSS"], "rss_after": after["VmRSS"],
            "anon_after": after.get("RssAnon"), "file_after": after.get("RssFile")}  # fmt: skip


def median_steps(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    labels = {label for run in runs for label in run}
    return {
        label: statistics.median(run[label] for run in runs if label in run) for label in labels
    }


async def bench(args: argparse.Namespace, workers: Sequence[Worker], tmp: Path) -> dict[str, Any]:
    flags = ["-cluster", "2", "-host", "2", "-standalone-host", "0",
             "-vm", str(args.vcsim_vms_per_pool)]  # fmt: skip
    results: dict[str, Any] = {w.name: [] for w in workers}
    logs = args.logs or tmp
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
        common = {
            "TEMPORAL_URL": temporal, "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
            "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
            "VCENTER_SECRET_PATH": str(secret), "DEBUG": "false",
        }  # fmt: skip
        poll, pause = args.poll_ms / 1000, args.pause

        async def vm_run(client: Client, task_queue: str) -> dict[str, float]:
            return await one_run(client, task_queue, admin, inventory, vms, poll, pause)

        async def trivial_run(client: Client, task_queue: str) -> dict[str, float]:
            return await floor_run(client, task_queue, pause)

        client = await Client.connect(temporal, namespace=DEFAULT_NAMESPACE)
        try:
            for number in range(args.rounds):
                shift = number % len(workers)
                for worker in [*workers[shift:], *workers[:shift]]:
                    run = trivial_run if worker.name == "floor" else vm_run
                    result = await turn(worker, common, client, run, args.runs, logs)
                    results[worker.name].append(result)
                    first = f"{result['first'][OFF]:.0f}" if OFF in result["first"] else "—"
                    offs = [round(r.get(OFF, r.get(DONE, 0.0))) for r in result["runs"]]
                    rss = f"RSS {result['rss_idle']} -> {result['rss_after']} MiB"
                    print(f"round {number + 1} {worker.name}: first {first} ms, runs {offs} ms; "
                          f"{rss}; load average {result['loadavg']}",
                          file=sys.stderr, flush=True)  # fmt: skip
            if args.scale:
                ours = next(w for w in workers if w.name == "ours")
                results["scale"] = await worker_scaling.scale(
                    args.scale, args.scale_runs, temporal, client, ours.command, ours.env,
                    logs, args.scale_vms_per_pool,
                )  # fmt: skip
        finally:
            admin.close()
    return results


def import_rss(python: str) -> list[tuple[str, int]]:
    """Resident memory (MiB) of a fresh `python` after importing each step's modules too."""
    rows: list[tuple[str, int]] = []
    modules: list[str] = []
    for label, more in IMPORT_STEPS:
        modules += more
        code = "".join(f"import {m}\n" for m in modules) + (
            "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
        )
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
        rows.append((label, int(out.stdout.strip()) // 1024))
    return rows


def verdict(ratio: float, goal: float) -> str:
    return "**met**" if ratio <= goal else "**not met**"


def memory_lines(results: Mapping[str, Any], imports: Sequence[tuple[str, int]]) -> list[str]:
    names = [n for n in ("ours", "Go", "floor", FLOOR_VC) if results.get(n)]
    rss = {n: (statistics.median(t["rss_idle"] for t in results[n]),
               statistics.median(t["rss_after"] for t in results[n])) for n in names}  # fmt: skip
    label = {
        "ours": "ours",
        "Go": "Go",
        "floor": "the floor: a bare Temporal Python worker (bench/floor_worker.py)",
        FLOOR_VC: "the floor with ours' vCenter calls (bench/floor_vcenter_worker.py)",
    }
    parts = {
        n: tuple(statistics.median(t[k] for t in results[n]) for k in ("anon_after", "file_after"))
        for n in names
    }
    lines = ["| resident memory (VmRSS, median of the turns) | idle, polling | after the runs "
             "| of which anonymous / file-backed |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    lines += [f"| {label[n]} | {rss[n][0]:.0f} MiB | {rss[n][1]:.0f} MiB "
              f"| {parts[n][0]:.0f} / {parts[n][1]:.0f} MiB |" for n in names]  # fmt: skip
    lines += ["", "| a fresh interpreter (ours' `--python`) after importing | resident |",
              "| --- | --- |"]  # fmt: skip
    lines += [f"| {step} | {mib} MiB |" for step, mib in imports]
    return lines


def report(results: Mapping[str, Any], args: argparse.Namespace, imports: Sequence[Any]) -> str:
    lines = []
    turns = {n: results[n] for n in ("ours", "Go", "floor", FLOOR_VC) if results.get(n)}
    runs = {name: [r for turn in ts for r in turn["runs"]] for name, ts in turns.items()}
    firsts = {name: [turn["first"] for turn in ts] for name, ts in turns.items()}
    med = {name: median_steps(rs) for name, rs in runs.items()}
    ours, go = med["ours"], med["Go"]
    lines.append(f"{args.rounds} rounds, the order turning, {args.runs} runs per turn after a "
                 f"first run; medians over {len(runs['ours'])} runs each; "
                 f"{os.cpu_count()} CPUs.")  # fmt: skip
    for number in range(args.rounds):
        lines.append(f"round {number + 1}: load average " + "; ".join(
            f"{name} {ts[number]['loadavg']}" for name, ts in turns.items()))  # fmt: skip
    rss_ours = statistics.median(t["rss_after"] for t in turns["ours"])
    rss_go = statistics.median(t["rss_after"] for t in turns["Go"])
    time_ratio, rss_ratio = ours[OFF] / go[OFF], rss_ours / rss_go
    lines += ["", "Issue 20's goals for the worker:", "",
              f"- signal → {VMS} VMs off ≤ {TIME_GOAL:.1f} x Go: ours {ours[OFF]:.0f} ms, Go "
              f"{go[OFF]:.0f} ms, {time_ratio:.2f} x Go: {verdict(time_ratio, TIME_GOAL)}",
              f"- resident memory after the runs ≤ {MEMORY_GOAL:.1f} x Go: ours {rss_ours:.0f} "
              f"MiB, Go {rss_go:.0f} MiB, {rss_ratio:.2f} x Go: "
              f"{verdict(rss_ratio, MEMORY_GOAL)}"]  # fmt: skip
    if "floor" in turns:
        floor = statistics.median(t["rss_after"] for t in turns["floor"])
        lines.append(f"  (the floor, a bare Temporal Python worker: {floor:.0f} MiB, "
                     f"{floor / rss_go:.2f} x Go; ours holds {rss_ours - floor:.0f} MiB "
                     "above it)")  # fmt: skip
    lines += ["", "| signal → | ours | Go | ours ÷ Go |", "| --- | --- | --- | --- |"]

    def row(label: str, a: float | None, b: float | None) -> str:
        fa = "—" if a is None else f"{a:.0f} ms"
        fb = "—" if b is None else f"{b:.0f} ms"
        ratio = f"{a / b:.2f}" if a is not None and b else "—"
        return f"| {label} | {fa} | {fb} | {ratio} |"

    lines.append(row(f"**{OFF}, {VMS} VMs** (median)", ours[OFF], go[OFF]))
    spread = {name: sorted(r[OFF] for r in runs[name]) for name in ("ours", "Go")}
    cells = [f"{spread[n][0]:.0f} to {spread[n][-1]:.0f} ms" for n in ("ours", "Go")]
    lines.append(f"| {OFF}: fastest to slowest run | {cells[0]} | {cells[1]} | |")
    first = {name: median_steps(firsts[name])[OFF] for name in ("ours", "Go")}
    label = f"{OFF}, a worker's first run (median of {args.rounds})"
    lines.append(row(label, first["ours"], first["Go"]))
    lines.append(row(f"run done ({DONE})", ours[DONE], go[DONE]))
    if "floor" in med:
        lines.append(f"| the floor's run done (AnnotateVms completed; ours' commands, no work) | "
                     f"{med['floor'][DONE]:.0f} ms | | |")  # fmt: skip
    if FLOOR_VC in med:
        vc = med[FLOOR_VC][OFF]
        lines += ["", f"The floor with ours' vCenter calls (bench/floor_vcenter_worker.py): "
                  f"{OFF} {vc:.0f} ms, {vc / go[OFF]:.2f} x Go; ours {ours[OFF] - vc:.0f} ms "
                  "above it."]  # fmt: skip
    lines += ["", *memory_lines(turns, imports), ""]
    lines.append("Where the time goes (median ms from the signal, server event times):")
    columns = [ours, go, med.get("floor", {})]
    heads = "| step | ours | Go | the floor |"
    if FLOOR_VC in med:
        columns.append(med[FLOOR_VC])
        heads += " the floor with ours' vCenter calls |"
    lines += ["", heads, "| --- " * (len(columns) + 1) + "|"]
    labels = sorted(set(ours) | set(go), key=lambda k: ours.get(k, go.get(k, 0.0)))
    for label in labels:
        cells = [f"{m[label]:.1f}" if label in m else "—" for m in columns]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    if "scale" in results:
        lines += ["", *worker_scaling.report(results["scale"], args.scale)]
    return "\n".join(lines)


def sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--go-worker",
        type=Path,
        required=True,
        help="the Go worker's source (a snapshot of embano1/vsphere-preemption)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for ours")
    parser.add_argument(
        "--image-venv",
        type=Path,
        help="build a venv here as the image builds its own, and run ours from it",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="leave ours' package without bytecode (a checkout as it is)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per turn")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="power-state read interval")
    parser.add_argument("--vcsim-vms-per-pool", type=int, default=30)
    parser.add_argument("--temporal", help="a running Temporal server (host:port) to use")
    parser.add_argument("--pause", type=float, default=3.0, help="idle seconds before each run")
    parser.add_argument("--logs", type=Path, help="keep the workers' logs in this directory")
    parser.add_argument(
        "--scale",
        type=sizes,
        default=[10, 100, 1000],
        help="tagged VMs per scaling run, ours only (empty: no scaling)",
    )
    parser.add_argument(
        "--floor-vcenter",
        action="store_true",
        help="also the floor with ours' vCenter calls (bench/floor_vcenter_worker.py)",
    )
    parser.add_argument("--scale-runs", type=int, default=2, help="measured runs per size")
    parser.add_argument("--scale-vms-per-pool", type=int, default=500)
    args = parser.parse_args(argv)  # fmt: skip
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="side-by-side-worker-") as name:
        tmp = Path(name)
        python = args.python
        if args.image_venv:
            python = str(image_venv.build(args.image_venv.resolve(), args.python))
        elif not args.no_compile:
            print(f"compiled {image_venv.compile_package(python)}", file=sys.stderr)
        binary = build_go(args.go_worker.resolve(), tmp, "./cmd/worker", "go-worker")
        workers = [
            Worker("ours", [python, "-m", "vsphere_preemption", "worker"], {
                "PREEMPTION_SCOPE": "vcenter", "PREEMPTION_MAX_VMS": str(VMS),
                "PREEMPTION_NOTICE_HIGH": "0", "PREEMPTION_COOLDOWN": "0",
                "MALLOC_ARENA_MAX": "2",  # as the image runs ours (Dockerfile)
            }),
            Worker("Go", [str(binary)]),
            Worker("floor", [python, "-m", "bench.floor_worker"], {"MALLOC_ARENA_MAX": "2"}),
        ]  # fmt: skip
        if args.floor_vcenter:
            workers.append(Worker(FLOOR_VC, [python, "-m", "bench.floor_vcenter_worker"],
                                  {"MALLOC_ARENA_MAX": "2"}))  # fmt: skip
        results = asyncio.run(bench(args, workers, tmp))
    imports = import_rss(python)
    bytecode = "as it was" if args.no_compile and not args.image_venv else "compiled"
    print(f"ours: {python} -m vsphere_preemption worker ({bytecode}); Go: go build of "
          f"{args.go_worker}/cmd/worker; poll every {args.poll_ms:g} ms")  # fmt: skip
    print(report(results, args, imports))
    go = subprocess.run(["go", "version"], capture_output=True, text=True, check=False)
    print(go.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
