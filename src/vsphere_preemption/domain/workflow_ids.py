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

One function serving several vCenters (its `VCENTER_TASKQUEUES`) puts the vCenter's host
(`domain/vcenters.py`) before the moref, `<alarm>/<vcenter host>/<moref>`, e.g.
`cluster-cpu-above-80/vcsa-1.example.com/domain-c7`: morefs repeat across vCenters (every
vCenter's first cluster is `domain-c7`), and two vCenters' clusters must not share a workflow.
Without an entity, or in `IdMode.ALARM`, that ID is `<alarm>/<vcenter host>`. Without a vCenter
the IDs are as above, unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from vsphere_preemption.domain.model import MoRef
from vsphere_preemption.domain.vcenters import is_vcenter_host, reads_as_vcenter_host

# vSphere moref values: a lower-case prefix, then dash-separated parts (domain-c7, host-21,
# vm-58, resgroup-v12, datastore-15, group-d1, datacenter-2).
_MOREF_VALUE = re.compile(r"[a-z]+(?:-[A-Za-z0-9]+)+")


class IdMode(StrEnum):
    ENTITY = "entity"  # one workflow per alarm and alarmed entity (ours, the default)
    ALARM = "alarm"  # one workflow per alarm (the Go originals)


@dataclass(frozen=True)
class WorkflowAddress:
    """What a workflow ID says: the alarm and, in entity mode, the entity's moref value; the
    vCenter's host when the ID names one."""

    alarm: str
    entity: str | None
    vcenter: str | None = None


def is_moref_value(value: str) -> bool:
    """Whether `value` reads as a vSphere managed object id (`domain-c7`, `vm-58`)."""
    return _MOREF_VALUE.fullmatch(value) is not None


def workflow_id(
    alarm: str, entity: MoRef | None, mode: IdMode = IdMode.ENTITY, vcenter: str | None = None
) -> str:
    """The ID for `alarm` on `entity`; `vcenter` (a host as `vcenters.vcenter_host` writes it)
    when the function serves several vCenters."""
    if not alarm:
        raise ValueError("an alarm name is needed for a workflow ID")
    if vcenter is not None and not is_vcenter_host(vcenter):
        raise ValueError(f"not a vCenter host: {vcenter!r}")
    prefix = alarm if vcenter is None else f"{alarm}/{vcenter}"
    if mode is IdMode.ALARM or entity is None:
        return prefix
    if not _MOREF_VALUE.fullmatch(entity.value):
        raise ValueError(f"not a managed object id: {entity.value!r}")
    return f"{prefix}/{entity.value}"


def parse_workflow_id(value: str) -> WorkflowAddress:
    """Split an ID made by `workflow_id`: a last segment that is a moref value is the entity;
    the segment before it (or the last, without an entity) is the vCenter when it reads as a
    host with a dot or a port; the rest is the alarm. So a vCenter named by a short host
    (`vcsa`) reads back as part of the alarm name, and an alarm name whose own last segment
    reads as such a host (`cpu/x.y`) as a vCenter: name vCenters by their full DNS names."""
    rest, entity = value, None
    head, slash, tail = value.rpartition("/")
    if slash and head and _MOREF_VALUE.fullmatch(tail):
        rest, entity = head, tail
    alarm, slash, host = rest.rpartition("/")
    if slash and alarm and reads_as_vcenter_host(host):
        return WorkflowAddress(alarm, entity, host)
    return WorkflowAddress(rest, entity)
