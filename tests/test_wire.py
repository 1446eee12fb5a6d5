"""The PreemptVMsChan signal (WorkflowRequest) and Go's JSON encoding of it, against events/02_*."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import fixture_text
from vsphere_preemption.domain.model import Criticality, MoRef
from vsphere_preemption.temporal.client import signal_payload_bytes
from vsphere_preemption.wire import WireError, WorkflowRequest, WorkflowResponse, go_json

SIGNAL = fixture_text("02_old-router_PreemptVMsChan-signal-WorkflowRequest.json").strip()


def test_the_reference_signal_round_trips_byte_for_byte() -> None:
    request = WorkflowRequest.from_wire(json.loads(SIGNAL))
    assert json.dumps(request.to_wire(), separators=(",", ":")) == SIGNAL
    assert signal_payload_bytes(request) == SIGNAL.encode()


def test_the_reference_signal_fields() -> None:
    request = WorkflowRequest.from_wire(json.loads(SIGNAL))
    assert request.tag == "preemptible"
    assert request.criticality is Criticality.HIGH
    assert request.reply_to == "http://default-broker-ingress.vmware-functions.svc.cluster.local"
    assert list(request.event)[:8] == [
        "specversion", "id", "source", "type", "subject", "datacontenttype", "time", "data",
    ]  # fmt: skip
    assert list(request.to_wire()) == ["tag", "criticality", "event", "replyTo"]


def test_field_names_are_read_in_any_case_and_written_exactly() -> None:
    loose = {"TAG": "t", "Criticality": "medium", "EVENT": {"id": "1"}, "replyto": ""}
    request = WorkflowRequest.from_wire(loose)
    assert request.to_wire() == {
        "tag": "t", "criticality": "MEDIUM", "event": {"id": "1"}, "replyTo": "",
    }  # fmt: skip


def test_a_request_always_carries_an_event() -> None:
    with pytest.raises(WireError, match="event is missing"):
        WorkflowRequest.from_wire({"tag": "t", "criticality": "LOW", "event": None})
    wire = WorkflowRequest("t", Criticality.LOW, {"id": "1"}).to_wire()
    assert wire["event"] is not None and wire["replyTo"] == ""


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ({"a": "<x> & y"}, b'{"a":"\\u003cx\\u003e \\u0026 y"}'),
        ({"a": "caf\u00e9 \u2603"}, '{"a":"caf\u00e9 \u2603"}'.encode()),  # UTF-8, not \\u
        ({"a": "line\u2028sep\u2029"}, b'{"a":"line\\u2028sep\\u2029"}'),
        ({"a": json.loads('"\\ud800"')}, '{"a":"\ufffd"}'.encode()),  # lone surrogate
        ({"b": 1, "a": [True, None, 1.5]}, b'{"b":1,"a":[true,null,1.5]}'),  # order kept
    ],
)
def test_go_json_escapes_as_go_encoding_json_does(value: Any, encoded: bytes) -> None:
    assert go_json(value) == encoded


def test_go_json_refuses_what_go_cannot_encode() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        go_json({"a": float("nan")})


def test_our_request_fields_round_trip_after_gos() -> None:
    request = WorkflowRequest(
        "preemptible",
        Criticality.HIGH,
        {"id": "1"},
        entity=MoRef("domain-c7", "ClusterComputeResource"),
        dry_run=True,
        policy={"maxVMs": 3},
    )
    wire = request.to_wire()
    assert list(wire) == ["tag", "criticality", "event", "replyTo", "entity", "dryRun", "policy"]
    assert wire["entity"] == {"Type": "ClusterComputeResource", "Value": "domain-c7"}
    assert WorkflowRequest.from_wire(json.loads(go_json(wire))) == request


def test_request_without_our_fields_writes_none_of_them() -> None:
    wire = WorkflowRequest("t", Criticality.LOW, {"id": "1"}).to_wire()
    assert list(wire) == ["tag", "criticality", "event", "replyTo"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"dryRun": "yes"}, "dryRun must be true or false"),
        ({"policy": [1]}, "policy must be an object"),
        ({"entity": {"Type": "HostSystem"}}, "needs a Value"),
    ],
)
def test_bad_extra_fields_are_refused(extra: dict[str, object], message: str) -> None:
    with pytest.raises(WireError, match=message):
        WorkflowRequest.from_wire({"tag": "t", "criticality": "LOW", "event": {}, **extra})


def test_response_extras_follow_gos_fields_and_are_read_back() -> None:
    response = WorkflowResponse(
        workflow_id="cpu/domain-c7", run_id="r", extra={"entity": {"Type": "X", "Value": "y"}}
    )
    wire = response.to_wire()
    assert list(wire)[-2:] == ["replyTo", "entity"]
    assert WorkflowResponse.from_wire(response.to_json()).extra == {
        "entity": {"Type": "X", "Value": "y"}
    }


def test_the_alarmed_entity_comes_from_the_request_or_its_alarm_event() -> None:
    from_event = WorkflowRequest.from_json(SIGNAL)
    # The reference signal's alarm fired on a host; raw JSON data is read as well.
    assert from_event.alarmed_entity() == MoRef("host-21", "HostSystem")
    named = WorkflowRequest.from_wire(
        {**json.loads(SIGNAL), "entity": {"Type": "ClusterComputeResource", "Value": "domain-c7"}}
    )
    assert named.alarmed_entity() == MoRef("domain-c7", "ClusterComputeResource")
    cli = WorkflowRequest("t", Criticality.LOW, {"id": "1", "type": "PreempctlRunEvent"})
    assert cli.alarmed_entity() is None
