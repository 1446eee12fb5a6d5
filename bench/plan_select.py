"""Time of the victim choice alone, `plan()`, over synthetic inventories: the goal is under
50 ms for 1,000 candidates. Pure CPU, no servers.

    .venv/bin/python bench/plan_select.py [--repeats 21]

The inventory is the worst case the policy allows: priorities, protection, two budgeted
groups and both capacity targets set, with a target that no prefix short of the cap reaches
(so the walk visits every candidate). Prints the median and the fastest of the repeats.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from vsphere_preemption.domain.model import (
    Criticality,
    EntityUsage,
    Resources,
    TagName,
    VmFacts,
    VmRef,
)
from vsphere_preemption.domain.plan import plan
from vsphere_preemption.domain.policy import Policy, policy_from_mapping

POLICY = {
    "maxVMs": 1_000_000,
    "priority": {"category": "prio", "levels": {"low": 1, "mid": 5, "high": 9}},
    "protection": {"category": "guard", "tag": "keep"},
    "groups": {
        "category": "app",
        "budgets": {"web": {"maxUnavailable": "50%"}, "db": {"maxUnavailable": 3}},
        "default": {"maxUnavailable": "90%"},
    },
    "targets": {"cpu": 1, "memory": 1},
}


def inventory(n: int, seed: int = 7) -> list[VmFacts]:
    rnd = random.Random(seed)
    t0 = datetime(2024, 5, 14, tzinfo=UTC)
    vms = []
    for i in range(n):
        tags = {TagName("prio", rnd.choice(["low", "mid", "high", "none"]))}
        tags.add(TagName("app", rnd.choice(["web", "db", "batch", "etl"])))
        if rnd.random() < 0.05:
            tags.add(TagName("guard", "keep"))
        measured = rnd.random() < 0.8
        vms.append(
            VmFacts(
                ref=VmRef(f"vm-{i + 1}"),
                name=f"vm-{rnd.randrange(n):05}",
                power_state="poweredOn" if rnd.random() < 0.9 else "poweredOff",
                in_scope=rnd.random() < 0.9,
                tags=frozenset(tags),
                boot_time=t0 + timedelta(minutes=rnd.randrange(100_000)),
                usage=Resources(rnd.uniform(100, 4000), rnd.uniform(512, 16384))
                if measured
                else Resources(),
                allocation=Resources(rnd.choice([2, 4, 8]) * 2600.0, rnd.choice([4096, 8192])),
                preempted_by_us=rnd.random() < 0.02,
            )
        )
    return vms


def median_ms(candidates: list[VmFacts], policy: Policy, repeats: int) -> tuple[float, float]:
    n = len(candidates)
    usage = EntityUsage(
        VmRef("domain-c7", "ClusterComputeResource"),
        capacity=Resources(n * 5000.0, n * 20000.0),
        used=Resources(n * 4000.0, n * 15000.0),
    )
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        plan(candidates, usage, policy, Criticality.HIGH)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    policy = policy_from_mapping(POLICY)
    print(f"python {sys.version.split()[0]}, {args.repeats} repeats each")
    for n in (1_000, 10_000):
        candidates = inventory(n)
        sample = plan(candidates, None, policy, Criticality.HIGH)
        median, best = median_ms(candidates, policy, args.repeats)
        print(
            f"plan() over {n:,} candidates: median {median:.1f} ms, fastest {best:.1f} ms "
            f"({len(sample.victims)} victims, {len(sample.left_out)} left out)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
