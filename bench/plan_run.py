"""Choosing by plan at 10,000 VMs: the read-only plan path and a real run, for N candidates.

    .venv/bin/python -m bench.plan_run [--sizes 10,100,1000] [--repeats 3] [--run-repeats 2]
        [--shape "-cluster 10 -host 4 -standalone-host 0 -vm 1000"] [--vcsim-url GOVC_URL]

On loopback, all real: vcsim serving a 10,000-VM inventory (10 clusters x 4 hosts,
1,000 VMs per cluster), built once and then loaded from a cache outside the repository
(bench/inventories.py says why and where), and, for the real runs, a Temporal dev server
and the worker built from its settings as `preemptctl worker` builds it, in this process
so that its vCenter client's round-trip counter can be read.

For each size N: N powered-on VMs of the first cluster carry tag `bench-plan-N`, and so do
N/2 VMs spread over the other clusters (out of scope: the alarm is on the first cluster).
Every one of those VMs carries a priority tag (low, mid, high in turn) of a category of its
own size, `bench-priority-N`; the policy orders by it, scope `entity`, maxVMs 1,000, no
target. All tags of all sizes exist before anything is measured, so the tag name lookups
cost the same for every N.

(a) The plan path as `preemptctl plan` (cli/plan_cmd.py) takes it, without the process start
    and the rendering (a fresh client, then gather + plan in process, nothing acted on):
    `VSphereClient.gather(tag, cluster, categories)` and `domain.plan.plan()`. Per N, one
    cold call (the client's logins and name lookups included, as a new `preemptctl plan`
    process pays them) and `--repeats` warm ones: wall time, plan() alone, round trips
    (SOAP + REST, `VSphereClient.round_trips`).
(b) A real run: signal-with-start as the Go function signals (fixture 02, HIGH: hard
    power-off, no replyTo) naming the cluster as the alarmed entity, with
    PREEMPTION_SCOPE=entity, PREEMPTION_COOLDOWN=0 and a policy file as in (a); one worker
    per N, `--run-repeats` runs each (the victims are powered on again between runs, not
    timed). Times from just before the signal to the server's completion time of
    PlanPreemption (victims chosen), PowerOffVMs (which returns once vCenter says every
    victim is off; the bench reads the power states back: the N victims off, the N/2
    out-of-scope VMs still on) and AnnotateVms (run done); round trips of the whole run and
    of each vCenter call the activities made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client

from bench.inventories import served
from bench.machine import machine, quiet_logs
from bench.worker_preempt import Target, completed_at, config_for, signal, target_of
from vsphere_preemption import worker
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import (
    AnnotateOutcome,
    Criticality,
    MoRef,
    PowerOffOutcome,
    StopAction,
    VmRef,
)
from vsphere_preemption.domain.plan import plan
from vsphere_preemption.domain.policy import UseBasis, policy_from_mapping
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.settings import WorkerSettings, load
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.gather import Gathered
from vsphere_preemption.vsphere.scope import read_scope
from vsphere_preemption.vsphere.tasks import DEFAULT_FANOUT, Fanout
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

SHAPE = "-cluster 10 -host 4 -standalone-host 0 -vm 1000"
LEVELS = {"low": 1, "mid": 5, "high": 9}
MAX_VMS = 1000
R = TypeVar("R")


@dataclass
class Call:
    name: str
    round_trips: int
    seconds: float


class Counted(VSphereClient):
    """The worker's client, recording the round trips and time of each call it serves."""

    def __init__(self, config: VCenterConfig) -> None:
        super().__init__(config)
        self.calls: list[Call] = []

    def _count(self, name: str, call: Callable[[], R]) -> R:
        before, started = self.round_trips, time.perf_counter()
        try:
            return call()
        finally:
            elapsed = time.perf_counter() - started
            self.calls.append(Call(name, self.round_trips - before, round(elapsed, 3)))

    def gather(
        self,
        tag: str,
        entity: MoRef | None,
        categories: Sequence[str] = (),
        *,
        basis: UseBasis = UseBasis.USAGE,
    ) -> Gathered:
        return self._count(
            "gather", lambda: super(Counted, self).gather(tag, entity, categories, basis=basis)
        )

    def stop(
        self,
        vms: Sequence[VmRef],
        *,
        action: StopAction,
        soft_shutdown_grace: timedelta,
        fanout: Fanout = DEFAULT_FANOUT,
    ) -> PowerOffOutcome:
        # The worker's PowerOffVMs calls `stop` (power_off goes through it too): counted as
        # the table's power-off column.
        return self._count(
            "power_off",
            lambda: super(Counted, self).stop(
                vms, action=action, soft_shutdown_grace=soft_shutdown_grace, fanout=fanout
            ),
        )

    def annotate(
        self,
        vms: Sequence[VmRef],
        key: str,
        value: str,
        *,
        fanout: Fanout = DEFAULT_FANOUT,
    ) -> AnnotateOutcome:
        return self._count(
            "annotate", lambda: super(Counted, self).annotate(vms, key, value, fanout=fanout)
        )


