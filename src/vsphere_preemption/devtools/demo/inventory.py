"""The demo's inventory and policy: who gets which tag, which VMs are stopped beforehand.

Two clusters; the alarm turns red on the first (`ALARMED`) only. `plan_demo` is pure: it
splits the simulator's VMs so that one run shows every rule of the plan at once.

- on the alarmed cluster, tagged `preemptible` and left running: VMs of priority `low`,
  `normal`, `high` and one without a priority tag (the policy's default), more than
  `maxVMs` of them, so the highest are left over the cap;
- one of them also carries the protection tag (and priority `low`: protection wins);
- tagged VMs powered off and one suspended before the alarm (already free), and a host
  of the alarmed cluster (not a VM);
- on the other cluster, tagged VMs of priority `low`: they would go first, but they are
  out of scope (`scope: entity`) and must stay on;
- the VMs without the tag must stay untouched.

`prepare` applies the plan through the same vSphere adapter as the worker and states
which victims the documented order predicts (`expect`, pure, from the VMs' boot times).

With --loop (preempt until relieved) the policy also has a memory target on the allocation
basis and `loop`: the target is set, from the alarmed cluster's use as prepared, so that the
first round's `maxVMs` victims leave it half a VM short and one more VM, in round 2, reaches
it (`loop_memory_target`); `expect_next_round` predicts round 2's plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from vsphere_preemption.devtools.inventory import DEFAULT_CATEGORY, Inventory
from vsphere_preemption.domain.model import Criticality, EntityUsage, VmRef
from vsphere_preemption.domain.plan import LeaveReason
from vsphere_preemption.domain.policy import (
    DEFAULT_NOTICE,
    LoopPolicy,
    Policy,
    PriorityPolicy,
    Protection,
    ResumePolicy,
    Scope,
    Targets,
    UseBasis,
)
from vsphere_preemption.domain.selection import VmState, moref_key

# vcsim: `-vm N` is per resource pool (a cluster has one); no standalone host, so the
# clusters hold every VM. vcsim names them DC0_C0 and DC0_C1, their hosts DC0_C0_H0...,
# their VMs DC0_C0_RP0_VM0...
VCSIM_ARGS = ("-dc", "1", "-cluster", "2", "-host", "3", "-vm", "14", "-standalone-host", "0")
ALARMED = "DC0_C0"  # the cluster whose alarm turns red
OTHER = "DC0_C1"

PRIORITY_CATEGORY = "preemption-priority"
LEVELS = {"low": 1, "normal": 5, "high": 9}
DEFAULT_LEVEL = 5
PROTECTION_CATEGORY = "preemption-protection"
PROTECTION_TAG = "never"
MAX_VMS = 5  # the policy's maxVMs: fewer than the running candidates

# The alarmed cluster's running tagged VMs, in name order: their priority tag (None: none,
# the default). Lows go first, then the normals and the untagged one, the highs are over
# the cap; name order says nothing.
RUNNING_PRIORITIES: tuple[str | None, ...] = (
    "normal",
    "low",
    "high",
    "normal",
    "low",
    None,
    "high",
)
PROTECTED_PRIORITY = "low"  # the protected VM would otherwise be among the first to go
TAGGED_OFF = 2
TAGGED_SUSPENDED = 1
ELSEWHERE = 3  # tagged running VMs on the other cluster
ELSEWHERE_PRIORITY = "low"

# A red alarm (HIGH) gives the victims a short notice, in an event and in their guestinfo:
# long enough for the demo to read them back while they are still on.
NOTICE_SECONDS = 5.0
# --resume: when the alarm lowers, the stopped VMs come back 2 at a time, 2 s apart.
RESUME = ResumePolicy(enabled=True, batch_size=2, interval_seconds=2.0)

DEMO_POLICY = Policy(
    scope=Scope.ENTITY,
    max_vms=MAX_VMS,
    priority=PriorityPolicy(PRIORITY_CATEGORY, dict(LEVELS), DEFAULT_LEVEL),
    protection=(Protection(PROTECTION_CATEGORY, PROTECTION_TAG),),
    notice={**DEFAULT_NOTICE, Criticality.HIGH: NOTICE_SECONDS},
    guest_notice=True,
)


# --loop: a short settle, so the demo is quick; rounds to spare, so that "target met", not
# maxRounds, is what ends the loop.
LOOP = LoopPolicy(settle_seconds=2.0, max_rounds=3)


def demo_policy(resume: bool = False, loop_target: float | None = None) -> Policy:
    """The worker's policy: DEMO_POLICY, with resume on clear when `resume`, and with
    `loop_target` (a memory percentage), that target on the allocation basis and LOOP."""
    policy = replace(DEMO_POLICY, resume=RESUME) if resume else DEMO_POLICY
    if loop_target is None:
        return policy
    targets = Targets(memory=loop_target, basis=UseBasis.ALLOCATION)
    return replace(policy, targets=targets, loop=LOOP)


def policy_yaml(resume: bool = False, loop_target: float | None = None) -> str:
    """The worker's policy file (PREEMPTION_POLICY_FILE), as a person would write it."""
    import yaml

    wire = demo_policy(resume, loop_target).to_wire()
    return str(yaml.safe_dump(wire, sort_keys=False, default_flow_style=None))


