"""Which VMs to preempt for one alarm, in what order, and why each other candidate stays.

`plan(candidates, usage, policy, criticality)` is the whole choice, a pure function: the worker
gathers the facts (the vSphere adapter's batched reads) and acts on the answer; nothing else
decides. Same inputs, same plan, whatever order the facts arrive in.

The walk. Candidates that can never go are set aside first, each with its first reason in this
order: protected (the protection tag wins over everything), out of scope, not running. The rest
are ordered: priority ascending (lowest goes first), then most recently powered on first (least
work lost; no boot time counts as oldest), then name (casefold, then exact), then moref in
natural order. Walking that order, a VM is

- not needed once every judged target is reached (the plan stops at the first prefix that
  reaches it: no shorter prefix of the victims would do);
- over the cap once `maxVMs` victims are chosen;
- over a budget if taking it would put one of its groups over `maxUnavailable`, counting the
  group's VMs this system already powered off and that are still off;
- otherwise a victim.

With no target (or no figures to judge one), the cap alone bounds the walk, as before. If every
eligible VM together cannot reach the target, all of them go and the outcome says so.

A VM's share is what powering it off frees: its measured use where vCenter reports one, else its
allocation (configured vCPUs x core MHz, memory size); the victim says which (`basis`). With
`targets.basis: allocation` the entity's use is its powered-on VMs' allocations, and a victim's
share its allocation first.

Criticality is an input so that a policy may tie choice to it later; today it changes nothing
here (it decides soft or hard power-off, which is the worker's) and is recorded on the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from vsphere_preemption.domain.model import (
    Criticality,
    EntityUsage,
    MoRef,
    Resources,
    VmFacts,
    VmRef,
)
from vsphere_preemption.domain.policy import MaxUnavailable, Policy, Resource, Scope, UseBasis
from vsphere_preemption.domain.selection import (
    VIRTUAL_MACHINE,
    PowerState,
    moref_key,
    why_not_running,
)
from vsphere_preemption.domain.selection import VmState as _VmState
from vsphere_preemption.domain.shapes import (
    PlanWire,
    ResourceTargetWire,
    TargetWire,
    moref_from_wire,
    moref_to_wire,
    parsed,
)


class LeaveReason(StrEnum):
    PROTECTED = "protected"
    OUT_OF_SCOPE = "out_of_scope"
    OVER_BUDGET = "over_budget"
    NOT_NEEDED = "not_needed"
    NOT_RUNNING = "not_running"  # already off, suspended, or a state we do not know
    NOT_A_VM = "not_a_vm"
    OVER_CAP = "over_cap"


class Basis(StrEnum):
    """Where a victim's share came from."""

    MEASURED = "measured"  # vCenter's quick stats
    ALLOCATION = "allocation"  # configured vCPUs and memory: no measured figure
    MIXED = "mixed"  # one resource measured, the other by allocation
    NONE = "none"  # no figure at all: counted as freeing nothing


@dataclass(frozen=True)
class Victim:
    ref: VmRef
    name: str
    priority: int
    reason: str
    share: Resources  # what powering it off frees
    basis: Basis


@dataclass(frozen=True)
class LeftOut:
    ref: MoRef
    name: str | None  # None for an object that is not a VM (we have no name for it)
    reason: LeaveReason
    detail: str


@dataclass(frozen=True)
class ResourceTarget:
    """One targeted resource: the entity's use before, and after the planned victims."""

    resource: Resource
    target_percent: float
    capacity: float | None  # MHz or MB; None: vCenter gave no figure
    before: float | None
    planned_after: float | None
    reached: bool | None  # None: not judged, for want of figures

    @property
    def before_percent(self) -> float | None:
        return self._percent(self.before)

    @property
    def planned_after_percent(self) -> float | None:
        return self._percent(self.planned_after)

    def _percent(self, used: float | None) -> float | None:
        if used is None or not self.capacity:
            return None
        return used / self.capacity * 100


@dataclass(frozen=True)
class TargetOutcome:
    cpu: ResourceTarget | None
    memory: ResourceTarget | None
    reached: bool  # every judged resource at or under its target (False if none judged)
    note: str


@dataclass(frozen=True)
class BudgetUse:
    """A group with a budget, as the plan leaves it."""

    group: str
    max_unavailable: MaxUnavailable
    size: int  # members seen, preemptible or not, in scope or not
    allowed: int
    unavailable_before: int  # powered off by us and still off
    planned: int  # victims of this plan in the group


