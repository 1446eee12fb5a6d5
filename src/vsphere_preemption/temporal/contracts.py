"""Inputs and results of the worker's activities, shared by workflow and activities.

Only our own worker runs these activities, so these shapes are ours (dataclasses
through Temporal's default JSON converter); the Go-compatible shapes are in
`vsphere_preemption.wire`. Activity names keep the Go worker's, so histories read
the same in the Temporal UI.

Durations travel as seconds (float): Temporal's default JSON converter cannot
encode `timedelta`, and every client (ours, Go's, the `temporal` CLI) must be able
to read these payloads without a custom converter. The `timedelta` views are
properties, so code reads `policy.cooldown` as before.

No `from __future__ import annotations`: the converter reads these types on every payload, and
evaluated annotations spare it compiling them each time (domain/model.py says more).
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from vsphere_preemption.domain.model import Criticality, EntityUsage, VmMark, VmRef
from vsphere_preemption.domain.shapes import PlanWire
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE

# Results are the domain's own types: Selection, PowerOffOutcome, AnnotateOutcome.

GET_PREEMPTIBLE_VMS = "GetPreemptibleVMs"
POWER_OFF_VMS = "PowerOffVMs"
ANNOTATE_VMS = "AnnotateVms"
SEND_PREEMPTED_EVENT = "SendPreemptedEvent"
GET_POLICY = "GetPreemptionPolicy"
# Ours (the Go worker has no such steps): choose victims by place, priority and need.
PLAN_PREEMPTION = "PlanPreemption"
READ_ENTITY_USAGE = "ReadEntityUsage"
# The same read on a basis (preempt-until-relieved): its own name, so that a worker from before
# the basis existed never takes a UseInput for the MoRef its ReadEntityUsage expects.
READ_ENTITY_USE = "ReadEntityUse"
# Acting with care: notice inside the guest, and resuming what a workflow stopped.
SET_GUEST_NOTICE = "SetGuestNotice"
RESUME_VMS = "ResumeVMs"
# The pause switch: the pauses as the registry workflow of the task queue holds them.
READ_PAUSES = "ReadPauses"
# The guestinfo variable a VM's software reads (`vmware-rpctool "info-get guestinfo.…"`, or
# `vmtoolsd --cmd`) to learn that it is about to be stopped; empty when no notice stands.
GUEST_NOTICE_KEY = "guestinfo.vsphere-preemption.notice"


@dataclass(frozen=True)
class PreemptionPolicy:
    """The worker's knobs, read by the workflow through an activity so replays agree."""

    cooldown_seconds: float = 60.0
    max_vms: int = 10
    soft_shutdown_grace_seconds: float = 120.0
    max_concurrency: int = 5
    # The selection policy (domain.policy.Policy.to_wire()); None in histories recorded
    # before the plan existed, whose replays never read it.
    selection: dict[str, Any] | None = None

    @property
    def cooldown(self) -> timedelta:
        return timedelta(seconds=self.cooldown_seconds)

    @property
    def soft_shutdown_grace(self) -> timedelta:
        return timedelta(seconds=self.soft_shutdown_grace_seconds)


@dataclass(frozen=True)
class FindVmsInput:
    tag: str
    max_vms: int


@dataclass(frozen=True)
class PowerOffInput:
    vms: list[VmRef]
    force: bool  # before `action` existed: hard power-off, else guest shutdown
    soft_shutdown_grace_seconds: float
    max_concurrency: int
    # shutdown | poweroff | suspend (StopAction); "" in histories recorded before it: `force`
    action: str = ""

    @property
    def soft_shutdown_grace(self) -> timedelta:
        return timedelta(seconds=self.soft_shutdown_grace_seconds)


@dataclass(frozen=True)
class AnnotateInput:
    vms: list[VmRef]
    # wire.Annotation.to_json(): a JSON text, not a dict, because Temporal's JSON converter
    # sorts dict keys and the annotation must read as the Go worker writes it.
    annotation_json: str


@dataclass(frozen=True)
class SendEventInput:
    reply_to: str
    event_id: str
    data_json: str  # go_json(wire.preempted_event_data(...)), a text for the same reason
    event_type: str = PREEMPTED_EVENT_TYPE  # a dry run announces its plan instead


@dataclass(frozen=True)
class PauseBook:
    """The registry's pauses (domain.pauses.Pause.to_wire() each) and its change counter: a
    held workflow that asks to be told of the next change names the version it read, so a
    change between its read and its asking is not missed."""

    version: int = 0
    pauses: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PlanInput:
    tag: str
    entity: VmRef | None  # the alarmed entity; None: every tagged VM in vCenter
    policy: dict[str, Any]  # the run's effective Policy.to_wire() (overrides applied)
    criticality: Criticality
    # The pause registry to read beside the plan (pauses-in-plan): its workflow ID; None, read
    # none. A worker from before ignores the field and answers without `pauses`.
    pauses_registry: str | None = None


@dataclass(frozen=True)
class PlanOutput:
    # domain.plan.Plan.to_wire(). Temporal's converter reads a TypedDict field key by key
    # (converter.value_to_type) and makes each `float` key's value a float: the plan's figures
    # are floats already (the vSphere adapter reads them so), so the JSON stays as written.
    plan: PlanWire
    usage: EntityUsage | None  # the entity's capacity and use when planned
    scope_vms: int | None = None  # VMs under the entity, tagged or not
    notes: list[str] = field(default_factory=list)  # what vCenter could not tell, and such
    # The pauses read beside the plan, when PlanInput named a registry: the book, or (None)
    # why it could not be read in `pauses_unread`. Both empty: not read (a worker from before).
    pauses: PauseBook | None = None
    pauses_unread: str = ""


@dataclass(frozen=True)
class UseInput:
    entity: VmRef
    basis: str = "usage"  # domain.policy.UseBasis: `usage` (quick stats) or `allocation`


@dataclass(frozen=True)
class GuestNoticeInput:
    vms: list[VmRef]
    # JSON text written into GUEST_NOTICE_KEY (`{"action","notBefore","workflowID"}`);
    # "" clears the notice (the preemption was cancelled, or the VM resumed)
    value: str
    max_concurrency: int = 5


@dataclass(frozen=True)
class ResumeInput:
    marks: list[VmMark]  # as PowerOffOutcome.marks left them
    workflow_id: str  # our annotation on the VM must name this workflow
    # the annotation to write on each resumed VM: the Go shape with `resumed`/`resumedAt` after it
    annotation_json: str
    max_concurrency: int = 5


@dataclass(frozen=True)
class ReadPausesInput:
    registry_id: str  # wire.pauses_workflow_id(task queue)
