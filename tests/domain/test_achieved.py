from __future__ import annotations

from vsphere_preemption.domain.achieved import planned_vs_achieved
from vsphere_preemption.domain.model import EntityUsage, MoRef, Resources
from vsphere_preemption.domain.plan import ResourceTarget, TargetOutcome
from vsphere_preemption.domain.policy import Resource

CLUSTER = MoRef("domain-c7", "ClusterComputeResource")


def target(cpu_after: float, memory: bool = True) -> TargetOutcome:
    cpu = ResourceTarget(Resource.CPU, 70.0, 10_000.0, 9_000.0, cpu_after, cpu_after <= 7_000)
    mem = ResourceTarget(Resource.MEMORY, 80.0, 1_000.0, 900.0, 700.0, True) if memory else None
    return TargetOutcome(cpu=cpu, memory=mem, reached=cpu_after <= 7_000, note="")


def usage(cpu: float | None, memory: float | None) -> EntityUsage:
    return EntityUsage(CLUSTER, Resources(10_000.0, 1_000.0), Resources(cpu, memory))


def test_achieved_under_the_target_is_reached() -> None:
    result = planned_vs_achieved(target(6_500.0), usage(6_800.0, 750.0))
    assert result["cpu"]["plannedAfterPercent"] == 65.0
    assert result["cpu"]["achievedAfterPercent"] == 68.0
    assert result["memory"]["achievedAfterPercent"] == 75.0
    assert result["reached"] is True


def test_a_plan_that_reached_on_paper_but_not_in_vcenter_says_so() -> None:
    result = planned_vs_achieved(target(6_500.0), usage(8_000.0, 700.0))
    assert result["cpu"]["reached"] is False and result["memory"]["reached"] is True
    assert result["reached"] is False


def test_missing_figures_are_not_judged() -> None:
    result = planned_vs_achieved(target(6_500.0, memory=False), usage(None, None))
    assert result["cpu"]["achievedAfter"] is None and result["cpu"]["reached"] is None
    assert "memory" not in result
    assert result["reached"] is False  # nothing judged: never claimed


def test_no_target_or_no_reading_is_a_note() -> None:
    assert "no capacity target" in planned_vs_achieved(None, usage(1.0, 1.0))["note"]
    assert "could not be read" in planned_vs_achieved(target(1.0), None)["note"]
