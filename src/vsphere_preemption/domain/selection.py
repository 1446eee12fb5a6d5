"""Which tagged objects to preempt, in what order, and why the others are left alone.

Pure: the vSphere adapter reads the tag's attached objects and the VMs' states (in one
batched call), then hands both here. Nothing is dropped silently: every tagged object
either ends up selected or in `left_out` with a reason a person can act on.

Order. The tag association API returns objects in no stated order (vcsim: Go map
order, different on every call), so the Go worker's "first 10" was arbitrary. We sort
the eligible VMs by name, then by moref, so that:
- the same inventory always yields the same selection (a retried activity, a replay of
  the demo, a test all see the same VMs; an operator can predict which VMs go first and
  steer it by naming);
- the moref breaks ties between equal names (vSphere allows them) and is compared
  numerically (`vm-9` before `vm-10`), as a person reading a list expects.
Filtering happens before the cap: a VM that is already off frees no capacity, so it
must not take one of the `max_vms` places.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from vsphere_preemption.domain.model import Selection, VmIssue, VmRef

VIRTUAL_MACHINE = "VirtualMachine"


class PowerState(StrEnum):
    """vSphere's `VirtualMachinePowerState` values."""

    POWERED_ON = "poweredOn"
    POWERED_OFF = "poweredOff"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class VmState:
    """What vCenter says about one VM, read in the batched retrieval."""

    ref: VmRef
    name: str
    power_state: str  # a PowerState value; kept as str so an unknown future value survives
    host: str | None = None  # HostSystem moref value, e.g. "host-21"
    cluster: str | None = None  # name of the cluster (or standalone host's compute resource)


_DIGITS = re.compile(r"(\d+)")


def moref_key(value: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order for moref values: `vm-9` < `vm-10` < `vm-100`."""
    return tuple(
        (1, int(part)) if part.isdigit() else (0, part) for part in _DIGITS.split(value) if part
    )


def preemption_order(state: VmState) -> tuple[str, str, tuple[tuple[int, int | str], ...]]:
    # casefold: "web-1" and "Web-2" sort as a person reads them, not by ASCII case.
    return (state.name.casefold(), state.name, moref_key(state.ref.value))


def _ref_order(ref: VmRef) -> tuple[str, tuple[tuple[int, int | str], ...]]:
    return (ref.type, moref_key(ref.value))


def dedupe(refs: Iterable[VmRef]) -> list[VmRef]:
    """Each reference once, first occurrence kept (two tags of one name may share objects)."""
    return list(dict.fromkeys(refs))


def why_not_running(state: VmState) -> str | None:
    """None if the VM runs and can be preempted, else the reason it is left alone."""
    if state.power_state == PowerState.POWERED_ON:
        return None
    if state.power_state == PowerState.POWERED_OFF:
        return "already powered off"
    if state.power_state == PowerState.SUSPENDED:
        return "suspended: holds no CPU or memory to free"
    return f"power state {state.power_state!r}: not running"


def select_preemptible(
    tagged: Iterable[VmRef], states: Mapping[VmRef, VmState], max_vms: int
) -> Selection:
    """Pick at most `max_vms` powered-on VMs among the tagged objects.

    `tagged`: every object attached to the tag, of any type. `states`: the VMs among
    them that vCenter knows; a tagged VM missing here was deleted after being tagged.
    """
    if max_vms < 1:
        raise ValueError(f"max_vms must be at least 1, not {max_vms}")
    left_out: list[VmIssue] = []
    running: list[VmState] = []
    for ref in sorted(dedupe(tagged), key=_ref_order):
        if ref.type != VIRTUAL_MACHINE:
            left_out.append(VmIssue(ref, f"not a virtual machine ({ref.type})"))
            continue
        state = states.get(ref)
        if state is None:
            left_out.append(VmIssue(ref, "virtual machine not found (deleted after tagging?)"))
            continue
        reason = why_not_running(state)
        if reason is not None:
            left_out.append(VmIssue(ref, reason))
            continue
        running.append(state)
    running.sort(key=preemption_order)
    selected = [s.ref for s in running[:max_vms]]
    left_out += [
        VmIssue(s.ref, f"over the cap of {max_vms} VMs per run") for s in running[max_vms:]
    ]
    return Selection(selected=selected, left_out=left_out)
