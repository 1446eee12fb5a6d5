"""`preemptctl workflow run` input: what is refused, and what is sent when accepted."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import FIXTURES, fixture_json
from vsphere_preemption.cli.workflow_input import (
    InvalidInput,
    build_request,
    cloud_event_problems,
    default_event,
    parse_criticality,
    parse_event,
)
from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.wire import WorkflowRequest, go_json

NOW = datetime(2024, 5, 1, 12, 0, 3, 250000, tzinfo=UTC)
# The example from the Go CLI's help text.
GO_HELP_EVENT = (
    '{"data":{"threshold":70,"current":87},"datacontenttype":"application/json",'
    '"id":"757098cc-b275-41b6-ab52-f2966f9d714c","source":"preemptctl","specversion":"1.0",'
    '"time":"2021-11-24T20:26:00.98041Z","type":"ThresholdExceededEvent"}'
)


@pytest.mark.parametrize(
    ("given", "sent"),
    [("LOW", Criticality.LOW), ("medium", Criticality.MEDIUM), (" High ", Criticality.HIGH)],
)
def test_criticality_is_accepted_in_any_case_and_sent_upper_case(
    given: str, sent: Criticality
) -> None:
    assert parse_criticality(given) is sent


@pytest.mark.parametrize("given", ["urgent", "", "CRITICAL", "lowest"])
def test_unknown_criticality_names_the_valid_ones(given: str) -> None:
    with pytest.raises(
        InvalidInput, match=r"--criticality .* is invalid \(valid: LOW, MEDIUM, HIGH\)"
    ):
        parse_criticality(given)


def test_the_go_help_example_event_is_sent_in_the_go_sdks_order() -> None:
    assert go_json(parse_event(GO_HELP_EVENT)) == (
        b'{"specversion":"1.0","id":"757098cc-b275-41b6-ab52-f2966f9d714c","source":"preemptctl",'
        b'"type":"ThresholdExceededEvent","datacontenttype":"application/json",'
        b'"time":"2021-11-24T20:26:00.98041Z","data":{"threshold":70,"current":87}}'
    )


def test_a_real_vcenter_alarm_event_is_accepted() -> None:
    event = fixture_json("01_old-router_AlarmStatusChangedEvent.json")["event"]
    # Already in Go's form (a Go function sent it): it goes out byte for byte.
    assert go_json(parse_event(json.dumps(event, indent=2))) == go_json(event)


def test_an_event_file_is_sent_as_the_go_cli_sends_it() -> None:
    text = (FIXTURES / "go" / "cli-input-event.json").read_text()
    go_signal = (FIXTURES / "go" / "preemptctl-signal-WorkflowRequest.json").read_bytes()
    go_reply_to = json.loads(go_signal)["replyTo"]
    request = build_request(
        tag="preemptible", criticality="HIGH", event=text, reply_to=go_reply_to, now=NOW
    )
    # Attribute order, time in UTC, data as given (caf\u00e9, 1.50, 1e3) but compacted.
    assert go_json(request.to_wire()) == go_signal


def test_extensions_are_sent_as_go_converts_them() -> None:
    event = parse_event(json.dumps({**_event(count=7.9, flag=True, zone="eu"), "gone": None}))
    assert list(event)[-3:] == ["count", "flag", "zone"]
    assert (event["count"], event["flag"], event["zone"]) == (7, True, "eu")


def test_base64_data_is_sent_re_encoded() -> None:
    event = parse_event(json.dumps(_event(data=None, data_base64="aGk=")))
    assert event["data_base64"] == "aGk="
    assert list(event)[-1] == "data_base64"


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(GO_HELP_EVENT)
    for key, value in changes.items():
        if value is None:
            event.pop(key)
        else:
            event[key] = value
    return event


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (_event(specversion=None), "missing required attribute 'specversion'"),
        (_event(id=None), "missing required attribute 'id'"),
        (_event(source=None), "missing required attribute 'source'"),
        (_event(type=None), "missing required attribute 'type'"),
        (_event(id=""), "'id' must not be empty"),
        (_event(id=42), "'id' must be a string"),
        (_event(specversion="0.3"), "'specversion' must be '1.0', got '0.3'"),
        (_event(time="yesterday"), "'time' must be an RFC 3339 timestamp"),
        (_event(subject=""), "'subject' must be a non-empty string when present"),
        (_event(data_base64="AA=="), "'data' and 'data_base64' must not both be present"),
        (_event(Alarm="x"), "attribute names must be lower-case letters and digits: ['Alarm']"),
        (["not", "an", "object"], "must be a JSON object, got list"),
        (_event(ext={"a": 1}), "extension 'ext' must be a string, number or boolean"),
        (_event(ext=2**31), "extension 'ext' is out of range for a 32-bit integer"),
        (_event(datacontenttype="application/xml"), "'data' must be a string when"),
        (_event(data=None, data_base64="not base64!"), "'data_base64' must be standard base64"),
    ],
)
def test_cloud_event_problems_say_what_is_wrong(event: Any, problem: str) -> None:
    problems = cloud_event_problems(event)
    assert any(problem in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = cloud_event_problems({"specversion": "1.0", "time": "soon"})
    assert len(problems) == 4  # id, source, type missing; time unreadable


def test_event_that_is_not_json_is_refused_with_the_parser_message() -> None:
    with pytest.raises(InvalidInput, match=r"^--event is not valid JSON: Expecting"):
        parse_event('{"specversion": "1.0",')


def test_event_that_is_not_a_cloud_event_is_refused_listing_the_problems() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_event('{"hello": "world"}')
    message = str(caught.value)
    assert message.startswith("--event is not a CloudEvent: ")
    for name in ("specversion", "id", "source", "type"):
        assert f"missing required attribute {name!r}" in message


def test_default_event_is_the_go_clis_preempctl_run_event() -> None:
    event = default_event(NOW, new_id=lambda: "fixed-id")
    assert event == {
        "specversion": "1.0",
        "id": "fixed-id",
        "source": "preempctl-run",
        "type": "PreempctlRunEvent",
        "time": "2024-05-01T12:00:03.25Z",
    }
    assert cloud_event_problems(event) == []


def test_default_event_ids_are_fresh_uuids() -> None:
    first, second = default_event(NOW)["id"], default_event(NOW)["id"]
    assert first != second
    assert len(first) == 36 and first.count("-") == 4


def test_build_request_with_defaults() -> None:
    request = build_request(tag="preemptible", criticality="low", event="", reply_to="", now=NOW)
    wire = request.to_wire()
    assert wire["tag"] == "preemptible"
    assert wire["criticality"] == "LOW"
    assert wire["replyTo"] == ""
    assert wire["event"]["type"] == "PreempctlRunEvent"
    assert wire["event"]["time"] == "2024-05-01T12:00:03.25Z"


def test_build_request_with_event_and_reply_to() -> None:
    request = build_request(
        tag="gpu-batch",
        criticality="HIGH",
        event=GO_HELP_EVENT,
        reply_to="https://broker.corp.local",
        now=NOW,
    )
    wire = json.loads(go_json(request.to_wire()))
    assert wire == {
        "tag": "gpu-batch",
        "criticality": "HIGH",
        "event": json.loads(GO_HELP_EVENT),
        "replyTo": "https://broker.corp.local",
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"tag": " "}, "--tag must not be empty"),
        ({"reply_to": "broker.corp.local"}, "--reply-to must be an http:// or https:// URL"),
        ({"reply_to": "ftp://broker"}, "--reply-to must be an http:// or https:// URL"),
        ({"reply_to": "http://"}, "--reply-to has no host"),
        ({"reply_to": "http://[::1"}, "--reply-to is not a URL"),
        ({"tag": "t" * 257}, "--tag is 257 characters long, over vSphere's 256"),
        (
            {"event": json.dumps({**_event(), "data": "x" * (1024 * 1024)})},
            "the request would be dropped by the workflow: the signal is 10",
        ),
        ({"criticality": "severe"}, "--criticality 'severe' is invalid"),
        ({"event": "{}"}, "--event is not a CloudEvent"),
        ({"entity": "cluster-7"}, "the type of a cluster- moref is unknown"),
        ({"policy_override": '{"maxVMs": -1}'}, "maxVMs must be at least 1"),
    ],
)
def test_build_request_refuses_bad_flags(flags: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"tag": "preemptible", "criticality": "LOW", "event": ""}
    values = values | {"reply_to": ""} | flags
    with pytest.raises(InvalidInput, match=re.escape(message)):
        build_request(**values, now=NOW)


def test_what_run_sends_at_the_limits_is_what_the_workflow_takes() -> None:
    request = build_request(
        tag="t" * 256, criticality="HIGH", event="", reply_to="https://sink:8443/x", now=NOW
    )
    assert WorkflowRequest.from_json(go_json(request.to_wire())) == request