@dataclass(frozen=True)
class Case:
    """One size: its tag, its priority category, the VMs in the cluster and elsewhere."""

    size: int
    tag: str
    category: str
    in_cluster: list[VmRef]
    elsewhere: list[VmRef]

    def policy(self) -> dict[str, Any]:
        return {
            "scope": "entity",
            "maxVMs": MAX_VMS,
            "priority": {"category": self.category, "levels": LEVELS},
        }


class GcClock:
    """Time the garbage collector spends while on (gc.callbacks), and its deepest pass."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.generation = -1
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.generation = max(self.generation, info["generation"])

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self)


@dataclass
class PlanPath:
    size: int
    cold: bool
    wall_s: float
    gather_s: float
    plan_s: float
    plan_gc_s: float  # of plan_s: the garbage collector's passes during plan()
    plan_gc_generation: int  # the oldest generation collected then (-1: none)
    round_trips: int
    gathered: int
    in_scope: int
    victims: int


@dataclass
class RealRun:
    size: int
    repeat: int
    to_planned_s: float
    to_confirmed_off_s: float
    to_run_done_s: float
    round_trips_run: int
    calls: list[Call] = field(default_factory=list)
    victims: int = 0


def prepare(inventory: Inventory, cluster: MoRef, sizes: Sequence[int]) -> list[Case]:
    """Tag every size's VMs (all tags made before anything is measured)."""
    in_scope = read_scope(inventory.client.session, cluster).vms
    states = inventory.vms()  # by name
    mine = [s.ref for s in states if s.ref in in_scope]
    by_cluster: dict[str, list[VmRef]] = {}
    for s in states:
        if s.ref not in in_scope:
            by_cluster.setdefault(str(s.cluster), []).append(s.ref)
    columns = [by_cluster[k] for k in sorted(by_cluster)]
    others = [c[i] for i in range(max(map(len, columns))) for c in columns if i < len(c)]
    cases = []
    for size in sizes:
        if size > len(mine) or size // 2 > len(others):
            raise SystemExit(f"size {size}: the cluster has {len(mine)} VMs, {len(others)} apart")
        case = Case(size, f"bench-plan-{size}", f"bench-priority-{size}",
                    mine[:size], others[: size // 2])  # fmt: skip
        tagged = [*case.in_cluster, *case.elsewhere]
        inventory.tag(case.tag, tagged)
        for i, level in enumerate(LEVELS):
            inventory.tag(level, tagged[i :: len(LEVELS)], category=case.category)
        cases.append(case)
    return cases


def plan_path(sim: Target | Vcsim, cluster: MoRef, case: Case, repeats: int) -> list[PlanPath]:
    policy = policy_from_mapping(case.policy())
    found: list[PlanPath] = []
    with VSphereClient(config_for(sim)) as client:  # as a new `preemptctl plan` process
        for i in range(repeats + 1):
            before, started = client.round_trips, time.perf_counter()
            gathered = client.gather(case.tag, cluster, policy.tag_categories())
            with GcClock() as collector:
                planned_at = time.perf_counter()
                chosen = plan(
                    gathered.facts,
                    gathered.usage,
                    policy,
                    Criticality.HIGH,
                    non_vms=gathered.non_vms,
                )
                done = time.perf_counter()
            run = PlanPath(
                size=case.size,
                cold=i == 0,
                wall_s=round(done - started, 4),
                gather_s=round(planned_at - started, 4),
                plan_s=round(done - planned_at, 4),
                plan_gc_s=round(collector.seconds, 4),
                plan_gc_generation=collector.generation,
                round_trips=client.round_trips - before,
                gathered=len(gathered.facts),
                in_scope=sum(f.in_scope for f in gathered.facts),
                victims=len(chosen.victims),
            )
            expected = (len(case.in_cluster) + len(case.elsewhere), len(case.in_cluster))
            if (run.gathered, run.victims) != expected:
                raise RuntimeError(f"size {case.size}: {run}; expected {expected}")
            print(json.dumps({"plan_path": asdict(run)}), flush=True)
            found.append(run)
    return found


async def real_runs(
    sim: Target | Vcsim,
    admin: VSphereClient,
    inventory: Inventory,
    server: TemporalDevServer,
    cluster: MoRef,
    case: Case,
    repeats: int,
) -> list[RealRun]:
    client = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
    found: list[RealRun] = []
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp)
        (secret / "username").write_text(sim.username)
        (secret / "password").write_text(sim.password)
        policy_file = secret / "policy.json"
        policy_file.write_text(json.dumps(case.policy()))
        task_queue = f"bench-plan-{case.size}-{uuid.uuid4().hex[:6]}"
        settings = load(WorkerSettings, {
            "TEMPORAL_URL": server.address, "TEMPORAL_TASKQUEUE": task_queue,
            "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
            "VCENTER_SECRET_PATH": str(secret), "PREEMPTION_COOLDOWN": "0",
            "PREEMPTION_SCOPE": "entity", "PREEMPTION_POLICY_FILE": str(policy_file),
        })  # fmt: skip
        vcenter = Counted(worker.vcenter_config(settings))
        # The worker logs in at start; done here first, so no login falls inside a run.
        await asyncio.to_thread(vcenter.connect)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(settings, stop, vcenter=vcenter))
        try:
            for repeat in range(repeats):
                states = admin.read_vms(case.in_cluster)  # not timed
                inventory.power_on([r for r, s in states.items() if s.power_state != "poweredOn"])
                vcenter.calls.clear()
                run = await one_run(client, task_queue, vcenter, cluster, case, repeat)
                check(admin, case, run)
                found.append(run)
                print(json.dumps({"real_run": asdict(run)}), flush=True)
        finally:
            stop.set()
            await task
            vcenter.close()
    return found


