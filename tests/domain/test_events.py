"""Decoding AlarmStatusChangedEvents: both event shapes, JSON in any letter case, and XML."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import fixture_json, fixture_text
from vsphere_preemption.domain.events import (
    OLD_ROUTER_SUBJECT,
    OLD_ROUTER_TYPE,
    TANZU_SOURCES_TYPE,
    AlarmChange,
    EventShape,
    JsonData,
    NotAnAlarmEvent,
    UndecodableData,
    XmlData,
    alarm_entity,
    data_from_body,
    data_from_structured,
    decode,
    event_shape,
    is_json_content_type,
    is_xml_content_type,
)
from vsphere_preemption.domain.model import MoRef

OLD = {"id": "ev-1", "type": OLD_ROUTER_TYPE, "subject": OLD_ROUTER_SUBJECT}
NEW = {"id": "4711", "type": TANZU_SOURCES_TYPE}
XML = fixture_text("07_new-tanzu-sources_AlarmStatusChangedEvent_data.xml")


def fixture_01_data() -> dict[str, Any]:
    data: dict[str, Any] = fixture_json("01_old-router_AlarmStatusChangedEvent.json")["event"][
        "data"
    ]
    return data


def recase(value: Any, how: Callable[[str], str]) -> Any:
    """The same document with every key (at every level) spelled another way."""
    if isinstance(value, dict):
        return {how(k): recase(v, how) for k, v in value.items()}
    return value


def alternate(key: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(key))


def lower_camel(key: str) -> str:
    return key[:1].lower() + key[1:]


def test_the_old_router_shape_with_json_data() -> None:
    event = fixture_json("01_old-router_AlarmStatusChangedEvent.json")["event"]
    change = decode(event, JsonData(event["data"]))
    assert change == AlarmChange(
        event_id="15c7f3f5-072d-4cc8-994b-773992b78979",
        event_type=OLD_ROUTER_TYPE,
        shape=EventShape.OLD_ROUTER,
        alarm_name="cluster-cpu-above-80",
        alarm_ref="alarm-282",
        from_status="green",
        to_status="red",
        entity_name="10.161.167.160",
        entity=MoRef("host-27", "HostSystem"),
        message="Alarm 'cluster-cpu-above-80' on 10.161.167.160 changed from Green to Red",
        key=15158,
        created_time=datetime(2021, 11, 5, 13, 2, 32, 966000, tzinfo=UTC),
    )


@pytest.mark.parametrize("attributes", [OLD, NEW], ids=["old-router", "tanzu-sources"])
def test_data_without_the_optional_keys_in_both_shapes(attributes: dict[str, str]) -> None:
    body = json.dumps(fixture_json("05_AlarmStatusChangedEvent_data_green-to-yellow.json"))
    change = decode(attributes, data_from_body(body.encode(), "application/json"))
    assert (change.alarm_name, change.from_status, change.to_status) == (
        "test-04",
        "green",
        "yellow",
    )
    assert change.shape is (
        EventShape.OLD_ROUTER if attributes is OLD else EventShape.TANZU_SOURCES
    )
    assert change.event_id == attributes["id"]


def test_the_tanzu_sources_xml_encoding() -> None:
    change = decode(NEW, data_from_body(XML.encode(), "application/xml"))
    assert change.shape is EventShape.TANZU_SOURCES
    assert (change.alarm_name, change.alarm_ref) == ("cluster-cpu-above-80", "alarm-101")
    assert (change.from_status, change.to_status) == ("green", "red")
    # &#39; is an apostrophe, as Go's encoder escapes it.
    assert change.message == "Alarm 'cluster-cpu-above-80' on cls changed from Green to Red"
    assert change.key == 4711
    assert change.entity_name == "cls"
    assert change.created_time == datetime(2024, 5, 14, 9, 31, 27, 123999, tzinfo=UTC)


@pytest.mark.parametrize(
    "how",
    [str.lower, str.upper, str.swapcase, alternate, lower_camel],
    ids=["lower", "upper", "swapcase", "alternating", "lower-camel"],
)
def test_json_field_names_match_in_any_letter_case_at_every_level(
    how: Callable[[str], str],
) -> None:
    expected = decode(OLD, JsonData(fixture_01_data()))
    assert decode(OLD, JsonData(recase(fixture_01_data(), how))) == expected


def test_a_later_key_overrides_an_earlier_one_in_any_case_as_in_go() -> None:
    assert decode(OLD, JsonData({"To": "red", "to": "green"})).to_status == "green"
    assert decode(OLD, JsonData({"to": "green", "To": "red"})).to_status == "red"


def test_null_leaves_a_value_and_repeated_objects_merge_as_in_go() -> None:
    data = {"To": "red", "to": None, "Alarm": {"Name": "a1"}, "alarm": {"alarm": {"Value": "x"}}}
    change = decode(OLD, JsonData(data))
    assert change.to_status == "red"
    assert (change.alarm_name, change.alarm_ref) == ("a1", "x")


def test_unknown_fields_are_ignored() -> None:
    change = decode(OLD, JsonData({**fixture_01_data(), "Template": False, "Extra": [1, 2]}))
    assert change.alarm_name == "cluster-cpu-above-80"


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"From": 1}, "data.From must be a string"),
        ({"Alarm": "cluster-cpu-above-80"}, "data.Alarm must be a JSON object"),
        ({"Alarm": {"Name": ["x"]}}, "data.Alarm.Name must be a string"),
        ({"Key": 1.5}, "data.Key must be an integer"),
        ({"Key": True}, "data.Key must be an integer"),
        ({"Key": 2**31}, "data.Key is out of range"),
        ({"CreatedTime": "yesterday"}, "data.CreatedTime is not an RFC 3339 time"),
        ({"CreatedTime": "2021-11-05T13:02:32"}, "data.CreatedTime is not an RFC 3339 time"),
        ({"Host": "esx01"}, "data.Host must be a JSON object"),
        ({"Entity": {"Entity": {"Value": 5}}}, "data.Entity.Entity.Value must be a string"),
        ([fixture_01_data()], "data must be a JSON object, got an array"),
        ("a string", "data must be a JSON object, got a string"),
    ],
)
def test_a_value_of_the_wrong_type_is_undecodable(data: Any, where: str) -> None:
    with pytest.raises(UndecodableData, match=where):
        decode(OLD, JsonData(data))


def test_a_null_or_absent_data_is_undecodable() -> None:
    with pytest.raises(UndecodableData, match="no data"):
        decode(OLD, JsonData(None))
    with pytest.raises(UndecodableData, match="no data"):
        decode(OLD, None)


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"type": "com.vmware.vsphere.DrsVmPoweredOnEvent.v0"}, "DrsVmPoweredOnEvent"),
        ({"type": OLD_ROUTER_TYPE, "subject": "DrsVmPoweredOnEvent"}, "DrsVmPoweredOnEvent"),
        ({"type": OLD_ROUTER_TYPE}, "subject None"),
        ({"type": "com.vmware.vsphere.alarmstatuschangedevent.v0"}, "alarmstatuschangedevent"),
        ({}, "type None"),
    ],
)
def test_other_events_are_not_alarm_events(attributes: dict[str, str], reason: str) -> None:
    with pytest.raises(NotAnAlarmEvent, match=reason) as info:
        decode(attributes, JsonData(fixture_01_data()))
    assert "\n" not in str(info.value)


def test_the_new_shape_carries_other_information_in_its_subject() -> None:
    assert event_shape(TANZU_SOURCES_TYPE, "vcsa.mydomain.com") is EventShape.TANZU_SOURCES


@pytest.mark.parametrize(
    ("content_type", "json_", "xml"),
    [
        (None, True, False),
        ("", True, False),
        ("application/json", True, False),
        ("Application/JSON; charset=utf-8", True, False),
        ("text/json", True, False),
        ("application/vnd.vmware+json", True, False),
        ("application/xml", False, True),
        ("text/xml; charset=utf-8", False, True),
        ("application/atom+xml", False, True),
        ("text/plain", False, False),
    ],
)
def test_content_types(content_type: str | None, json_: bool, xml: bool) -> None:
    assert is_json_content_type(content_type) is json_
    assert is_xml_content_type(content_type) is xml


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"", "application/json", "no data"),
        (b"  \n", "application/xml", "no data"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe<a/>", "application/xml", "not UTF-8"),
        (b"<AlarmStatusChangedEvent><from>", "application/xml", "not valid XML"),
        (XML.encode(), None, "not valid JSON"),  # no content type means JSON, as in Go
        (b"from green to red", "text/plain", "unsupported datacontenttype 'text/plain'"),
    ],
)
def test_undecodable_bodies(body: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(UndecodableData, match=reason) as info:
        decode(NEW, data_from_body(body, content_type))
    assert "\n" not in str(info.value)


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<AlarmStatusChangedEvent><alarm><name>&lol3;</name></alarm></AlarmStatusChangedEvent>"
)
XXE = (
    '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<AlarmStatusChangedEvent><alarm><name>&x;</name></alarm></AlarmStatusChangedEvent>"
)


@pytest.mark.parametrize("text", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_xml_with_a_doctype_is_refused(text: str) -> None:
    with pytest.raises(UndecodableData, match="DOCTYPE"):
        decode(NEW, data_from_body(text.encode(), "application/xml"))


def test_xml_element_names_match_exactly_as_in_go() -> None:
    # Go's encoding/xml is case-sensitive: <From> is not govmomi's <from>.
    text = XML.replace("<from>green</from>", "<From>green</From>")
    assert decode(NEW, XmlData(text)).from_status == ""


def test_xml_namespaces_unknown_elements_and_whitespace() -> None:
    text = (
        '<AlarmStatusChangedEvent xmlns="urn:vim25"><key> 12 </key><unknown><to>x</to></unknown>'
        '<alarm><name>a1</name><alarm type="Alarm">alarm-7</alarm></alarm>'
        "<from>gray</from><to>yellow</to></AlarmStatusChangedEvent>"
    )
    change = decode(NEW, XmlData(text))
    assert (change.key, change.alarm_name, change.alarm_ref) == (12, "a1", "alarm-7")
    assert (change.from_status, change.to_status) == ("gray", "yellow")


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("<key>12a</key>", "data.Key must be an integer"),
        ("<key>1_000</key>", "data.Key must be an integer"),
        ("<key>+-5</key>", "data.Key must be an integer"),
        ("<chainId>99999999999</chainId>", "data.ChainId is out of range"),
        ("<createdTime>today</createdTime>", "data.CreatedTime is not an RFC 3339 time"),
    ],
)
def test_xml_values_of_the_wrong_type(snippet: str, reason: str) -> None:
    text = f"<AlarmStatusChangedEvent>{snippet}</AlarmStatusChangedEvent>"
    with pytest.raises(UndecodableData, match=reason):
        decode(NEW, XmlData(text))


def test_structured_data_is_already_parsed_json_or_an_xml_string() -> None:
    assert data_from_structured({"To": "red"}, "application/json") == JsonData({"To": "red"})
    assert data_from_structured(XML, "application/xml") == XmlData(XML)
    assert data_from_structured(XML.encode(), "application/xml") == XmlData(XML)  # data_base64
    with pytest.raises(UndecodableData, match="embedded as a JSON string"):
        data_from_structured({"to": "red"}, "application/xml")
    with pytest.raises(UndecodableData, match="no data"):
        data_from_structured(None, "application/json")
    with pytest.raises(UndecodableData, match="unsupported datacontenttype"):
        data_from_structured("x", "text/plain")
    # A JSON string holding JSON is not an object, as the Go decoder sees it.
    with pytest.raises(UndecodableData, match="got a string"):
        decode(OLD, data_from_structured(json.dumps(fixture_01_data()), "application/json"))


def test_the_alarmed_entity_of_an_xml_event() -> None:
    xml = fixture_text("07_new-tanzu-sources_AlarmStatusChangedEvent_data.xml").strip()
    change = decode(NEW, XmlData(xml))
    assert change.entity == MoRef("domain-c7", "ClusterComputeResource")
    assert change.entity_name == "cls"


def test_alarm_entity_reads_a_structured_event_whole() -> None:
    event = fixture_json("01_old-router_AlarmStatusChangedEvent.json")["event"]
    assert alarm_entity(event) == MoRef("host-27", "HostSystem")
    xml = fixture_text("07_new-tanzu-sources_AlarmStatusChangedEvent_data.xml").strip()
    as_xml = {**NEW, "datacontenttype": "application/xml", "data": xml}
    assert alarm_entity(as_xml) == MoRef("domain-c7", "ClusterComputeResource")


@pytest.mark.parametrize(
    "event",
    [
        {"specversion": "1.0", "id": "1", "source": "preemptctl", "type": "PreempctlRunEvent"},
        {**NEW, "data": {"Entity": {"Name": "x"}}},  # no reference in it
        {**NEW, "data": "not an object"},
    ],
)
def test_alarm_entity_is_none_when_the_event_names_none(event: dict[str, Any]) -> None:
    assert alarm_entity(event) is None
