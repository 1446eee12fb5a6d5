"""Inputs and results of the worker's activities, shared by workflow and activities.

Only our own worker runs these activities, so these shapes are ours (dataclasses
through Temporal's default JSON converter); the Go-compatible shapes are in
`vsphere_preemption.wire`. Activity names keep the Go worker's, so histories read
the same in the Temporal UI.

Durations travel as seconds (float): Temporal's default JSON converter cannot
encode `timedelta`, and every client (ours, Go's, the `temporal` CLI) must be able
to read these payloads without a custom converter. The `timedelta` views are
properties, so code reads `policy.cooldown` as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from vsphere_preemption.domain.model import VmRef

# Results are the domain's own types: Selection, PowerOffOutcome, AnnotateOutcome.

GET_PREEMPTIBLE_VMS = "GetPreemptibleVMs"
POWER_OFF_VMS = "PowerOffVMs"
ANNOTATE_VMS = "AnnotateVms"
SEND_PREEMPTED_EVENT = "SendPreemptedEvent"
GET_POLICY = "GetPreemptionPolicy"


@dataclass(frozen=True)
class PreemptionPolicy:
    """The worker's knobs, read by the workflow through an activity so replays agree."""

    cooldown_seconds: float = 60.0
    max_vms: int = 10
    soft_shutdown_grace_seconds: float = 120.0
    max_concurrency: int = 5

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
    force: bool
    soft_shutdown_grace_seconds: float
    max_concurrency: int

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
