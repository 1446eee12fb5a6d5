"""The vCenter alarm CloudEvents the demo sends, shaped as VEBA's event source sends them.

The newer shape (Tanzu Sources for Knative, VEBA 0.8+): `type`
`com.vmware.vsphere.AlarmStatusChangedEvent.v0`, no `subject`, `id` = the vCenter
event key, extensions `eventclass` and `vsphereapiversion`, and `data` the JSON of
the Go event struct (field names as events/01_* carries them). Sent in binary content
mode, as a Knative broker delivers: `ce-*` headers, the body is `data`.

Pure: the inventory names and the clock come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cloudevents.core.bindings.http import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from vsphere_preemption.wire import format_time

ALARM_EVENT_TYPE = "com.vmware.vsphere.AlarmStatusChangedEvent.v0"
VSPHERE_API_VERSION = "8.0.2.0"


@dataclass(frozen=True)
class Named:
    """An inventory object as vCenter events name it: display name and moref."""

    name: str
    type: str
    value: str

    def entity(self, key: str) -> dict[str, Any]:
        # Go's event structs nest the reference under a key named after its kind.
        return {"Name": self.name, key: {"Type": self.type, "Value": self.value}}


@dataclass(frozen=True)
class AlarmScene:
    """Where the alarm fires: the vCenter, its datacenter and the cluster (the alarm's entity)."""

    vcenter_url: str  # the event `source`, as the event source sets it
    datacenter: Named
    cluster: Named
    alarm: Named


@dataclass(frozen=True)
class OutgoingEvent:
    id: str
    headers: dict[str, str]
    body: bytes


def alarm_status_changed(
    scene: AlarmScene, *, key: int, from_status: str, to_status: str, now: datetime
) -> OutgoingEvent:
    """One AlarmStatusChangedEvent (`from_status` -> `to_status`) in binary content mode."""
    data = {
        "Key": key,
        "ChainId": key,
        "CreatedTime": format_time(now),
        "UserName": "",
        "Datacenter": scene.datacenter.entity("Datacenter"),
        "ComputeResource": scene.cluster.entity("ComputeResource"),
        "Host": None,
        "Vm": None,
        "Ds": None,
        "Net": None,
        "Dvs": None,
        "FullFormattedMessage": (
            f"Alarm '{scene.alarm.name}' on {scene.cluster.name} changed from "
            f"{from_status.capitalize()} to {to_status.capitalize()}"
        ),
        "ChangeTag": "",
        "Alarm": scene.alarm.entity("Alarm"),
        "Source": scene.cluster.entity("Entity"),
        "Entity": scene.cluster.entity("Entity"),
        "From": from_status,
        "To": to_status,
    }
    event = CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": str(key),
            "source": scene.vcenter_url,
            "type": ALARM_EVENT_TYPE,
            "time": now,
            "datacontenttype": "application/json",
            "eventclass": "event",
            "vsphereapiversion": VSPHERE_API_VERSION,
        },
        data=data,
    )
    message = to_binary(event, JSONFormat())
    return OutgoingEvent(id=str(key), headers=dict(message.headers), body=message.body)
