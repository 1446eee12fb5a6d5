"""Benchmark of VSphereClient.gather(): time and vCenter round trips on a 10,000-VM vcsim.

    .venv/bin/python -m bench.gather_round_trips [--vcsim-url GOVC_URL] [--tagged 1000]
        [--repeats 5] [--vcsim-vms-per-pool 1000]

vcsim with 10 clusters x 3 hosts and 1,000 VMs per cluster (10,000 VMs; building it takes
vcsim many minutes, so it is built once and then loaded from a cache outside the repository,
bench/inventories.py; `--vcsim-url` can name one already running instead). `--tagged` VMs,
spread over the clusters, carry the preemptible tag; two budget-group tags of category
`budget` cover half the inventory's first 2 x `--tagged` VMs each way (so half the group
members are not preemptible).

Measured, for entity = the first cluster and entity = None (the whole vCenter), with a
fresh client each: the first gather (logins and the tag name's lookup included), then
`--repeats` warm ones: wall time and round trips (SOAP + REST, VSphereClient.round_trips).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.inventories import served
from bench.machine import machine, quiet_logs
from bench.worker_preempt import Target, config_for, spread, target_of
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import MoRef
from vsphere_preemption.vsphere.client import VSphereClient

TAG = "bench-gather"
CATEGORY = "budget"


def measure(sim: Target | Vcsim, entity: MoRef | None, repeats: int, tagged: int) -> dict[str, Any]:
    with VSphereClient(config_for(sim)) as client:
        runs: list[tuple[float, int]] = []
        facts = in_scope = 0
        for _ in range(repeats + 1):
            before, started = client.round_trips, time.perf_counter()
            gathered = client.gather(TAG, entity, [CATEGORY])
            runs.append((time.perf_counter() - started, client.round_trips - before))
            facts = len(gathered.facts)
            in_scope = sum(f.in_scope for f in gathered.facts)
            preemptible = sum(f.preemptible for f in gathered.facts)
            if preemptible != tagged:
                raise RuntimeError(f"gathered {preemptible} preemptible VMs, tagged {tagged}")
    warm = runs[1:]
    return {
        "entity": str(entity) if entity is not None else "vcenter",
        "facts": facts,
        "in_scope": in_scope,
        "first_s": round(runs[0][0], 3),
        "first_round_trips": runs[0][1],
        "warm_median_s": round(statistics.median(t for t, _ in warm), 3),
        "warm_max_s": round(max(t for t, _ in warm), 3),
        "warm_round_trips": sorted({n for _, n in warm}),
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    flags = ["-cluster", "10", "-host", "3", "-standalone-host", "0",
             "-vm", str(args.vcsim_vms_per_pool)]  # fmt: skip
    with contextlib.ExitStack() as stack:
        sim: Target | Vcsim
        startup: float | None = None
        if args.vcsim_url:
            sim = target_of(args.vcsim_url)
        else:
            t0 = time.monotonic()
            sim = stack.enter_context(served(flags)).sim  # built once, then loaded
            startup = time.monotonic() - t0
            print(f"vcsim {' '.join(flags)}: ready in {startup:.0f} s", flush=True)
        admin = stack.enter_context(VSphereClient(config_for(sim)))
        inventory = Inventory(admin)
        vms = spread(inventory)
        print(f"inventory: {len(vms)} VMs", flush=True)
        inventory.tag(TAG, vms[: args.tagged], category="preemption")
        group = vms[: 2 * args.tagged]
        inventory.tag("batch", group[::2], category=CATEGORY)
        inventory.tag("web", group[1::2], category=CATEGORY)
        cluster = inventory.objects("ClusterComputeResource")[0]
        results = [measure(sim, entity, args.repeats, args.tagged) for entity in (cluster, None)]
    return {"vcsim_startup_s": startup, "vms": len(vms), "tagged": args.tagged, "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--vcsim-url", help="a running vcsim (its GOVC_URL); never a real vCenter")
    parser.add_argument("--tagged", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vcsim-vms-per-pool", type=int, default=1000)
    args = parser.parse_args(argv)
    quiet_logs()
    result = bench(args)
    result["machine"] = machine()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