class InventoryTooSmall(ValueError):
    pass


@dataclass(frozen=True)
class DemoPlan:
    running: tuple[VmState, ...]  # alarmed cluster, tagged, left running: the candidates
    protected: VmState  # alarmed cluster, tagged, running, protected
    powered_off: tuple[VmState, ...]  # tagged, powered off before the alarm
    suspended: tuple[VmState, ...]  # tagged, suspended before the alarm
    host: VmRef  # a host of the alarmed cluster, tagged although it is not a VM
    elsewhere: tuple[VmState, ...]  # the other cluster, tagged, running
    untagged: tuple[VmState, ...]
    priorities: Mapping[VmRef, str]  # the priority tag of each VM that has one

    @property
    def tagged(self) -> list[VmRef]:
        """Every object carrying the preemption tag, as the inventory table lists them."""
        vms = (*self.running, self.protected, *self.powered_off, *self.suspended, *self.elsewhere)
        return [s.ref for s in vms] + [self.host]

    @property
    def stay_on(self) -> list[VmRef]:
        """Running, tagged, never a victim: the protected VM and the other cluster's."""
        return [self.protected.ref, *(s.ref for s in self.elsewhere)]

    def level(self, ref: VmRef) -> int:
        tag = self.priorities.get(ref)
        return LEVELS[tag] if tag is not None else DEFAULT_LEVEL


def _natural(state: VmState) -> tuple[tuple[tuple[int, int | str], ...], str]:
    # VM2 before VM10, as a reader counts.
    return (moref_key(state.name), state.ref.value)


def plan_demo(vms: Sequence[VmState]) -> DemoPlan:
    alarmed = sorted((s for s in vms if s.cluster == ALARMED), key=_natural)
    other = sorted((s for s in vms if s.cluster == OTHER), key=_natural)
    running = len(RUNNING_PRIORITIES)
    needed = running + 1 + TAGGED_OFF + TAGGED_SUSPENDED
    if len(alarmed) < needed or len(other) < ELSEWHERE:
        raise InventoryTooSmall(
            f"the demo needs at least {needed} VMs on cluster {ALARMED} and {ELSEWHERE} on "
            f"{OTHER}; found {len(alarmed)} and {len(other)}"
        )
    hosts = sorted({s.host for s in alarmed if s.host}, key=moref_key)
    if not hosts:
        raise InventoryTooSmall(f"the demo needs a host in cluster {ALARMED}; found none")
    first_off = running + 1
    first_suspended = first_off + TAGGED_OFF
    first_untagged = first_suspended + TAGGED_SUSPENDED
    priorities = {s.ref: p for s, p in zip(alarmed, RUNNING_PRIORITIES, strict=False) if p}
    priorities[alarmed[running].ref] = PROTECTED_PRIORITY
    priorities.update((s.ref, ELSEWHERE_PRIORITY) for s in other[:ELSEWHERE])
    return DemoPlan(
        running=tuple(alarmed[:running]),
        protected=alarmed[running],
        powered_off=tuple(alarmed[first_off:first_suspended]),
        suspended=tuple(alarmed[first_suspended:first_untagged]),
        host=VmRef(hosts[0], "HostSystem"),
        elsewhere=tuple(other[:ELSEWHERE]),
        untagged=tuple(alarmed[first_untagged:] + other[ELSEWHERE:]),
        priorities=priorities,
    )