async def one_run(
    client: Client, task_queue: str, vcenter: Counted, cluster: MoRef, case: Case, repeat: int
) -> RealRun:
    payload = signal(case.tag)
    payload["entity"] = {"Type": cluster.type, "Value": cluster.value}
    before = vcenter.round_trips
    started = time.time()
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        id=f"bench-plan-{case.size}-{repeat}-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue,
        execution_timeout=timedelta(hours=1),
        start_signal=SIGNAL_NAME,
        start_signal_args=[payload],
    )
    deadline = time.monotonic() + 1800
    while True:  # the run is done once its annotations are written
        try:
            annotated = await completed_at(handle, "AnnotateVms")
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
        state = json.loads(await handle.query("current_state", result_type=str))
        if (state.get("plan") or {}).get("error"):
            raise RuntimeError(f"size {case.size}: planning failed: {state['plan']}")
        await asyncio.sleep(0.1)
    round_trips = vcenter.round_trips - before
    planned = await completed_at(handle, "PlanPreemption")
    off = await completed_at(handle, "PowerOffVMs")
    state = json.loads(await handle.query("current_state", result_type=str))
    await handle.terminate("benchmark run done")
    return RealRun(
        size=case.size,
        repeat=repeat,
        to_planned_s=round(planned - started, 3),
        to_confirmed_off_s=round(off - started, 3),
        to_run_done_s=round(annotated - started, 3),
        round_trips_run=round_trips,
        calls=list(vcenter.calls),
        victims=len(state["plan"]["victims"]),
    )


def check(admin: VSphereClient, case: Case, run: RealRun) -> None:
    """The N victims are off and the out-of-scope VMs still on, as vCenter says."""
    states = admin.read_vms([*case.in_cluster, *case.elsewhere])
    off = sum(states[r].power_state == PowerState.POWERED_OFF for r in case.in_cluster)
    on = sum(states[r].power_state == PowerState.POWERED_ON for r in case.elsewhere)
    if (off, on, run.victims) != (case.size, len(case.elsewhere), case.size):
        raise RuntimeError(
            f"size {case.size}: {off} off in the cluster, {on} on elsewhere, "
            f"{run.victims} victims planned"
        )


