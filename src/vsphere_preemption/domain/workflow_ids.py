"""Which workflow an alarm change addresses: one per (alarm, alarmed entity), or one per alarm.

vCenter fires one alarm definition separately for every entity under the object it is defined
on (an alarm on a datacenter fires per cluster). With one workflow per alarm, as the Go
function has it, the alarm clearing on cluster B cancels the preemption running for cluster A.
So by default the workflow ID is `<alarm name>/<entity moref>`, e.g.
`cluster-cpu-above-80/domain-c7`:

- readable in the Temporal UI and in `preemptctl workflow list`;
- stable: a moref value does not change for the life of the object (a rename keeps it);
- valid: Temporal takes any UTF-8 string up to 1,000 bytes as a workflow ID, and moref values
  never contain a slash, so the last slash always separates the entity.

`IdMode.ALARM` restores the Go form (ID = alarm name). A request that names no entity (as
`preemptctl workflow run` sends by default) addresses the alarm's own ID in either mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from vsphere_preemption.domain.model import MoRef

# vSphere moref values: a lower-case prefix, then dash-separated parts (domain-c7, host-21,
# vm-58, resgroup-v12, datastore-15, group-d1, datacenter-2).
_MOREF_VALUE = re.compile(r"[a-z]+(?:-[A-Za-z0-9]+)+")


class IdMode(StrEnum):
    ENTITY = "entity"  # one workflow per alarm and alarmed entity (ours, the default)
    ALARM = "alarm"  # one workflow per alarm (the Go originals)


@dataclass(frozen=True)
class WorkflowAddress:
    """What a workflow ID says: the alarm and, in entity mode, the entity's moref value."""

    alarm: str
    entity: str | None


def is_moref_value(value: str) -> bool:
    """Whether `value` reads as a vSphere managed object id (`domain-c7`, `vm-58`)."""
    return _MOREF_VALUE.fullmatch(value) is not None


def workflow_id(alarm: str, entity: MoRef | None, mode: IdMode = IdMode.ENTITY) -> str:
    if not alarm:
        raise ValueError("an alarm name is needed for a workflow ID")
    if mode is IdMode.ALARM or entity is None:
        return alarm
    if not _MOREF_VALUE.fullmatch(entity.value):
        raise ValueError(f"not a managed object id: {entity.value!r}")
    return f"{alarm}/{entity.value}"


def parse_workflow_id(value: str) -> WorkflowAddress:
    """Split an ID made by `workflow_id`; an ID without an entity part is the alarm alone."""
    alarm, slash, tail = value.rpartition("/")
    if slash and alarm and _MOREF_VALUE.fullmatch(tail):
        return WorkflowAddress(alarm, tail)
    return WorkflowAddress(value, None)