@dataclass(frozen=True)
class Expected:
    """What the worker's plan must say, by the documented rules (README, "The policy")."""

    victims: tuple[VmRef, ...]  # in the order they go
    left_out: Mapping[VmRef, LeaveReason]  # every other tagged object, and why


def _in_plan_order(
    plan: DemoPlan, boot_times: Mapping[VmRef, datetime | None], states: Sequence[VmState]
) -> list[VmState]:
    """Priority ascending, then the most recently powered on first, then name."""

    def order(state: VmState) -> tuple[object, ...]:
        boot = boot_times.get(state.ref)
        return (
            plan.level(state.ref),
            boot is None,
            -(boot.timestamp() if boot else 0.0),
            state.name.casefold(),
            state.name,
            moref_key(state.ref.value),
        )

    return sorted(states, key=order)


def _never_victims(plan: DemoPlan) -> dict[VmRef, LeaveReason]:
    """The tagged objects every round leaves out, whatever it takes: their reasons."""
    left = {plan.protected.ref: LeaveReason.PROTECTED}
    left.update((s.ref, LeaveReason.NOT_RUNNING) for s in plan.powered_off + plan.suspended)
    left.update((s.ref, LeaveReason.OUT_OF_SCOPE) for s in plan.elsewhere)
    left[plan.host] = LeaveReason.NOT_A_VM
    return left


def expect(plan: DemoPlan, boot_times: Mapping[VmRef, datetime | None]) -> Expected:
    """The documented order (`_in_plan_order`), `maxVMs` of them. Every other tagged object
    is left out for the first reason that holds."""
    ordered = _in_plan_order(plan, boot_times, plan.running)
    left: dict[VmRef, LeaveReason] = {s.ref: LeaveReason.OVER_CAP for s in ordered[MAX_VMS:]}
    left.update(_never_victims(plan))
    return Expected(tuple(s.ref for s in ordered[:MAX_VMS]), left)


def expect_next_round(
    plan: DemoPlan, boot_times: Mapping[VmRef, datetime | None], first: Expected
) -> Expected:
    """Round 2 of --loop: the first of the candidates still running goes (the target is set so
    that one is enough); the others are not needed, and round 1's victims are off now."""
    rest = _in_plan_order(plan, boot_times, [s for s in plan.running if s.ref not in first.victims])
    if not rest:
        raise InventoryTooSmall(f"--loop needs more than {MAX_VMS} candidates on {ALARMED}")
    left: dict[VmRef, LeaveReason] = {s.ref: LeaveReason.NOT_NEEDED for s in rest[1:]}
    left.update(_never_victims(plan))
    left.update((ref, LeaveReason.NOT_RUNNING) for ref in first.victims)
    return Expected((rest[0].ref,), left)


