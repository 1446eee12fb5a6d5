"""The query answer, the annotation and times, as the Go originals write and read them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.conftest import fixture_json
from vsphere_preemption.domain.model import Criticality, VmRef
from vsphere_preemption.wire import (
    Annotation,
    WireError,
    WorkflowResponse,
    format_time,
    parse_time,
    preempted_event_data,
    preempted_event_id,
    vm_ref_from_wire,
)


@pytest.mark.parametrize(
    ("text", "formatted"),
    [
        ("2021-11-05T13:13:49.993999Z", "2021-11-05T13:13:49.993999Z"),
        ("2021-11-05T13:02:32.966Z", "2021-11-05T13:02:32.966Z"),
        ("2021-11-05T13:02:32Z", "2021-11-05T13:02:32Z"),
        ("2021-11-05T14:02:32.5+01:00", "2021-11-05T13:02:32.5Z"),
        ("2023-11-27T10:00:12.697365304Z", "2023-11-27T10:00:12.697365Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ],
)
def test_times_read_any_rfc3339_and_write_go_style(text: str, formatted: str) -> None:
    assert format_time(parse_time(text)) == formatted


def test_times_must_carry_a_zone() -> None:
    with pytest.raises(WireError):
        parse_time("2021-11-05T13:02:32")
    with pytest.raises(WireError):
        format_time(datetime(2021, 11, 5))
    assert format_time(datetime(2021, 11, 5, 1, tzinfo=timezone(timedelta(hours=1)))) == (
        "2021-11-05T00:00:00Z"
    )


def test_vm_refs_read_both_govmomi_spellings() -> None:
    assert vm_ref_from_wire({"Type": "VirtualMachine", "Value": "vm-58"}) == VmRef("vm-58")
    assert vm_ref_from_wire({"type": "VirtualMachine", "value": "vm-58"}) == VmRef("vm-58")
    with pytest.raises(WireError):
        vm_ref_from_wire({"Type": "VirtualMachine"})


def test_annotation_sample_round_trips_byte_for_byte() -> None:
    sample = fixture_json("01_old-router_AlarmStatusChangedEvent.json")
    annotation = Annotation.from_wire(sample)
    assert annotation.criticality is Criticality.HIGH
    assert annotation.forced_shutdown is True
    assert annotation.to_wire() == sample
    assert list(annotation.to_wire()) == list(sample), "field order as the Go struct writes it"


def test_query_answer_before_any_run_is_what_go_would_marshal() -> None:
    fresh = json.loads(WorkflowResponse(workflow_id="alarm", run_id="r1").to_json())
    assert fresh == {
        "workflowID": "alarm",
        "workflowRunID": "r1",
        "workflowName": "PreemptVMsWorkflow",
        "lastPreemptionTime": "0001-01-01T00:00:00Z",
        "virtualMachines": None,
        "tag": "",
        "criticality": "",
        "event": {"specversion": "1.0", "id": "", "source": "", "type": ""},
        "replyTo": "",
    }


def test_query_answer_round_trips_and_reads_go_written_json() -> None:
    event = fixture_json("01_old-router_AlarmStatusChangedEvent.json")["event"]
    response = WorkflowResponse(
        workflow_id="cluster-cpu-above-80",
        run_id="run",
        last_preemption=datetime(2021, 11, 5, 13, 2, 34, 437444, tzinfo=UTC),
        virtual_machines=(VmRef("vm-58"), VmRef("vm-59")),
        tag="preemptible",
        criticality=Criticality.HIGH,
        event=event,
        reply_to="http://sink",
    )
    wire = json.loads(response.to_json())
    assert wire["virtualMachines"] == [
        {"Type": "VirtualMachine", "Value": "vm-58"},
        {"Type": "VirtualMachine", "Value": "vm-59"},
    ]
    assert WorkflowResponse.from_wire(response.to_json()) == response
    # A newer Go worker (govmomi with JSON tags) writes lower-case references.
    wire["virtualMachines"] = [{"type": "VirtualMachine", "value": "vm-58"}]
    assert WorkflowResponse.from_wire(wire).virtual_machines == (VmRef("vm-58"),)


def test_emitted_event_data_is_the_annotation_plus_vms() -> None:
    sample = fixture_json("01_old-router_AlarmStatusChangedEvent.json")
    data = preempted_event_data(Annotation.from_wire(sample), [VmRef("vm-1")])
    assert data == {**sample, "virtualMachines": [{"Type": "VirtualMachine", "Value": "vm-1"}]}
    assert preempted_event_id("cluster-cpu-above-80", sample["event"]) == (
        "cluster-cpu-above-80-15c7f3f5-072d-4cc8-994b-773992b78979"
    )