@dataclass(frozen=True)
class Plan:
    victims: tuple[Victim, ...]
    left_out: tuple[LeftOut, ...]
    target: TargetOutcome | None  # None: the policy sets no target
    budgets: tuple[BudgetUse, ...]
    notes: tuple[str, ...]
    criticality: Criticality

    @property
    def refs(self) -> list[VmRef]:
        return [v.ref for v in self.victims]

    def to_wire(self) -> PlanWire:
        """JSON-able, camelCase; refs as the Go worker marshals them (`{"Type","Value"}`)."""
        return {
            "criticality": self.criticality.value,
            "victims": [
                {
                    "ref": moref_to_wire(v.ref),
                    "name": v.name,
                    "priority": v.priority,
                    "reason": v.reason,
                    "share": {"cpuMhz": v.share.cpu_mhz, "memoryMb": v.share.memory_mb},
                    "basis": v.basis.value,
                }
                for v in self.victims
            ],
            "leftOut": [
                {
                    "ref": moref_to_wire(o.ref),
                    "name": o.name,
                    "reason": o.reason.value,
                    "detail": o.detail,
                }
                for o in self.left_out
            ],
            "target": None if self.target is None else _target_to_wire(self.target),
            "budgets": [
                {
                    "group": b.group,
                    "maxUnavailable": b.max_unavailable.to_wire(),
                    "size": b.size,
                    "allowed": b.allowed,
                    "unavailableBefore": b.unavailable_before,
                    "planned": b.planned,
                }
                for b in self.budgets
            ],
            "notes": list(self.notes),
        }

    @classmethod
    def from_wire(cls, obj: object) -> Plan:
        """Read what `to_wire` wrote; ValueError for anything else (a reader may hand in JSON
        it has not checked: its shape is checked first)."""
        wire = parsed(obj, PlanWire)
        if wire is None:
            raise ValueError(f"not a plan: {obj!r:.200}")
        return _plan_from_wire(wire)


# -- The choice -----------------------------------------------------------------------------


def _eligible(
    facts: Iterable[VmFacts], policy: Policy, left: list[tuple[Any, LeftOut]]
) -> list[tuple[Any, VmFacts, int, str]]:
    """The preemptible VMs that may go, in the order they go (each with its sort key, level
    and where the level came from); the others added to `left` with the reason."""
    eligible: list[tuple[Any, VmFacts, int, str]] = []
    for vm in facts:
        if not vm.preemptible:
            continue
        level, level_source = _priority(vm, policy)
        key = _order_key(level, vm)
        if vm.ref.type != VIRTUAL_MACHINE:
            left.append(
                (key, _left(vm, LeaveReason.NOT_A_VM, f"not a virtual machine ({vm.ref.type})"))
            )
            continue
        why = _never(vm, policy)
        if why is not None:
            left.append((key, _left(vm, *why)))
            continue
        eligible.append((key, vm, level, level_source))
    eligible.sort(key=lambda e: e[0])
    return eligible


def plan(
    candidates: Sequence[VmFacts],
    usage: EntityUsage | None,
    policy: Policy,
    criticality: Criticality,
    *,
    non_vms: Sequence[MoRef] = (),
) -> Plan:
    """Choose the victims among `candidates` (see the module's docstring for the rules).

    `candidates`: every VM carrying the request's tag, plus the members of budget groups
    (`preemptible=False`: they count for their group, never go, and are not reported).
    `usage`: the alarmed entity's capacity and use, None if unknown. `non_vms`: tagged objects
    that are not VMs, reported as such.
    """
    unique: dict[VmRef, VmFacts] = {}
    for vm in candidates:
        unique.setdefault(vm.ref, vm)  # the first facts of a VM listed twice win
    facts = unique.values()
    notes: list[str] = []
    left: list[tuple[Any, LeftOut]] = []
    groups = _Groups(facts, policy)
    eligible = _eligible(facts, policy, left)

    judge = _Judge(usage, policy, notes)
    victims: list[Victim] = []
    for key, vm, level, level_source in eligible:
        if judge.reached:
            left.append((key, _left(vm, LeaveReason.NOT_NEEDED, judge.reached_detail())))
        elif len(victims) >= policy.max_vms:
            cap = f"over the cap of {policy.max_vms} VMs per run"
            left.append((key, _left(vm, LeaveReason.OVER_CAP, cap)))
        elif (over := groups.over_budget(vm)) is not None:
            left.append((key, _left(vm, LeaveReason.OVER_BUDGET, over)))
        else:
            share, basis, share_text = _share(vm, policy.targets.basis)
            groups.take(vm)
            progress = judge.take(share)
            reason = f"priority {level} ({level_source}), {_booted(vm)}; frees {share_text}"
            victims.append(Victim(vm.ref, vm.name, level, f"{reason}; {progress}", share, basis))

    for ref in dict.fromkeys(non_vms):
        detail = f"not a virtual machine ({ref.type})"
        left.append(
            ((1, ref.type, moref_key(ref.value)), LeftOut(ref, None, LeaveReason.NOT_A_VM, detail))
        )
    left.sort(key=lambda item: item[0])
    target = judge.outcome(victims, len(eligible))
    return Plan(
        victims=tuple(victims),
        left_out=tuple(o for _, o in left),
        target=target,
        budgets=groups.uses(),
        notes=tuple(notes),
        criticality=criticality,
    )


