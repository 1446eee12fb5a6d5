"""The demo's alarm events decode as the function decodes them."""

from __future__ import annotations

import json

import pytest

from tests.cli.demo_fixtures import ALARM, NOW
from vsphere_preemption.devtools.demo.events import (
    ALARM_EVENT_TYPE,
    AlarmScene,
    Named,
    alarm_status_changed,
)
from vsphere_preemption.domain.alarm_rules import Action, decide
from vsphere_preemption.domain.events import EventShape, data_from_body, decode
from vsphere_preemption.domain.model import Criticality

SCENE = AlarmScene(
    vcenter_url="https://127.0.0.1:8989/sdk",
    datacenter=Named("DC0", "Datacenter", "datacenter-2"),
    cluster=Named("DC0_C0", "ClusterComputeResource", "domain-c15"),
    alarm=Named(ALARM, "Alarm", "alarm-101"),
)


@pytest.mark.parametrize(
    ("from_status", "to_status", "action", "criticality"),
    [("green", "red", Action.PREEMPT, Criticality.HIGH), ("red", "green", Action.CANCEL, None)],
)
def test_alarm_events_decode_as_the_function_decodes_them(
    from_status: str, to_status: str, action: Action, criticality: Criticality | None
) -> None:
    statuses = (from_status, to_status)
    event = alarm_status_changed(
        SCENE, key=4242, from_status=from_status, to_status=to_status, now=NOW
    )
    headers = event.headers
    # Binary content mode in the new (Tanzu Sources) shape.
    assert headers["ce-type"] == ALARM_EVENT_TYPE == "com.vmware.vsphere.AlarmStatusChangedEvent.v0"
    assert headers["ce-id"] == event.id == "4242"
    assert headers["ce-source"] == SCENE.vcenter_url and "ce-subject" not in headers
    assert headers["ce-eventclass"] == "event" and headers["content-type"] == "application/json"
    attributes = {k.removeprefix("ce-"): v for k, v in headers.items() if k.startswith("ce-")}
    change = decode(attributes, data_from_body(event.body, headers["content-type"]))
    assert change.shape == EventShape.TANZU_SOURCES
    assert (change.alarm_name, change.from_status, change.to_status) == (ALARM, *statuses)
    assert (change.key, change.entity_name) == (4242, "DC0_C0")
    decision = decide(change, ALARM)
    assert decision.action == action
    if criticality is not None:
        assert decision.criticality == criticality
    # The data carries the Go field names, as events/01_* does.
    data = json.loads(event.body)
    assert data["Alarm"] == {"Name": ALARM, "Alarm": {"Type": "Alarm", "Value": "alarm-101"}}
    assert data["Entity"]["Entity"] == {"Type": "ClusterComputeResource", "Value": "domain-c15"}
    assert data["Key"] == 4242 and data["CreatedTime"] == "2026-03-01T12:00:00Z"


def test_another_alarms_name_is_ignored_by_the_function() -> None:
    event = alarm_status_changed(SCENE, key=1, from_status="green", to_status="red", now=NOW)
    attributes = {k.removeprefix("ce-"): v for k, v in event.headers.items() if k.startswith("ce-")}
    change = decode(attributes, data_from_body(event.body, "application/json"))
    assert decide(change, "another-alarm").action == Action.IGNORE