def bench(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        sim: Target | Vcsim
        if args.vcsim_url:
            sim = target_of(args.vcsim_url)
        else:
            inv = stack.enter_context(served(shlex.split(args.shape), rebuild=args.rebuild))
            sim = inv.sim
            result["inventory"] = {
                "shape": args.shape,
                "cache": str(inv.directory),
                "built_s": inv.built_s,
                "saved_s": inv.saved_s,
                "loaded_s": round(inv.loaded_s, 1),
            }
        admin = stack.enter_context(VSphereClient(config_for(sim), poll_interval=0.2))
        inventory = Inventory(admin, task_timeout=1800)
        cluster = inventory.objects("ClusterComputeResource")[0]
        started = time.monotonic()
        cases = prepare(inventory, cluster, sizes)
        result["vms"] = len(inventory.objects("VirtualMachine"))
        result["cluster"] = str(cluster)
        result["tagging_s"] = round(time.monotonic() - started, 1)
        print(f"{result['vms']} VMs; alarm on {cluster}; tagged in {result['tagging_s']} s")
        paths = [run for case in cases for run in plan_path(sim, cluster, case, args.repeats)]
        result["plan_path"] = [asdict(r) for r in paths]
        runs: list[RealRun] = []
        if args.run_repeats:
            server = stack.enter_context(TemporalDevServer())
            for case in cases:
                runs += asyncio.run(
                    real_runs(sim, admin, inventory, server, cluster, case, args.run_repeats)
                )
        result["real_runs"] = [asdict(r) for r in runs]
    result["table"] = table(sizes, paths, runs)
    return result


def _range(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    low, high = min(values), max(values)
    text = f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"
    return text + unit


def _counts(values: Sequence[int]) -> str:
    return "/".join(str(v) for v in sorted(set(values)))


def table(sizes: Sequence[int], paths: Sequence[PlanPath], runs: Sequence[RealRun]) -> str:
    lines = [
        "(a) plan path (gather + plan, in process; cold = fresh client, logins included)",
        "| N | gathered (in scope) | victims | cold wall | warm wall (median) | plan() alone "
        "(median, max; GC in the max) | round trips cold / warm |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in sizes:
        mine = [p for p in paths if p.size == n]
        cold = next(p for p in mine if p.cold)
        warm = [p for p in mine if not p.cold]
        plans = [p.plan_s * 1000 for p in mine]
        slowest = max(mine, key=lambda p: p.plan_s)
        gc_note = (
            f"; {slowest.plan_gc_s * 1000:.1f} ms GC (gen {slowest.plan_gc_generation})"
            if slowest.plan_gc_generation >= 0
            else "; no GC"
        )
        lines.append(
            f"| {n:,} | {cold.gathered:,} ({cold.in_scope:,}) | {cold.victims:,} "
            f"| {cold.wall_s:.2f} s | {statistics.median(p.wall_s for p in warm):.2f} s "
            f"| {statistics.median(plans):.1f} ms, {max(plans):.1f} ms{gc_note} "
            f"| {cold.round_trips} / {_counts([p.round_trips for p in warm])} |"
        )
    if runs:
        lines += [
            "",
            "(b) real runs through Temporal (signal -> ...; round trips of the whole run)",
            "| N | victims | -> planned | -> confirmed off | -> run done | round trips: run "
            "| gather | power_off | annotate |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n in sizes:
            sized = [r for r in runs if r.size == n]

            def of(name: str, rs: Sequence[RealRun] = sized) -> str:
                return _counts([c.round_trips for r in rs for c in r.calls if c.name == name])

            lines.append(
                f"| {n:,} | {_counts([r.victims for r in sized])} "
                f"| {_range([r.to_planned_s for r in sized], ' s')} "
                f"| {_range([r.to_confirmed_off_s for r in sized], ' s')} "
                f"| {_range([r.to_run_done_s for r in sized], ' s')} "
                f"| {_counts([r.round_trips_run for r in sized])} "
                f"| {of('gather')} | {of('power_off')} | {of('annotate')} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeats", type=int, default=3, help="warm plan-path calls per size")
    parser.add_argument("--run-repeats", type=int, default=2, help="real runs per size (0: none)")
    parser.add_argument("--shape", default=SHAPE, help="vcsim's inventory flags")
    parser.add_argument("--rebuild", action="store_true", help="build the cached inventory anew")
    parser.add_argument(
        "--vcsim-url", help="use this running vcsim (its GOVC_URL); never a real vCenter"
    )
    args = parser.parse_args(argv)
    quiet_logs()
    result = bench(args)
    result["machine"] = machine()
    print(json.dumps({k: v for k, v in result.items() if k != "table"}))
    print(result["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