def _left(vm: VmFacts, reason: LeaveReason, detail: str) -> LeftOut:
    return LeftOut(vm.ref, vm.name, reason, detail)


def _never(vm: VmFacts, policy: Policy) -> tuple[LeaveReason, str] | None:
    """Why this VM can never be a victim in this plan, the first reason that holds."""
    for protection in policy.protection:
        if any(t.category == protection.category and t.name == protection.tag for t in vm.tags):
            return (
                LeaveReason.PROTECTED,
                f"carries the protection tag {protection.category}/{protection.tag}",
            )
    if policy.scope is Scope.ENTITY and not vm.in_scope:
        return LeaveReason.OUT_OF_SCOPE, "not under the alarmed entity (scope: entity)"
    state = _VmState(vm.ref, vm.name, vm.power_state)
    why = why_not_running(state)
    return None if why is None else (LeaveReason.NOT_RUNNING, why)


def _priority(vm: VmFacts, policy: Policy) -> tuple[int, str]:
    """The VM's level and where it came from; of several tags with levels, the highest wins
    (an ambiguous VM is kept longer, not sacrificed sooner)."""
    p = policy.priority
    if p.category is None:
        return p.default, "default: no priority category"
    tags = sorted(t.name for t in vm.tags if t.category == p.category)
    levelled = [(p.levels[t], t) for t in tags if t in p.levels]
    if levelled:
        level, tag = max(levelled)
        return level, f"tag {p.category}/{tag}"
    if tags:
        return p.default, f"default: tag {p.category}/{tags[0]} has no level"
    return p.default, f"default: no {p.category} tag"


def _instant(when: datetime | None) -> float | None:
    if when is None:
        return None
    # A naive time is read as UTC: the local zone of whoever runs the plan must not matter.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _order_key(level: int, vm: VmFacts) -> tuple[Any, ...]:
    boot = _instant(vm.boot_time)
    return (
        0,  # VMs before objects that are not VMs in `left_out`
        level,
        boot is None,  # no boot time: oldest, last within the priority
        -(boot or 0.0),
        vm.name.casefold(),
        vm.name,
        moref_key(vm.ref.value),
    )


def _booted(vm: VmFacts) -> str:
    return "boot time unknown" if vm.boot_time is None else f"powered on {vm.boot_time.isoformat()}"


def _pick(measured: float | None, allocated: float | None) -> tuple[float | None, Basis | None]:
    if measured is not None:
        return measured, Basis.MEASURED
    if allocated is not None:
        return allocated, Basis.ALLOCATION
    return None, None


def _pick_allocated(
    allocated: float | None, measured: float | None
) -> tuple[float | None, Basis | None]:
    if allocated is not None:
        return allocated, Basis.ALLOCATION
    return _pick(measured, None)


def _share(vm: VmFacts, use: UseBasis = UseBasis.USAGE) -> tuple[Resources, Basis, str]:
    if use is UseBasis.ALLOCATION:
        # The entity's use is then its VMs' allocations: a victim frees its own, measured
        # only where vCenter gives no allocation.
        cpu, cpu_basis = _pick_allocated(vm.allocation.cpu_mhz, vm.usage.cpu_mhz)
        memory, memory_basis = _pick_allocated(vm.allocation.memory_mb, vm.usage.memory_mb)
    else:
        cpu, cpu_basis = _pick(vm.usage.cpu_mhz, vm.allocation.cpu_mhz)
        memory, memory_basis = _pick(vm.usage.memory_mb, vm.allocation.memory_mb)
    bases = {b for b in (cpu_basis, memory_basis) if b is not None}
    basis = Basis.NONE if not bases else bases.pop() if len(bases) == 1 else Basis.MIXED

    def part(value: float | None, unit: str, how: Basis | None, what: str) -> str:
        if value is None:
            return f"{what} unknown (no figure, counted as none)"
        return f"{what} {value:g} {unit} ({how})"

    text = f"{part(cpu, 'MHz', cpu_basis, 'cpu')}, {part(memory, 'MB', memory_basis, 'memory')}"
    return Resources(cpu_mhz=cpu, memory_mb=memory), basis, text


