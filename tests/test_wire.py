"""The PreemptVMsChan signal (WorkflowRequest) and Go's JSON encoding of it, against events/02_*."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import FIXTURES, fixture_text
from vsphere_preemption.cli.workflow_input import default_event
from vsphere_preemption.domain.model import Criticality, MoRef
from vsphere_preemption.temporal.client import signal_payload_bytes
from vsphere_preemption.wire import (
    CLI_EVENT_TYPE,
    CLI_WORKFLOW_ID,
    MAX_SIGNAL_BYTES,
    MAX_TAG_LENGTH,
    WireError,
    WorkflowRequest,
    WorkflowResponse,
    append_fields,
    go_json,
)

SIGNAL = fixture_text("02_old-router_PreemptVMsChan-signal-WorkflowRequest.json").strip()
# The least event a signal may carry: CloudEvents' required attributes.
EVENT = {"specversion": "1.0", "id": "1", "source": "preemptctl", "type": "T"}


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
    loose = {"TAG": "t", "Criticality": "medium", "EVENT": EVENT, "replyto": ""}
    request = WorkflowRequest.from_wire(loose)
    assert request.to_wire() == {
        "tag": "t", "criticality": "MEDIUM", "event": EVENT, "replyTo": "",
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
        EVENT,
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


def test_append_fields_keeps_the_text_and_adds_at_the_end() -> None:
    text = '{"a":1.50,"e":{"d":1e3}}'
    assert append_fields(text, {"resumed": True}) == '{"a":1.50,"e":{"d":1e3},"resumed":true}'
    assert append_fields("{}", {"x": "<"}) == '{"x":"\\u003c"}'
    assert append_fields(text, {}) == text
    with pytest.raises(WireError):
        append_fields("[1]", {"x": 1})


def request_with(**changes: Any) -> dict[str, Any]:
    """The reference signal (decoded) with `changes`; `event_<name>` changes the event."""
    signal: dict[str, Any] = json.loads(SIGNAL)
    for name, value in changes.items():
        target, key = (signal["event"], name[6:]) if name.startswith("event_") else (signal, name)
        if value is _DROP:
            del target[key]
        else:
            target[key] = value
    return signal


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_id": _DROP}, "event has no id"),
        ({"event_id": ""}, "event id is empty"),
        ({"event_id": 42}, "event id must be a string, got a number"),
        ({"event_id": {"a": 1}}, "event id must be a string, got an object"),
        ({"event_id": True}, "event id must be a string, got a boolean"),
        ({"event_source": _DROP}, "event has no source"),
        ({"event_source": ""}, "event source is empty"),
        ({"event_type": _DROP}, "event has no type"),
        ({"event_type": ["x"]}, "event type must be a string, got an array"),
        ({"event_specversion": _DROP}, "event has no specversion"),
        ({"event_specversion": "2.0"}, "event specversion must be 1.0 or 0.3, got '2.0'"),
        ({"event": {}}, "event has no specversion"),
        ({"event": {"Id": "1", "Source": "s", "Type": "t", "SpecVersion": "1.0"}},
         "event has no specversion"),
        ({"replyTo": "sink"}, "replyTo must be an http:// or https:// URL, got 'sink'"),
        ({"replyTo": "ftp://sink/x"}, "replyTo must be an http:// or https:// URL"),
        ({"replyTo": "http://"}, "replyTo has no host"),
        ({"replyTo": "http:///path"}, "replyTo has no host"),
        ({"replyTo": " http://sink"}, "replyTo"),
        ({"replyTo": "http://[::1"}, "replyTo is not a URL"),
        ({"replyTo": 5}, "replyTo must be a string"),
        ({"tag": "   "}, "tag is missing"),
        ({"tag": "t" * (MAX_TAG_LENGTH + 1)}, "tag is 257 characters long, over vSphere's 256"),
    ],
)  # fmt: skip
def test_a_signal_is_refused_naming_its_problem(changes: dict[str, Any], message: str) -> None:
    bad = request_with(**changes)
    with pytest.raises(WireError, match="^" + re.escape(message)):
        WorkflowRequest.from_wire(bad)
    with pytest.raises(WireError, match="^" + re.escape(message)):
        WorkflowRequest.from_json(go_json(bad))


@pytest.mark.parametrize(
    "changes",
    [{"event_id": _DROP}, {"event_id": 42}, {"event": {}}, {"replyTo": "sink"}, {"tag": "   "}],
)
def test_what_a_workflow_once_accepted_is_still_read_from_its_memory(
    changes: dict[str, Any],
) -> None:
    # Requests remembered across continue-as-new were taken before the rule, perhaps.
    loose = request_with(**changes)
    assert WorkflowRequest.from_json(go_json(loose), strict=False).to_wire()["tag"] == loose["tag"]


def test_the_limits_themselves_are_accepted() -> None:
    tag = "t" * MAX_TAG_LENGTH
    assert WorkflowRequest.from_wire(request_with(tag=tag)).tag == tag
    for reply_to in ("", "http://sink", "https://broker.ns.svc:8443/a?b=c", "http://10.0.0.1"):
        assert WorkflowRequest.from_wire(request_with(replyTo=reply_to)).reply_to == reply_to
    assert WorkflowRequest.from_wire(request_with(event_specversion="0.3")).event["id"]


def test_a_signal_is_judged_by_its_events_required_attributes_only() -> None:
    # The rule the workflow has read signals with since strict-signals: widening it to the
    # function's whole CloudEvents rule would refuse, on replay, signals a history took.
    loose = {**EVENT, "time": "soon", "Bad-Name": {"a": 1}, "subject": ""}
    request = WorkflowRequest.from_wire({"tag": "t", "criticality": "LOW", "event": loose})
    assert request.event == loose


def test_a_signal_over_the_size_limit_is_refused_and_one_under_it_taken() -> None:
    base = len(go_json(request_with(event_data="")))
    under = request_with(event_data="x" * (MAX_SIGNAL_BYTES - base))
    assert len(go_json(under)) == MAX_SIGNAL_BYTES
    assert WorkflowRequest.from_json(go_json(under)).event["data"].value() == under["event"]["data"]
    over = request_with(event_data="x" * (MAX_SIGNAL_BYTES - base + 1))
    too_large = f"^the signal is {MAX_SIGNAL_BYTES + 1} bytes, over {MAX_SIGNAL_BYTES}$"
    with pytest.raises(WireError, match=too_large):
        WorkflowRequest.from_wire(over)
    with pytest.raises(WireError, match=too_large):
        WorkflowRequest.from_json(go_json(over))
    # A 1.5 MB tag: refused for its length (the size would refuse it too).
    with pytest.raises(WireError, match=r"^tag is 1500000 characters long"):
        WorkflowRequest.from_wire(request_with(tag="t" * 1_500_000))
    # The raw text is measured before it is parsed: whitespace counts.
    padded = go_json(under)[:-1] + b" }"
    with pytest.raises(WireError, match="over"):
        WorkflowRequest.from_json(padded)


def test_what_the_go_programs_and_the_go_cli_send_is_taken() -> None:
    for path in [*FIXTURES.glob("02_*.json"), *(FIXTURES / "go").glob("*signal*")]:
        request = WorkflowRequest.from_json(path.read_bytes())
        assert request.event["id"] and request.event["specversion"] == "1.0", path
    # The Go CLI's default event: type PreempctlRunEvent, source preempctl-run.
    event = default_event(datetime.now(UTC))
    assert (event["type"], event["source"]) == (CLI_EVENT_TYPE, CLI_WORKFLOW_ID)
    cli = WorkflowRequest("preemptible", Criticality.HIGH, event)
    assert WorkflowRequest.from_json(go_json(cli.to_wire())) == cli


def test_check_says_why_a_built_request_cannot_be_sent() -> None:
    WorkflowRequest("t", Criticality.LOW, EVENT, reply_to="http://sink").check()
    with pytest.raises(WireError, match=r"^event has no id"):
        WorkflowRequest("t", Criticality.LOW, {k: v for k, v in EVENT.items() if k != "id"}).check()
    with pytest.raises(WireError, match=r"^replyTo"):
        WorkflowRequest("t", Criticality.LOW, EVENT, reply_to="not a url").check()
