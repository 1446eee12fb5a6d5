"""`preemptctl plan`'s table and JSON, from plans made by the real `domain.plan.plan`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from vsphere_preemption.cli.plan_render import PlanReport, plan_json, render_plan
from vsphere_preemption.domain.model import (
    Criticality,
    EntityUsage,
    MoRef,
    Resources,
    TagName,
    VmFacts,
    VmRef,
)
from vsphere_preemption.domain.plan import Plan, plan
from vsphere_preemption.domain.policy import policy_from_mapping
from vsphere_preemption.wire import go_json

CLUSTER = MoRef("domain-c7", "ClusterComputeResource")
POLICY = policy_from_mapping(
    {
        "maxVMs": 5,
        "priority": {"category": "prio", "levels": {"batch": 1, "dev": 2}, "default": 5},
        "protection": {"category": "preemption", "tag": "never"},
        "groups": {"category": "app", "budgets": {"web": {"maxUnavailable": 1}}},
        "targets": {"cpu": 60},
    }
)


def vm(n: int, name: str, *tags: TagName, state: str = "poweredOn", cpu: float = 500) -> VmFacts:
    return VmFacts(
        ref=VmRef(f"vm-{n}"),
        name=name,
        power_state=state,
        in_scope=n < 100,
        tags=frozenset(tags),
        boot_time=datetime(2024, 1, 1, n % 24, tzinfo=UTC),
        usage=Resources(cpu_mhz=cpu, memory_mb=1024),
    )


FACTS = [
    vm(1, "web-1", TagName("app", "web"), TagName("prio", "batch")),
    vm(2, "web-2", TagName("app", "web"), TagName("prio", "batch")),
    vm(3, "dev-1", TagName("prio", "dev")),
    vm(4, "keep-me", TagName("preemption", "never")),
    vm(5, "idle", state="poweredOff"),
    vm(101, "elsewhere"),
    vm(6, "plain"),
]
USAGE = EntityUsage(CLUSTER, capacity=Resources(10000, 65536), used=Resources(7000, 30000))


def report(**changes: object) -> PlanReport:
    made = plan(FACTS, USAGE, POLICY, Criticality.HIGH, non_vms=[MoRef("host-21", "HostSystem")])
    base = {
        "plan": made,
        "policy": POLICY,
        "tag": "preemptible",
        "entity": CLUSTER,
        "alarm": "cpu-above-80",
        "scope_vms": 12,
        "vanished": (VmRef("vm-99"),),
        "notes": ("host-9 reports no CPU figure",),
    }
    return PlanReport(**{**base, **changes})  # type: ignore[arg-type]


def test_the_table_lists_victims_in_order_then_who_stays_and_why() -> None:
    text = render_plan(report())
    lines = text.splitlines()
    assert lines[0] == (
        "Plan for alarm 'cpu-above-80' on ClusterComputeResource:domain-c7 (12 VM(s) under it): "
        "tag 'preemptible', criticality HIGH, scope entity, at most 5 VM(s)"
    )
    assert lines[1] == "Read-only: nothing was powered off or changed."
    start = lines.index(next(line for line in lines if line.startswith("#  VICTIM")))
    header = lines[start].split()
    assert header[:5] == ["#", "VICTIM", "MOREF", "PRIORITY", "CPU"]
    # web-2 booted later than web-1: most recently powered on goes first; the web budget of 1
    # keeps web-1; the cpu target (60 % of 10,000 MHz) is reached after two VMs.
    victims = [line.split()[:4] for line in lines[start + 1 : start + 3]]
    assert victims == [["1", "web-2", "vm-2", "1"], ["2", "dev-1", "vm-3", "2"]]
    assert lines[start + 3] == "2 victim(s), in the order they would go."
    left = {line.split()[0]: line.split()[2] for line in lines if "VirtualMachine:vm-" in line}
    assert left == {
        "web-1": "over_budget",
        "plain": "not_needed",
        "keep-me": "protected",
        "idle": "not_running",
        "elsewhere": "out_of_scope",
    }
    assert any(line.startswith("-") and "HostSystem:host-21" in line for line in lines)
    target = next(line for line in lines if line.startswith("cpu "))
    assert target.split() == ["cpu", "60%", "70.0%", "60.0%", "yes"]
    budget = next(line for line in lines if line.startswith("web "))
    assert budget.split() == ["web", "1", "2", "1", "0", "1"]
    assert "Note: host-9 reports no CPU figure" in lines
    assert "Note: tagged VMs vCenter no longer has: vm-99" in lines


def test_the_whole_vcenter_and_no_victims_say_so() -> None:
    empty = Plan((), (), None, (), (), Criticality.LOW)
    text = render_plan(report(plan=empty, entity=None, alarm=None, vanished=(), notes=()))
    assert text.splitlines()[0].startswith("Plan for the whole vCenter (no --entity): ")
    assert "No victims." in text.splitlines()
    assert "Note:" not in text


def test_json_is_the_workflows_plan_plus_what_it_was_made_for() -> None:
    made = report()
    out = json.loads(go_json(plan_json(made)))
    assert out["plan"] == json.loads(go_json(made.plan.to_wire()))
    assert Plan.from_wire(out["plan"]) == made.plan
    assert out["entity"] == {"Type": "ClusterComputeResource", "Value": "domain-c7"}
    assert (out["alarm"], out["scope"], out["scopeVMs"], out["tag"]) == (
        "cpu-above-80",
        "entity",
        12,
        "preemptible",
    )
    assert out["policy"]["maxVMs"] == 5
    assert out["vanished"] == [{"Type": "VirtualMachine", "Value": "vm-99"}]
    assert out["notes"] == ["host-9 reports no CPU figure"]
    assert [v["name"] for v in out["plan"]["victims"]] == ["web-2", "dev-1"]
