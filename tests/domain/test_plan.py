"""plan(): examples of each rule, then properties over generated inventories (hypothesis)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsphere_preemption.domain.model import (
    Criticality,
    EntityUsage,
    Resources,
    TagName,
    VmFacts,
    VmRef,
)
from vsphere_preemption.domain.plan import Basis, LeaveReason, Plan, plan
from vsphere_preemption.domain.policy import Policy, Scope, policy_from_mapping
from vsphere_preemption.domain.selection import moref_key

CLUSTER = VmRef("domain-c7", "ClusterComputeResource")
NO_FIGURES = Resources()
T0 = datetime(2024, 5, 14, 9, 0, tzinfo=UTC)


def vm(
    n: int,
    name: str | None = None,
    *tags: tuple[str, str],
    power: str = "poweredOn",
    in_scope: bool = True,
    boot: datetime | None = None,
    cpu: float | None = None,
    memory: float | None = None,
    alloc: Resources = NO_FIGURES,
    ours: bool = False,
    preemptible: bool = True,
) -> VmFacts:
    return VmFacts(
        ref=VmRef(f"vm-{n}"),
        name=name or f"vm{n}",
        power_state=power,
        in_scope=in_scope,
        tags=frozenset(TagName(c, t) for c, t in tags),
        boot_time=boot,
        usage=Resources(cpu, memory),
        allocation=alloc,
        preempted_by_us=ours,
        preemptible=preemptible,
    )


def usage(cpu_used: float, cpu_cap: float, mem_used: float = 0, mem_cap: float = 1) -> EntityUsage:
    return EntityUsage(CLUSTER, Resources(cpu_cap, mem_cap), Resources(cpu_used, mem_used))


def names(p: Plan) -> list[str]:
    return [v.name for v in p.victims]


def reasons(p: Plan) -> dict[str | None, LeaveReason]:
    return {o.name: o.reason for o in p.left_out}


HIGH = Criticality.HIGH

# -- Examples ----------------------------------------------------------------------------------


def test_default_policy_takes_running_vms_in_scope_up_to_the_cap() -> None:
    candidates = [vm(i, f"web-{i:02}") for i in range(12)] + [
        vm(20, "off", power="poweredOff"),
        vm(21, "asleep", power="suspended"),
        vm(22, "elsewhere", in_scope=False),
    ]
    p = plan(candidates, None, Policy(), HIGH, non_vms=[VmRef("host-1", "HostSystem")])
    assert names(p) == [f"web-{i:02}" for i in range(10)]
    left = reasons(p)
    assert left["web-10"] is LeaveReason.OVER_CAP and left["web-11"] is LeaveReason.OVER_CAP
    assert left["off"] is LeaveReason.NOT_RUNNING
    assert left["asleep"] is LeaveReason.NOT_RUNNING
    assert left["elsewhere"] is LeaveReason.OUT_OF_SCOPE
    assert left[None] is LeaveReason.NOT_A_VM
    assert p.target is None and p.budgets == () and p.notes == ()


def test_scope_vcenter_takes_vms_outside_the_entity() -> None:
    p = plan([vm(1, "elsewhere", in_scope=False)], None, Policy(scope=Scope.VCENTER), HIGH)
    assert names(p) == ["elsewhere"]


def test_order_is_priority_then_latest_boot_then_name_then_moref() -> None:
    policy = policy_from_mapping(
        {"priority": {"category": "prio", "levels": {"low": 1, "high": 5}}}
    )
    candidates = [
        vm(1, "hi", ("prio", "high")),
        vm(2, "unknown-level", ("prio", "other")),  # default 0
        vm(3, "old", ("prio", "low"), boot=T0),
        vm(4, "new", ("prio", "low"), boot=T0 + timedelta(hours=1)),
        vm(5, "never-booted", ("prio", "low")),
        vm(10, "twin", ("prio", "low"), boot=T0),
        vm(9, "twin", ("prio", "low"), boot=T0),
        vm(6, "Old", ("prio", "low"), boot=T0),
        vm(7, "both", ("prio", "low"), ("prio", "high")),  # the higher level wins
    ]
    p = plan(candidates, None, policy, HIGH)
    assert [(v.name, v.ref.value) for v in p.victims] == [
        ("unknown-level", "vm-2"),
        ("new", "vm-4"),
        ("Old", "vm-6"),
        ("old", "vm-3"),
        ("twin", "vm-9"),
        ("twin", "vm-10"),
        ("never-booted", "vm-5"),
        ("both", "vm-7"),
        ("hi", "vm-1"),
    ]
    assert p.victims[0].priority == 0 and "has no level" in p.victims[0].reason
    assert p.victims[-1].priority == 5


def test_a_naive_boot_time_is_read_as_utc() -> None:
    naive_later = vm(1, "b", boot=(T0 + timedelta(minutes=1)).replace(tzinfo=None))
    aware = vm(2, "a", boot=T0)
    assert names(plan([aware, naive_later], None, Policy(), HIGH)) == ["b", "a"]


def test_protection_wins_over_everything() -> None:
    policy = policy_from_mapping(
        {
            "protection": {"category": "guard", "tag": "keep"},
            "priority": {"category": "prio", "levels": {"low": -10}},
        }
    )
    keep = vm(1, "kept", ("guard", "keep"), ("prio", "low"), in_scope=False, power="poweredOff")
    p = plan([keep, vm(2, "other", ("guard", "other"))], None, policy, HIGH)
    assert names(p) == ["other"]
    assert reasons(p)["kept"] is LeaveReason.PROTECTED


def test_fewest_victims_that_reach_the_target_and_no_more() -> None:
    policy = policy_from_mapping({"targets": {"cpu": 70}})
    candidates = [vm(i, f"v{i}", cpu=1000) for i in range(1, 6)]
    # 9,000 of 10,000 MHz used; 70 % is 7,000: two VMs of 1,000 MHz each are enough.
    p = plan(candidates, usage(9000, 10000), policy, HIGH)
    assert names(p) == ["v1", "v2"]
    assert all(v.basis is Basis.MEASURED for v in p.victims)
    assert [reasons(p)[f"v{i}"] for i in (3, 4, 5)] == [LeaveReason.NOT_NEEDED] * 3
    assert p.target is not None and p.target.reached
    cpu = p.target.cpu
    assert cpu is not None and cpu.before == 9000 and cpu.planned_after == 7000 and cpu.reached
    assert cpu.before_percent == 90 and cpu.planned_after_percent == 70
    assert p.target.memory is None
    assert "target reached" in p.victims[-1].reason


def test_both_targets_must_be_reached() -> None:
    policy = policy_from_mapping({"targets": {"cpu": 50, "memory": 50}})
    candidates = [
        vm(1, "a", cpu=600, memory=0),
        vm(2, "b", cpu=0, memory=600),
        vm(3, "c", cpu=600, memory=600),
    ]
    p = plan(candidates, usage(1000, 1000, 1000, 1000), policy, HIGH)
    assert names(p) == ["a", "b"], "a reaches the cpu target alone; memory still needs b"
    assert reasons(p)["c"] is LeaveReason.NOT_NEEDED
    assert p.target is not None and p.target.reached


def test_already_under_the_target_means_no_victims() -> None:
    policy = policy_from_mapping({"targets": {"cpu": 80}})
    p = plan([vm(1, "a", cpu=100)], usage(500, 1000), policy, HIGH)
    assert p.victims == ()
    assert reasons(p)["a"] is LeaveReason.NOT_NEEDED
    assert p.target is not None and p.target.reached and "already under" in p.target.note


def test_when_all_together_cannot_reach_the_target_all_go_and_the_plan_says_so() -> None:
    policy = policy_from_mapping({"targets": {"cpu": 10}})
    p = plan([vm(1, "a", cpu=100), vm(2, "b", cpu=100)], usage(900, 1000), policy, HIGH)
    assert names(p) == ["a", "b"]
    assert p.target is not None and not p.target.reached
    assert "all 2 eligible VM(s) together cannot reach the target" in p.target.note


def test_the_cap_still_bounds_a_target() -> None:
    policy = policy_from_mapping({"targets": {"cpu": 10}, "maxVMs": 1})
    p = plan([vm(1, "a", cpu=100), vm(2, "b", cpu=100)], usage(900, 1000), policy, HIGH)
    assert names(p) == ["a"]
    assert reasons(p)["b"] is LeaveReason.OVER_CAP
    assert p.target is not None and "not reached within the cap" in p.target.note


def test_allocation_stands_in_for_a_missing_measurement_and_says_so() -> None:
    policy = policy_from_mapping({"targets": {"cpu": 50, "memory": 50}})
    measured_cpu = vm(1, "a", cpu=300, alloc=Resources(4000, 2048))
    nothing = vm(2, "b")
    p = plan([measured_cpu, nothing], usage(900, 1000, 900, 4096), policy, HIGH)
    first = p.victims[0]
    assert first.share == Resources(300, 2048)
    assert first.basis is Basis.MIXED
    assert (
        "cpu 300 MHz (measured)" in first.reason and "memory 2048 MB (allocation)" in first.reason
    )
    assert p.victims[1].basis is Basis.NONE and p.victims[1].share == Resources()


def test_targets_without_figures_fall_back_to_the_cap_and_say_so() -> None:
    policy = policy_from_mapping({"targets": {"cpu": 50, "memory": 50}, "maxVMs": 2})
    no_memory = EntityUsage(CLUSTER, Resources(1000, None), Resources(900, None))
    p = plan([vm(i, cpu=10) for i in range(3)], no_memory, policy, HIGH)
    assert len(p.victims) == 2, "cpu is judged (not reached), memory is not: the cap decides"
    assert any("memory target 50% not judged" in n for n in p.notes)
    assert p.target is not None and p.target.memory is not None
    assert p.target.memory.reached is None

    blind = plan([vm(i, cpu=10) for i in range(3)], None, policy, HIGH)
    assert len(blind.victims) == 2
    assert any("the cap alone decided" in n for n in blind.notes)
    assert blind.target is not None and not blind.target.reached


def test_budgets_count_what_we_already_powered_off() -> None:
    policy = policy_from_mapping(
        {"groups": {"category": "app", "budgets": {"web": {"maxUnavailable": "50%"}}}}
    )
    web = ("app", "web")
    candidates = [
        vm(1, "web-1", web),
        vm(2, "web-2", web),
        vm(3, "web-3", web, preemptible=False),  # counts for size, never a victim
        vm(4, "web-4", web, power="poweredOff", ours=True, preemptible=False),  # already off
        vm(5, "web-5", web, power="poweredOff", ours=False, preemptible=False),  # off, not ours
        vm(6, "web-6", web, in_scope=False),  # out of scope still a member
        vm(7, "other", ("app", "db")),  # no budget for db, no default
    ]
    p = plan(candidates, None, policy, HIGH)
    # 6 members, 50 % allows 3; web-4 is ours and off: 2 more may go.
    assert names(p) == ["other", "web-1", "web-2"]
    assert reasons(p)["web-6"] is LeaveReason.OUT_OF_SCOPE
    assert "web-3" not in reasons(p), "a VM without the request's tag is not a candidate"
    (use,) = p.budgets
    assert (use.group, use.size, use.allowed, use.unavailable_before, use.planned) == (
        "web",
        6,
        3,
        1,
        2,
    )

    tight = policy.with_overrides({"groups": {"budgets": {"web": {"maxUnavailable": 1}}}})
    q = plan(candidates, None, tight, HIGH)
    assert names(q) == ["other"]
    assert reasons(q)["web-1"] is LeaveReason.OVER_BUDGET
    assert "group web: maxUnavailable 1" in next(o.detail for o in q.left_out if o.name == "web-1")


def test_a_group_of_three_with_a_quarter_budget_loses_exactly_one() -> None:
    # As a PodDisruptionBudget counts: 25 % of 3 VMs rounds up to 1 (it rounded down to 0).
    policy = policy_from_mapping(
        {"groups": {"category": "app", "budgets": {"web": {"maxUnavailable": "25%"}}}}
    )
    web = ("app", "web")
    p = plan([vm(i, f"web-{i}", web) for i in (1, 2, 3)], None, policy, HIGH)
    assert len(p.victims) == 1
    assert list(reasons(p).values()) == [LeaveReason.OVER_BUDGET] * 2
    (use,) = p.budgets
    assert (use.size, use.allowed, use.planned) == (3, 1, 1)


def test_a_default_budget_covers_unlisted_groups_and_every_group_of_a_vm_counts() -> None:
    policy = policy_from_mapping(
        {
            "groups": {
                "category": "app",
                "budgets": {"a": {"maxUnavailable": 5}},
                "default": {"maxUnavailable": 0},
            }
        }
    )
    p = plan([vm(1, "x", ("app", "a")), vm(2, "y", ("app", "a"), ("app", "b"))], None, policy, HIGH)
    assert names(p) == ["x"]
    assert reasons(p)["y"] is LeaveReason.OVER_BUDGET


def test_a_budget_skip_does_not_end_the_walk() -> None:
    policy = policy_from_mapping(
        {
            "targets": {"cpu": 50},
            "groups": {"category": "app", "budgets": {"db": {"maxUnavailable": 0}}},
        }
    )
    candidates = [vm(1, "a", ("app", "db"), cpu=500), vm(2, "b", cpu=300), vm(3, "c", cpu=300)]
    p = plan(candidates, usage(1000, 1000), policy, HIGH)
    assert names(p) == ["b", "c"]
    assert reasons(p)["a"] is LeaveReason.OVER_BUDGET


def test_a_vm_listed_twice_is_planned_once() -> None:
    p = plan([vm(1, "a"), vm(1, "a"), vm(2, "b")], None, Policy(), HIGH)
    assert names(p) == ["a", "b"] and p.left_out == ()


def test_criticality_is_recorded_and_does_not_change_the_choice() -> None:
    candidates = [vm(i, cpu=100) for i in range(5)]
    policy = policy_from_mapping({"targets": {"cpu": 70}, "maxVMs": 3})
    plans = [plan(candidates, usage(900, 1000), policy, c) for c in Criticality]
    assert {tuple(names(p)) for p in plans} == {tuple(names(plans[0]))}
    assert [p.criticality for p in plans] == list(Criticality)


def test_the_wire_form_round_trips_through_json() -> None:
    policy = policy_from_mapping(
        {
            "targets": {"cpu": 60, "memory": 90},
            "groups": {"category": "app", "budgets": {"web": {"maxUnavailable": "50%"}}},
            "protection": {"category": "g", "tag": "k"},
        }
    )
    candidates = [
        vm(1, "a", ("app", "web"), cpu=300, alloc=Resources(1, 512)),
        vm(2, "b", ("app", "web"), cpu=300),
        vm(3, "c", ("g", "k")),
        vm(4, "d", power="poweredOff"),
    ]
    p = plan(candidates, usage(900, 1000), policy, HIGH, non_vms=[VmRef("ds-1", "Datastore")])
    wire = json.loads(json.dumps(p.to_wire()))
    assert Plan.from_wire(wire) == p
    assert wire["victims"][0]["ref"] == {"Type": "VirtualMachine", "Value": "vm-1"}
    assert wire["victims"][0]["share"] == {"cpuMhz": 300, "memoryMb": 512}
    assert wire["leftOut"][-1] == {
        "ref": {"Type": "Datastore", "Value": "ds-1"},
        "name": None,
        "reason": "not_a_vm",
        "detail": "not a virtual machine (Datastore)",
    }
    assert set(wire) == {"criticality", "victims", "leftOut", "target", "budgets", "notes"}
    assert set(wire["target"]["cpu"]) == {
        "targetPercent",
        "capacity",
        "before",
        "plannedAfter",
        "reached",
    }
    with pytest.raises(ValueError, match="not a plan"):
        Plan.from_wire({"victims": []})


# -- Properties ---------------------------------------------------------------------------------

PRIO, GUARD, APP = "prio", "guard", "app"
ALL_TAGS = [
    TagName(PRIO, "low"),
    TagName(PRIO, "mid"),
    TagName(PRIO, "high"),
    TagName(PRIO, "unlisted"),
    TagName(GUARD, "keep"),
    TagName(GUARD, "other"),
    TagName(APP, "web"),
    TagName(APP, "db"),
    TagName(APP, "batch"),
]
figure = st.none() | st.integers(0, 4000).map(float)


@st.composite
def facts(draw: st.DrawFn, n: int) -> VmFacts:
    boot = draw(st.none() | st.integers(0, 50).map(lambda m: T0 + timedelta(minutes=m)))
    return VmFacts(
        ref=VmRef(f"vm-{n}"),
        name=draw(st.sampled_from(["a", "A", "b", "c", "web", "Web"])),
        power_state=draw(
            st.sampled_from(["poweredOn", "poweredOn", "poweredOn", "poweredOff", "suspended", "?"])
        ),
        in_scope=draw(st.booleans()),
        tags=frozenset(draw(st.lists(st.sampled_from(ALL_TAGS), max_size=4))),
        boot_time=boot,
        usage=Resources(draw(figure), draw(figure)),
        allocation=Resources(draw(figure), draw(figure)),
        preempted_by_us=draw(st.booleans()),
        preemptible=draw(st.sampled_from([True, True, True, False])),
    )


@st.composite
def inventories(draw: st.DrawFn) -> list[VmFacts]:
    numbers = draw(st.lists(st.integers(1, 200), unique=True, max_size=25))
    return [draw(facts(n)) for n in numbers]


budget = st.integers(0, 3) | st.integers(0, 100).map(lambda p: f"{p}%")


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    raw: dict[str, Any] = {
        "scope": draw(st.sampled_from(["entity", "vcenter"])),
        "maxVMs": draw(st.integers(1, 12)),
    }
    if draw(st.booleans()):
        raw["priority"] = {
            "category": PRIO,
            "levels": {"low": 1, "mid": 2, "high": 3},
            "default": draw(st.integers(0, 4)),
        }
    if draw(st.booleans()):
        raw["protection"] = {"category": GUARD, "tag": "keep"}
    if draw(st.booleans()):
        groups: dict[str, Any] = {
            "category": APP,
            "budgets": {
                g: {"maxUnavailable": draw(budget)}
                for g in draw(st.lists(st.sampled_from(["web", "db"]), unique=True))
            },
        }
        if draw(st.booleans()):
            groups["default"] = {"maxUnavailable": draw(budget)}
        raw["groups"] = groups
    raw["targets"] = {
        r: draw(st.integers(1, 100))
        for r in draw(st.lists(st.sampled_from(["cpu", "memory"]), unique=True))
    }
    return policy_from_mapping(raw)


usages = st.none() | st.builds(
    lambda cc, cu, mc, mu: EntityUsage(CLUSTER, Resources(cc, mc), Resources(cu, mu)),
    figure,
    figure,
    figure,
    figure,
)


def _priority(f: VmFacts, policy: Policy) -> int:
    p = policy.priority
    levels = [p.levels[t.name] for t in f.tags if t.category == p.category and t.name in p.levels]
    return max(levels) if levels else p.default


def _order(f: VmFacts, policy: Policy) -> tuple[Any, ...]:
    boot = f.boot_time
    return (
        _priority(f, policy),
        boot is None,
        -(boot.timestamp() if boot else 0.0),
        f.name.casefold(),
        f.name,
        moref_key(f.ref.value),
    )


def _share(f: VmFacts, resource: str) -> float:
    measured = f.usage.cpu_mhz if resource == "cpu" else f.usage.memory_mb
    allocated = f.allocation.cpu_mhz if resource == "cpu" else f.allocation.memory_mb
    return measured if measured is not None else allocated if allocated is not None else 0.0


def _judged(u: EntityUsage | None, policy: Policy) -> dict[str, tuple[float, float]]:
    """Targeted resources with figures: (use, limit)."""
    out = {}
    for r, pct in (("cpu", policy.targets.cpu), ("memory", policy.targets.memory)):
        if pct is None or u is None:
            continue
        cap = u.capacity.cpu_mhz if r == "cpu" else u.capacity.memory_mb
        used = u.used.cpu_mhz if r == "cpu" else u.used.memory_mb
        if cap is not None and cap > 0 and used is not None:
            out[r] = (used, pct / 100 * cap)
    return out


def _reaches(victims: Sequence[VmFacts], judged: dict[str, tuple[float, float]]) -> bool:
    return bool(judged) and all(
        used - sum(_share(v, r) for v in victims) <= limit for r, (used, limit) in judged.items()
    )


def _protected(f: VmFacts, policy: Policy) -> bool:
    return any(TagName(p.category, p.tag) in f.tags for p in policy.protection)


@settings(max_examples=400, deadline=None)
@given(inventories(), usages, policies(), st.sampled_from(list(Criticality)), st.randoms())
def test_plan_properties(
    candidates: list[VmFacts],
    u: EntityUsage | None,
    policy: Policy,
    criticality: Criticality,
    rnd: random.Random,
) -> None:
    p = plan(candidates, u, policy, criticality)
    by_ref = {f.ref: f for f in candidates}
    victims = [by_ref[v.ref] for v in p.victims]

    # Never a protected VM, never outside scope, never one that is not running or not ours.
    for f in victims:
        assert not _protected(f, policy)
        assert f.in_scope or policy.scope is Scope.VCENTER
        assert f.power_state == "poweredOn"
        assert f.preemptible

    # Every preemptible candidate is accounted for exactly once, others never.
    accounted = [v.ref for v in p.victims] + [o.ref for o in p.left_out]
    assert sorted(accounted) == sorted(f.ref for f in candidates if f.preemptible)
    for o in p.left_out:
        if o.reason is LeaveReason.PROTECTED:
            assert _protected(by_ref[o.ref], policy)

    # The cap.
    assert len(victims) <= policy.max_vms

    # Never over a budget, counting the group's VMs we already powered off.
    if policy.groups is not None:
        for group in {t.name for f in candidates for t in f.tags if t.category == APP}:
            members = [f for f in candidates if TagName(APP, group) in f.tags]
            limit = policy.groups.budget(group)
            if limit is None:
                continue
            off = sum(1 for f in members if f.preempted_by_us and f.power_state != "poweredOn")
            taken = sum(1 for f in victims if TagName(APP, group) in f.tags)
            assert taken == 0 or off + taken <= limit.allowed(len(members))

    # Order respected: victims follow the order, and an eligible VM ahead of the last
    # victim was skipped only for a budget.
    keys = [_order(f, policy) for f in victims]
    assert keys == sorted(keys)
    if victims:
        last = keys[-1]
        for o in p.left_out:
            f = by_ref[o.ref]
            if o.reason in {LeaveReason.NOT_NEEDED, LeaveReason.OVER_CAP}:
                assert _order(f, policy) > last
            if o.reason is LeaveReason.OVER_BUDGET:
                assert policy.groups is not None

    # Minimal: no shorter prefix of the victims reaches the target; the plan says whether
    # it is reached, truthfully.
    judged = _judged(u, policy)
    reached = _reaches(victims, judged)
    if p.target is not None:
        assert p.target.reached == reached
    if judged:
        assert not any(_reaches(victims[:k], judged) for k in range(len(victims)))
        not_needed = any(o.reason is LeaveReason.NOT_NEEDED for o in p.left_out)
        assert not_needed <= reached
        # Short of the target with no cap or budget in the way: every eligible VM went.
        stopped = {LeaveReason.OVER_CAP, LeaveReason.OVER_BUDGET}
        if not reached and not any(o.reason in stopped for o in p.left_out):
            assert not not_needed
    else:
        assert not any(o.reason is LeaveReason.NOT_NEEDED for o in p.left_out)

    # The same facts in another order give the same plan.
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert plan(shuffled, u, policy, criticality) == p
    assert Plan.from_wire(json.loads(json.dumps(p.to_wire()))) == p
