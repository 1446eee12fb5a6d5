"""Value types shared by every layer.

No `from __future__ import annotations` here (nor in temporal/contracts.py): these dataclasses
cross Temporal's JSON converter, which reads their fields' types with `typing.get_type_hints`
on every payload it decodes, in the workflow's sandbox too, and a string annotation is compiled
and evaluated again each time: a PowerOffOutcome of 10 VMs decoded 2.6 times slower
(tests/temporal/test_contracts_decoding.py keeps the annotations evaluated).
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Criticality(StrEnum):
    """How urgently capacity is needed; decides soft (LOW) or hard power-off."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

    @property
    def forces_power_off(self) -> bool:
        # The Go worker's rule: anything but LOW is a hard power-off.
        return self is not Criticality.LOW


@dataclass(frozen=True, order=True)
class VmRef:
    """A managed object reference, as vSphere names objects (`VirtualMachine`, `vm-58`)."""

    value: str
    type: str = "VirtualMachine"

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True)
class VmIssue:
    """A VM left alone or that failed, and why: recorded, never swallowed."""

    vm: VmRef
    reason: str


@dataclass(frozen=True)
class Selection:
    """Which tagged objects to preempt, in order, and why the others were left out."""

    selected: list[VmRef]  # powered-on VMs, at most the cap, in preemption order
    left_out: list[VmIssue] = field(default_factory=list)  # not a VM, already off, over the cap


class StopAction(StrEnum):
    """How a victim is stopped: what each criticality does is the policy's."""

    SHUTDOWN = "shutdown"  # guest shutdown, forced off after a grace period
    POWER_OFF = "poweroff"  # hard power-off
    SUSPEND = "suspend"  # memory to disk: resumes where it was


@dataclass(frozen=True)
class VmMark:
    """What a VM looked like right after we stopped it, to tell later whether anyone changed it.

    A resume powers on only VMs whose mark still holds: still stopped as we left them, same
    configuration (`config.changeVersion` changes with every reconfiguration), same host and
    resource pool (not moved), our annotation still there.
    """

    ref: VmRef
    change_version: str
    host: str | None  # HostSystem moref value
    resource_pool: str | None  # ResourcePool moref value
    power_state: str  # poweredOff or suspended


@dataclass(frozen=True)
class PowerOffOutcome:
    powered_off: list[VmRef]  # confirmed off (a retry that finds one off already counts it)
    failed: list[VmIssue] = field(default_factory=list)
    forced_after_grace: list[VmRef] = field(default_factory=list)  # soft shutdown timed out
    # soft shutdown refused by vCenter (no VMware Tools, suspended...): forced at once, and why
    forced_without_grace: list[VmIssue] = field(default_factory=list)
    # each stopped VM as it was left (empty in histories recorded before resume existed)
    marks: list[VmMark] = field(default_factory=list)


@dataclass(frozen=True)
class ResumeOutcome:
    """A resume batch: powered on and confirmed, left alone (and why), failed."""

    resumed: list[VmRef]
    skipped: list[VmIssue] = field(default_factory=list)  # changed since we stopped it
    failed: list[VmIssue] = field(default_factory=list)


@dataclass(frozen=True)
class GuestNoticeOutcome:
    written: list[VmRef]
    failed: list[VmIssue] = field(default_factory=list)


@dataclass(frozen=True)
class AnnotateOutcome:
    annotated: list[VmRef]
    failed: list[VmIssue] = field(default_factory=list)


# -- Facts for choosing victims by place, priority and need -----------------------------
# The vSphere adapter gathers these in batched reads; domain/plan.py decides on them alone.

# Any managed object reference (a cluster, a host, a pool, ...): VmRef names every type.
MoRef = VmRef


@dataclass(frozen=True)
class Resources:
    """CPU in MHz and memory in MB; None where vCenter gave no figure."""

    cpu_mhz: float | None = None
    memory_mb: float | None = None


@dataclass(frozen=True)
class TagName:
    """A vSphere tag as people name it: its category and its own name."""

    category: str
    name: str


@dataclass(frozen=True)
class VmFacts:
    """One VM as the plan sees it: where it is, what it carries, what it uses."""

    ref: VmRef
    name: str
    power_state: str  # a selection.PowerState value, kept as str
    in_scope: bool  # under the alarmed entity (always True for scope `vcenter`)
    tags: frozenset[TagName] = frozenset()
    boot_time: datetime | None = None  # last power-on; None when vCenter does not say
    usage: Resources = Resources()  # measured (quickStats); None fields where missing
    allocation: Resources = Resources()  # configured: vCPUs x core MHz, memory size
    host: str | None = None  # HostSystem moref value
    # our annotation says this system powered it off (counts against a group's budget while off)
    preempted_by_us: bool = False
    # carries the request's tag; False for a VM gathered only because it is in a budget group
    preemptible: bool = True


@dataclass(frozen=True)
class EntityUsage:
    """The alarmed entity's capacity and current use (cluster, host; None where unknown)."""

    entity: MoRef
    capacity: Resources
    used: Resources