def _of(resources: Resources, resource: Resource) -> float | None:
    return resources.cpu_mhz if resource is Resource.CPU else resources.memory_mb


class _Judge:
    """Tracks the entity's use as victims are taken; knows when the target is reached."""

    def __init__(self, usage: EntityUsage | None, policy: Policy, notes: list[str]) -> None:
        self.targets = policy.targets
        self.capacity: dict[Resource, float] = {}
        self.used: dict[Resource, float] = {}
        self.before: dict[Resource, tuple[float, float | None]] = {}  # target %, use
        self.limit: dict[Resource, float] = {}
        for resource in Resource:
            percent = self.targets.percent(resource)
            if percent is None:
                continue
            capacity = None if usage is None else _of(usage.capacity, resource)
            used = None if usage is None else _of(usage.used, resource)
            self.before[resource] = (percent, used)
            if capacity is None or capacity <= 0 or used is None:
                notes.append(
                    f"{resource} target {percent:g}% not judged: the entity reports no "
                    f"{resource} {'capacity' if used is not None else 'use'}"
                )
                continue
            self.capacity[resource] = capacity
            self.used[resource] = used
            self.limit[resource] = percent / 100 * capacity
        if self.targets.any and not self.limit:
            notes.append("no target could be judged: the cap alone decided")
        self.reached = bool(self.limit) and self._under()

    def _under(self) -> bool:
        return all(self.used[r] <= self.limit[r] for r in self.limit)

    def _state(self) -> str:
        return ", ".join(
            f"{r} at {self.used[r] / self.capacity[r] * 100:.1f}% "
            f"(target {self.targets.percent(r):g}%)"
            for r in self.limit
        )

    def reached_detail(self) -> str:
        return f"the target is reached without it: {self._state()}"

    def take(self, share: Resources) -> str:
        if not self.limit:
            return "within the cap"
        for r in self.limit:
            self.used[r] -= _of(share, r) or 0.0
        self.reached = self._under()
        return f"then {self._state()}" + (": target reached" if self.reached else "")

    def outcome(self, victims: Sequence[Victim], eligible: int) -> TargetOutcome | None:
        if not self.targets.any:
            return None
        per: dict[Resource, ResourceTarget] = {}
        for r, (percent, before) in self.before.items():
            judged = r in self.limit
            per[r] = ResourceTarget(
                resource=r,
                target_percent=percent,
                capacity=self.capacity.get(r),
                before=before,
                planned_after=self.used[r] if judged else None,
                reached=self.used[r] <= self.limit[r] if judged else None,
            )
        if not self.limit:
            note = "not judged: no usage figures for any targeted resource; the cap alone decided"
        elif self.reached and not victims:
            note = f"already under the target: {self._state()}"
        elif self.reached:
            note = f"{len(victims)} VM(s) bring the entity under the target: {self._state()}"
        elif len(victims) == eligible:
            note = (
                f"all {eligible} eligible VM(s) together cannot reach the target; all of them "
                f"are taken: {self._state()}"
            )
        else:
            note = (
                f"the target is not reached within the cap and budgets ({len(victims)} of "
                f"{eligible} eligible VM(s) taken): {self._state()}"
            )
        return TargetOutcome(per.get(Resource.CPU), per.get(Resource.MEMORY), self.reached, note)


