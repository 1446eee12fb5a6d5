"""Inputs and results of the worker's activities, shared by workflow and activities.

Only our own worker runs these activities, so these shapes are ours (dataclasses
through Temporal's default JSON converter); the Go-compatible shapes are in
`vsphere_preemption.wire`. Activity names keep the Go worker's, so histories read
the same in the Temporal UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from vsphere_preemption.domain.model import VmRef

GET_PREEMPTIBLE_VMS = "GetPreemptibleVMs"
POWER_OFF_VMS = "PowerOffVMs"
ANNOTATE_VMS = "AnnotateVms"
SEND_PREEMPTED_EVENT = "SendPreemptedEvent"
GET_POLICY = "GetPreemptionPolicy"


@dataclass(frozen=True)
class PreemptionPolicy:
    """The worker's knobs, read by the workflow through an activity so replays agree."""

    cooldown: timedelta = timedelta(minutes=1)
    max_vms: int = 10
    soft_shutdown_grace: timedelta = timedelta(minutes=2)
    max_concurrency: int = 5


@dataclass(frozen=True)
class VmIssue:
    """A VM left alone or that failed, and why (for the run record, never swallowed)."""

    vm: VmRef
    reason: str


@dataclass(frozen=True)
class FindVmsInput:
    tag: str
    max_vms: int


@dataclass(frozen=True)
class FindVmsResult:
    selected: list[VmRef]  # powered on, at most max_vms, in preemption order
    left_out: list[VmIssue] = field(default_factory=list)  # not a VM, already off, over the cap


@dataclass(frozen=True)
class PowerOffInput:
    vms: list[VmRef]
    force: bool
    soft_shutdown_grace: timedelta
    max_concurrency: int


@dataclass(frozen=True)
class PowerOffResult:
    powered_off: list[VmRef]  # confirmed off (including those a retry found off already)
    failed: list[VmIssue] = field(default_factory=list)
    forced_after_grace: list[VmRef] = field(default_factory=list)  # soft shutdown timed out


@dataclass(frozen=True)
class AnnotateInput:
    vms: list[VmRef]
    annotation: dict[str, Any]  # wire.Annotation.to_wire()


@dataclass(frozen=True)
class AnnotateResult:
    annotated: list[VmRef]
    failed: list[VmIssue] = field(default_factory=list)


@dataclass(frozen=True)
class SendEventInput:
    reply_to: str
    event_id: str
    data: dict[str, Any]  # wire.preempted_event_data(...)
