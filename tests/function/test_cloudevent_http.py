"""CloudEvents over HTTP: both content modes in, the Go SDK's structured JSON out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.function.conftest import (
    alarm_event,
    as_binary,
    as_structured,
    reference_event,
)
from vsphere_preemption.domain.cloudevent_rules import structured_problems
from vsphere_preemption.domain.events import JsonData, UndecodableData, XmlData
from vsphere_preemption.function.cloudevent_http import (
    STRUCTURED,
    NotACloudEvent,
    RequestHeaders,
    parse,
    structured_json,
)
from vsphere_preemption.rawjson import members
from vsphere_preemption.wire import go_json


def roundtrip(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    event = parse(headers, body)
    return structured_json(event, event.data())


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_the_reference_event_comes_out_as_go_marshals_it(mode: str) -> None:
    reference = reference_event()
    request = as_binary(reference) if mode == "binary" else as_structured(reference)
    out = roundtrip(*request)
    # Same fields, same order, same bytes as the Go function's signal carried.
    assert list(out) == list(reference)
    assert go_json(out) == go_json(reference)


def test_binary_mode_attributes_data_and_extensions() -> None:
    headers, body = as_binary(reference_event())
    event = parse(headers, body)
    assert event.mode == "binary"
    assert event.id == "d65a8ad1-7d3c-4f72-ace4-e3f2883c4475"
    assert event.attributes["time"] == datetime(2021, 11, 5, 13, 13, 49, 993999, tzinfo=UTC)
    assert event.attributes["vsphereapiversion"] == "6.7.3"
    assert event.raw_data == body
    data = event.data()
    assert isinstance(data, JsonData) and data.value["To"] == "red"


def test_percent_encoded_header_values_are_decoded() -> None:
    headers, body = as_binary(reference_event())
    headers["ce-source"] = "https%3A%2F%2Fvcsa%20one%2Fsdk"
    assert parse(headers, body).attributes["source"] == "https://vcsa one/sdk"


def test_xml_data_is_embedded_as_a_string() -> None:
    event = alarm_event("a1", "green", "red", xml=True)
    for request in (as_binary(event), as_structured(event)):
        parsed = parse(*request)
        data = parsed.data()
        assert isinstance(data, XmlData)
        out = structured_json(parsed, data)
        assert out["data"] == event["data"]
        assert out["datacontenttype"] == "application/xml"
        assert list(out)[-2:] == ["eventclass", "vsphereapiversion"]
        # Go's encoder escapes <, > and & inside strings.
        assert b"\\u003cAlarmStatusChangedEvent\\u003e" in go_json(out)


def test_no_id_or_time_is_invented() -> None:
    event = alarm_event("a1", "green", "red")
    del event["time"]
    out = roundtrip(*as_binary(event))
    assert "time" not in out
    assert out["id"] == event["id"]


def test_times_come_out_in_utc_go_style() -> None:
    event = alarm_event("a1", "green", "red")
    event["time"] = "2021-11-05T14:13:49.990+01:00"
    assert roundtrip(*as_structured(event))["time"] == "2021-11-05T13:13:49.99Z"


def test_structured_data_base64_stays_base64() -> None:
    event = alarm_event("a1", "green", "red")
    raw = json.dumps(event.pop("data")).encode()
    event["data_base64"] = base64.b64encode(raw).decode()
    parsed = parse(*as_structured(event))
    data = parsed.data()
    assert isinstance(data, JsonData) and data.value["To"] == "red"
    out = structured_json(parsed, data)
    assert out["data_base64"] == event["data_base64"] and "data" not in out


def test_cloudevents_0_3_are_accepted() -> None:
    event = alarm_event("a1", "green", "red")
    event["specversion"] = "0.3"
    assert roundtrip(*as_binary(event))["specversion"] == "0.3"


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"content-type": "application/json"}, b"{}", "no ce-specversion header"),
        ({}, b"", "no ce-specversion header"),
        ({"ce-specversion": "1.0", "ce-source": "s", "ce-type": "t"}, b"{}",
         "missing required attribute 'id'"),
        ({"ce-specversion": "2.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"}, b"", "2.0"),
        (
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t",
             "ce-time": "yesterday"},
            b"", "not a valid CloudEvent",
        ),
        (
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t",
             "ce-time": "2021-11-05T13:13:49"},
            b"", "'time' must be an RFC 3339 timestamp like 2024-05-14T09:31:27Z",
        ),
        (
            {"ce-specversion": "1.0", "ce-id": "", "ce-source": "s", "ce-type": "t"},
            b"", "not a valid CloudEvent",
        ),
        ({"content-type": "application/cloudevents+json"}, b"{not json", "not a valid"),
        ({"content-type": "application/cloudevents+json"}, b"[1, 2]", "must be a JSON object"),
        ({"content-type": "application/cloudevents+json"}, b"\xff\xfe", "not a valid"),
        ({"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0"}', "missing"),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", "batched"),
        ({"content-type": "application/cloudevents+xml"}, b"<a/>", "unsupported CloudEvents"),
    ],
)  # fmt: skip
def test_requests_that_are_not_cloudevents(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(NotACloudEvent, match=reason) as info:
        parse(headers, body)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [{"id": ""}, {"time": "2021-11-05 13:13:49Z", "subject": ""}, {"specversion": "2.0"},
     {"ext": {"a": 1}}, {"data_base64": "aGk="}, {"source": None, "My-Ext": "1"}],
)  # fmt: skip
def test_the_function_refuses_by_the_cloudevent_rules_naming_every_problem(
    changes: dict[str, Any],
) -> None:
    event = {**alarm_event("a1", "green", "red"), **changes}
    problems = structured_problems(event)
    assert problems
    with pytest.raises(NotACloudEvent) as info:
        parse(*as_structured(event))
    assert str(info.value) == "not a valid CloudEvent: " + "; ".join(map(str, problems))
    binary = {k: v for k, v in changes.items() if isinstance(v, str) and k != "data_base64"}
    if binary:  # the same rules for the same attributes in headers
        headers, body = as_binary(alarm_event("a1", "green", "red"))
        headers.update({f"ce-{k.lower()}": v for k, v in binary.items()})
        with pytest.raises(NotACloudEvent, match="not a valid CloudEvent: "):
            parse(headers, body)


@pytest.mark.parametrize("name", ["ce-id", "ce-source", "ce-specversion", "content-type"])
def test_an_attribute_header_sent_twice_is_refused_not_picked(name: str) -> None:
    headers, body = as_binary(alarm_event("a1", "green", "red"))
    pairs = list(headers.items())
    pairs.append((name, "application/xml" if name == "content-type" else "other"))
    # The app's view of the request: every header line read, the first value kept.
    with pytest.raises(NotACloudEvent, match=f"header {name} is repeated"):
        parse(RequestHeaders(pairs), body)
    # Once each: the same request is an event.
    assert parse(RequestHeaders(pairs[:-1]), body).id


def test_a_member_repeated_in_a_structured_event_is_refused() -> None:
    headers, body = as_structured(alarm_event("a1", "green", "red", event_id="first"))
    with pytest.raises(NotACloudEvent, match="member 'id' is repeated"):
        parse(headers, body[:-1] + b', "id": "second"}')


@pytest.mark.parametrize(
    ("member", "value", "reason"),
    [("id", 42, "'id' must be a string, got a number"),
     ("time", 1, "'time' must be a non-empty string when present, got a number"),
     ("data_base64", 5, "'data_base64' must be a string, got a number")],
)  # fmt: skip
def test_structured_attributes_of_the_wrong_json_type_say_which(
    member: str, value: Any, reason: str
) -> None:
    event = alarm_event("a1", "green", "red")
    if member == "data_base64":
        del event["data"]
    headers, _ = as_structured(event)
    with pytest.raises(NotACloudEvent, match=reason):
        parse(headers, json.dumps({**event, member: value}).encode())


def test_structured_events_with_bad_attribute_types() -> None:
    event = alarm_event("a1", "green", "red")
    event["time"] = 12
    with pytest.raises(NotACloudEvent, match="not a valid CloudEvent"):
        parse(*as_structured(event))
    event = alarm_event("a1", "green", "red")
    event["Bad-Extension"] = "x"
    with pytest.raises(NotACloudEvent, match="not a valid CloudEvent"):
        parse(*as_structured(event))


def test_binary_data_that_is_not_json_is_the_domains_to_refuse() -> None:
    headers, _ = as_binary(alarm_event("a1", "green", "red"))
    event = parse(headers, b"{not json")  # the event itself is fine
    with pytest.raises(UndecodableData, match="not valid JSON"):
        event.data()
    headers["content-type"] = "application/octet-stream"
    with pytest.raises(UndecodableData, match="unsupported datacontenttype"):
        parse(headers, b"\x00\x01").data()


GO_SIGNAL = (FIXTURES / "go" / "preemptctl-signal-WorkflowRequest.json").read_text()
GO_EVENT = dict(members(GO_SIGNAL))["event"]  # the event as Go's CloudEvents SDK wrote it
CLI_INPUT = (FIXTURES / "go" / "cli-input-event.json").read_bytes()


def test_structured_data_keeps_the_bytes_that_arrived_as_go_does() -> None:
    # The same SDK call (Event.UnmarshalJSON, then MarshalJSON) is what the Go function
    # does with a structured request and what the Go CLI did with this --event.
    out = go_json(roundtrip({"content-type": STRUCTURED}, CLI_INPUT)).decode()
    assert out == GO_EVENT
    assert '"name":"caf\\u00e9","price":1.50,"big":1e3' in out


def test_binary_data_keeps_the_bytes_that_arrived_as_go_does() -> None:
    event = json.loads(CLI_INPUT)
    headers = {f"ce-{k}": v for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = event["datacontenttype"]
    body = dict(members(CLI_INPUT))["data"].encode()  # pretty-printed: Go compacts it
    assert b"\n" in body
    assert go_json(roundtrip(headers, body)).decode() == GO_EVENT


def test_time_keeps_nanoseconds_as_go_does() -> None:
    headers, body = as_binary(alarm_event("a", "green", "red"))
    headers["ce-time"] = "2021-11-24T21:26:00.123456789+01:00"
    assert roundtrip(headers, body)["time"] == "2021-11-24T20:26:00.123456789Z"
    structured = {**json.loads(CLI_INPUT), "time": "2021-11-24T20:26:00.100000000Z"}
    _, text = as_structured(structured)
    assert roundtrip({"content-type": STRUCTURED}, text)["time"] == "2021-11-24T20:26:00.1Z"