def loop_memory_target(
    usage: EntityUsage | None, sizes: Mapping[VmRef, float | None], rounds: Sequence[Expected]
) -> float:
    """A memory target (percent of the cluster's capacity, allocation basis) that the first
    round's victims leave half a VM short of and the second round's reach.

    Half a VM either way, so that neither the percentages' rounding (to 0.01 in what a run
    achieved) nor a VM's figure decides; vcsim's VMs are small (32 MB), so on its clusters
    the target is a low percentage."""
    if usage is None or not usage.capacity.memory_mb or usage.used.memory_mb is None:
        raise InventoryTooSmall(f"--loop needs {ALARMED}'s memory capacity and use from vCenter")
    first, second = rounds[0].victims, rounds[1].victims
    missing = [ref.value for ref in (*first, *second) if not sizes.get(ref)]
    if missing:
        raise InventoryTooSmall(f"--loop needs the memory size of {', '.join(missing)}")
    freed = sum(sizes[ref] or 0.0 for ref in first)
    half = (sizes[second[0]] or 0.0) / 2
    return round((usage.used.memory_mb - freed - half) / usage.capacity.memory_mb * 100, 2)


def resume_order(
    plan: DemoPlan, victims: Sequence[VmRef], names: Mapping[VmRef, str]
) -> list[VmRef]:
    """The order a resume powers the victims on again: highest priority first, then by name."""
    return sorted(victims, key=lambda ref: (-plan.level(ref), names[ref].casefold(), ref.value))


@dataclass(frozen=True)
class PreparedInventory:
    plan: DemoPlan
    category: str
    tag: str
    clusters: Mapping[str, VmRef]  # by name
    before: dict[VmRef, VmState]  # every VM's state once the plan is applied
    boot_times: Mapping[VmRef, datetime | None]  # the tagged VMs'
    expected: Expected  # the first (or only) round's plan
    later: tuple[Expected, ...] = ()  # --loop: the plans of the rounds after the first
    loop_target: float | None = None  # --loop: the policy's memory target (percent)

    @property
    def names(self) -> dict[VmRef, str]:
        return {ref: state.name for ref, state in self.before.items()}

    @property
    def alarmed(self) -> VmRef:
        return self.clusters[ALARMED]


def prepare(
    inventory: Inventory, tag: str, category: str = DEFAULT_CATEGORY, *, loop: bool = False
) -> PreparedInventory:
    """Tag, power off and suspend as `plan_demo` says; read the result back; with `loop`, the
    second round's plan and the memory target that takes two rounds."""
    clusters = inventory.names("ClusterComputeResource")
    if ALARMED not in clusters or OTHER not in clusters:
        raise InventoryTooSmall(
            f"the demo needs clusters {ALARMED} and {OTHER}: {sorted(clusters)}"
        )
    plan = plan_demo(inventory.vms())
    inventory.tag(tag, plan.tagged, category)
    for name in LEVELS:
        refs = [ref for ref, level in plan.priorities.items() if level == name]
        if refs:
            inventory.tag(name, refs, PRIORITY_CATEGORY)
    inventory.tag(PROTECTION_TAG, [plan.protected.ref], PROTECTION_CATEGORY)
    inventory.power_off([s.ref for s in plan.powered_off])
    inventory.suspend([s.ref for s in plan.suspended])
    before = {state.ref: state for state in inventory.vms()}
    # Boot times as the worker reads them, through the same call.
    gathered = inventory.client.gather(tag, None, DEMO_POLICY.tag_categories())
    boot_times = {f.ref: f.boot_time for f in gathered.facts}
    first = expect(plan, boot_times)
    prepared = PreparedInventory(plan, category, tag, clusters, before, boot_times, first)
    if not loop:
        return prepared
    later = (expect_next_round(plan, boot_times, first),)
    # The use and the VMs' sizes as the worker's plan reads them on the allocation basis.
    alarmed = clusters[ALARMED]
    usage = inventory.client.entity_usage(alarmed, basis=UseBasis.ALLOCATION)
    sizes = {f.ref: f.allocation.memory_mb for f in gathered.facts}
    target = loop_memory_target(usage, sizes, (first, *later))
    return replace(prepared, later=later, loop_target=target)