class _Groups:
    """Budget bookkeeping: each budgeted group's size, who is already off, who is planned."""

    def __init__(self, facts: Iterable[VmFacts], policy: Policy) -> None:
        self.policy = policy.groups
        self.members: dict[str, int] = {}
        self.off: dict[str, int] = {}
        self.planned: dict[str, int] = {}
        self.groups_of: dict[VmRef, list[str]] = {}
        if self.policy is None:
            return
        category = self.policy.category
        for vm in facts:
            groups = sorted({t.name for t in vm.tags if t.category == category})
            self.groups_of[vm.ref] = groups
            for group in groups:
                self.members[group] = self.members.get(group, 0) + 1
                if vm.preempted_by_us and vm.power_state != PowerState.POWERED_ON:
                    self.off[group] = self.off.get(group, 0) + 1

    def of(self, vm: VmFacts) -> list[str]:
        return self.groups_of.get(vm.ref, [])

    def _allowed(self, group: str) -> tuple[MaxUnavailable, int] | None:
        budget = None if self.policy is None else self.policy.budget(group)
        return None if budget is None else (budget, budget.allowed(self.members[group]))

    def over_budget(self, vm: VmFacts) -> str | None:
        for group in self.of(vm):
            allowed = self._allowed(group)
            if allowed is None:
                continue
            budget, limit = allowed
            down = self.off.get(group, 0) + self.planned.get(group, 0)
            if down + 1 > limit:
                return (
                    f"group {group}: maxUnavailable {budget} of {self.members[group]} VM(s) "
                    f"allows {limit}, {self.off.get(group, 0)} already off by us and "
                    f"{self.planned.get(group, 0)} planned"
                )
        return None

    def take(self, vm: VmFacts) -> None:
        for group in self.of(vm):
            self.planned[group] = self.planned.get(group, 0) + 1

    def uses(self) -> tuple[BudgetUse, ...]:
        out = []
        for group in sorted(self.members):
            allowed = self._allowed(group)
            if allowed is not None:
                budget, limit = allowed
                out.append(
                    BudgetUse(
                        group=group,
                        max_unavailable=budget,
                        size=self.members[group],
                        allowed=limit,
                        unavailable_before=self.off.get(group, 0),
                        planned=self.planned.get(group, 0),
                    )
                )
        return tuple(out)


# -- Wire -----------------------------------------------------------------------------------


def _resource_target_to_wire(t: ResourceTarget | None) -> ResourceTargetWire | None:
    if t is None:
        return None
    return {
        "targetPercent": t.target_percent,
        "capacity": t.capacity,
        "before": t.before,
        "plannedAfter": t.planned_after,
        "reached": t.reached,
    }


def _target_to_wire(t: TargetOutcome) -> TargetWire:
    return {
        "reached": t.reached,
        "note": t.note,
        "cpu": _resource_target_to_wire(t.cpu),
        "memory": _resource_target_to_wire(t.memory),
    }


def _resource_target_from_wire(
    resource: Resource, obj: ResourceTargetWire | None
) -> ResourceTarget | None:
    if obj is None:
        return None
    return ResourceTarget(
        resource=resource,
        target_percent=float(obj["targetPercent"]),
        capacity=obj["capacity"],
        before=obj["before"],
        planned_after=obj["plannedAfter"],
        reached=obj["reached"],
    )


def _max_unavailable_from_wire(value: int | str) -> MaxUnavailable:
    if isinstance(value, str):
        return MaxUnavailable(int(value.removesuffix("%")), percent=True)
    return MaxUnavailable(int(value))


def _plan_from_wire(obj: PlanWire) -> Plan:
    target = obj["target"]
    return Plan(
        victims=tuple(
            Victim(
                ref=moref_from_wire(v["ref"]),
                name=v["name"],
                priority=int(v["priority"]),
                reason=v["reason"],
                share=Resources(cpu_mhz=v["share"]["cpuMhz"], memory_mb=v["share"]["memoryMb"]),
                basis=Basis(v["basis"]),
            )
            for v in obj["victims"]
        ),
        left_out=tuple(
            LeftOut(moref_from_wire(o["ref"]), o["name"], LeaveReason(o["reason"]), o["detail"])
            for o in obj["leftOut"]
        ),
        target=None
        if target is None
        else TargetOutcome(
            cpu=_resource_target_from_wire(Resource.CPU, target["cpu"]),
            memory=_resource_target_from_wire(Resource.MEMORY, target["memory"]),
            reached=bool(target["reached"]),
            note=target["note"],
        ),
        budgets=tuple(
            BudgetUse(
                group=b["group"],
                max_unavailable=_max_unavailable_from_wire(b["maxUnavailable"]),
                size=b["size"],
                allowed=b["allowed"],
                unavailable_before=b["unavailableBefore"],
                planned=b["planned"],
            )
            for b in obj["budgets"]
        ),
        notes=tuple(obj["notes"]),
        criticality=Criticality(obj["criticality"]),
    )
