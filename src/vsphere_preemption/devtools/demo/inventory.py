"""The demo's inventory: which objects get the tag, which VMs are stopped beforehand.

`plan_demo` is pure: it splits the simulator's VMs so that the run shows every rule of
victim selection at once. Tagged: VMs left running (more than the per-run cap, so
some are left over), VMs powered off and one suspended before the alarm (already
free), and a host (not a VM). The untagged VMs must stay untouched. `prepare`
applies the plan through the same vSphere adapter as the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vsphere_preemption.devtools.inventory import DEFAULT_CATEGORY, Inventory
from vsphere_preemption.domain.model import Selection, VmRef
from vsphere_preemption.domain.selection import VmState, moref_key, select_preemptible

# vcsim: `-vm N` is per resource pool (a cluster has one); no standalone host, so
# the cluster holds every VM.
VCSIM_ARGS = ("-dc", "1", "-cluster", "1", "-host", "3", "-vm", "20", "-standalone-host", "0")
TAGGED_RUNNING = 7
TAGGED_OFF = 2
TAGGED_SUSPENDED = 1
MAX_VMS = 5  # the worker's PREEMPTION_MAX_VMS in the demo: less than TAGGED_RUNNING


class InventoryTooSmall(ValueError):
    pass


@dataclass(frozen=True)
class DemoPlan:
    running: tuple[VmState, ...]  # tagged, left running: the candidates
    powered_off: tuple[VmState, ...]  # tagged, powered off before the alarm
    suspended: tuple[VmState, ...]  # tagged, suspended before the alarm
    host: VmRef  # tagged although it is not a VM
    untagged: tuple[VmState, ...]

    @property
    def tagged(self) -> list[VmRef]:
        vms = self.running + self.powered_off + self.suspended
        return [s.ref for s in vms] + [self.host]


def _natural(state: VmState) -> tuple[tuple[tuple[int, int | str], ...], str]:
    # VM2 before VM10, as a reader counts.
    return (moref_key(state.name), state.ref.value)


def plan_demo(vms: Sequence[VmState], hosts: Sequence[VmRef]) -> DemoPlan:
    ordered = sorted(vms, key=_natural)
    needed = TAGGED_RUNNING + TAGGED_OFF + TAGGED_SUSPENDED + 1
    if len(ordered) < needed or not hosts:
        raise InventoryTooSmall(
            f"the demo needs at least {needed} VMs and a host; found {len(ordered)} VMs, "
            f"{len(hosts)} hosts"
        )
    first_off = TAGGED_RUNNING
    first_suspended = first_off + TAGGED_OFF
    first_untagged = first_suspended + TAGGED_SUSPENDED
    return DemoPlan(
        running=tuple(ordered[:first_off]),
        powered_off=tuple(ordered[first_off:first_suspended]),
        suspended=tuple(ordered[first_suspended:first_untagged]),
        host=sorted(hosts, key=lambda r: moref_key(r.value))[0],
        untagged=tuple(ordered[first_untagged:]),
    )


@dataclass(frozen=True)
class PreparedInventory:
    plan: DemoPlan
    category: str
    tag: str
    before: dict[VmRef, VmState]  # every VM's state once the plan is applied
    expected: Selection  # what the worker should pick, by the documented rules

    @property
    def names(self) -> dict[VmRef, str]:
        return {ref: state.name for ref, state in self.before.items()}


def prepare(inventory: Inventory, tag: str, category: str = DEFAULT_CATEGORY) -> PreparedInventory:
    """Tag, power off and suspend as `plan_demo` says; read the result back."""
    plan = plan_demo(inventory.vms(), inventory.objects("HostSystem"))
    inventory.tag(tag, plan.tagged, category)
    inventory.power_off([s.ref for s in plan.powered_off])
    inventory.suspend([s.ref for s in plan.suspended])
    before = {state.ref: state for state in inventory.vms()}
    expected = select_preemptible(plan.tagged, before, MAX_VMS)
    return PreparedInventory(plan, category, tag, before, expected)
