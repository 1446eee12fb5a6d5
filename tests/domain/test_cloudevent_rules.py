"""The CloudEvents rules: what each reader refuses, and in which words."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.conftest import fixture_json
from vsphere_preemption.domain.cloudevent_rules import (
    Rule,
    attribute_problems,
    is_base64,
    is_rfc3339,
    required_problems,
    structured_problems,
)

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "757098cc-b275-41b6-ab52-f2966f9d714c",
    "source": "https://vcsa.mydomain.com/sdk",
    "type": "com.vmware.vsphere.AlarmStatusChangedEvent.v0",
    "subject": "AlarmStatusChangedEvent",
    "datacontenttype": "application/json",
    "dataschema": "https://example.com/schema",
    "time": "2024-05-14T09:31:27.123456789+02:00",
    "data": {"From": "green", "To": "red"},
    "eventclass": "event",
    "count": 7,
    "ratio": 2.5,
    "flag": True,
    "gone": None,
}

_DROP = object()


def event(**changes: Any) -> dict[str, Any]:
    out = dict(EVENT)
    for name, value in changes.items():
        if value is _DROP:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def test_real_events_and_every_kind_of_attribute_are_valid() -> None:
    assert structured_problems(EVENT) == []
    for name in ("01_old-router_AlarmStatusChangedEvent.json",
                 "02_old-router_PreemptVMsChan-signal-WorkflowRequest.json"):  # fmt: skip
        assert structured_problems(fixture_json(name)["event"]) == [], name
    assert structured_problems(event(data=_DROP, data_base64="aGk=")) == []
    assert structured_problems(event(data=_DROP)) == []  # no data at all is a CloudEvent


@pytest.mark.parametrize(
    ("changes", "rule", "text"),
    [
        ({"id": _DROP}, Rule.MISSING, "missing required attribute 'id'"),
        ({"source": None}, Rule.MISSING, "missing required attribute 'source'"),
        ({"type": 42}, Rule.NOT_A_STRING, "'type' must be a string, got a number"),
        ({"id": ["x"]}, Rule.NOT_A_STRING, "'id' must be a string, got an array"),
        ({"id": ""}, Rule.EMPTY, "'id' must not be empty"),
        (
            {"specversion": "2.0"},
            Rule.SPECVERSION,
            "'specversion' must be '1.0' or '0.3', got '2.0'",
        ),
        ({"subject": ""}, Rule.OPTIONAL, "'subject' must be a non-empty string when present"),
        (
            {"dataschema": 3},
            Rule.OPTIONAL,
            "'dataschema' must be a non-empty string when present, got a number",
        ),
        ({"datacontenttype": None}, Rule.OPTIONAL, "'datacontenttype' must be a non-empty string"),
        (
            {"time": 12},
            Rule.OPTIONAL,
            "'time' must be a non-empty string when present, got a number",
        ),
        (
            {"time": "yesterday"},
            Rule.TIME,
            "'time' must be an RFC 3339 timestamp like 2024-05-14T09:31:27Z, got 'yesterday'",
        ),
        (
            {"Alarm": "x", "my-ext": 1},
            Rule.NAME,
            "attribute names must be lower-case letters and digits: ['Alarm', 'my-ext']",
        ),
        ({"ext": {"a": 1}}, Rule.EXTENSION, "extension 'ext' must be a string, number or boolean"),
        ({"ext": [1]}, Rule.EXTENSION, "extension 'ext' must be a string, number or boolean"),
        ({"ext": 2**31}, Rule.EXTENSION, "extension 'ext' is out of range for a 32-bit integer"),
        ({"ext": -(2**31) - 1}, Rule.EXTENSION, "extension 'ext' is out of range"),
        ({"ext": math.nan}, Rule.EXTENSION, "extension 'ext' is out of range"),
        (
            {"data_base64": "aGk="},
            Rule.DATA_MEMBERS,
            "'data' and 'data_base64' must not both be present",
        ),
        (
            {"data": _DROP, "data_base64": "not base64!"},
            Rule.BASE64,
            "'data_base64' must be standard base64",
        ),
        (
            {"data": _DROP, "data_base64": "aGk=\n"},
            Rule.BASE64,
            "'data_base64' must be standard base64",
        ),
        (
            {"data": _DROP, "data_base64": 5},
            Rule.BASE64,
            "'data_base64' must be a string, got a number",
        ),
        (
            {"data": _DROP, "data_base64": None},
            Rule.BASE64,
            "'data_base64' must be a string, got null",
        ),
    ],
)
def test_each_rule_names_what_is_wrong(changes: dict[str, Any], rule: Rule, text: str) -> None:
    problems = structured_problems(event(**changes))
    assert [p.rule for p in problems] == [rule], problems
    assert text in str(problems[0])


def test_every_problem_is_reported_at_once_in_the_attributes_order() -> None:
    problems = structured_problems({"specversion": "1.0", "id": 1, "time": "soon", "Ext": []})
    assert [(p.rule, p.name) for p in problems] == [
        (Rule.NOT_A_STRING, "id"),
        (Rule.MISSING, "source"),
        (Rule.MISSING, "type"),
        (Rule.TIME, "time"),
        (Rule.NAME, ""),
        (Rule.EXTENSION, "Ext"),
    ]


def test_a_structured_event_must_be_an_object() -> None:
    (problem,) = structured_problems(["not", "an", "object"])
    assert (problem.rule, str(problem)) == (
        Rule.NOT_AN_OBJECT,
        "a structured CloudEvent must be a JSON object, got list",
    )


def test_the_versions_a_reader_takes() -> None:
    assert structured_problems(event(specversion="0.3", dataschema=_DROP)) == []
    (problem,) = structured_problems(event(specversion="0.3"), versions=("1.0",))
    assert str(problem) == "'specversion' must be '1.0', got '0.3'"
    # 0.3 names its optional attributes otherwise: schemaurl, datacontentencoding.
    (problem,) = structured_problems(event(specversion="0.3", dataschema=_DROP, schemaurl=""))
    assert problem.name == "schemaurl"
    assert structured_problems(event(dataschema=_DROP, schemaurl="")) == []  # 1.0: an extension


def test_0_3_base64_data_must_be_base64() -> None:
    base64_data = event(specversion="0.3", dataschema=_DROP, datacontentencoding="BASE64")
    assert structured_problems({**base64_data, "data": "eyJ4IjoxfQ=="}) == []
    (problem,) = structured_problems({**base64_data, "data": "eyJ4I oxfQ=="})
    assert str(problem) == "'data' must be standard base64"


def test_binary_mode_attributes_cannot_be_named_data_or_nothing() -> None:
    attributes = {k: v for k, v in EVENT.items() if k != "data"}
    problems = attribute_problems({**attributes, "data": "x", "": "y"})
    assert [p.rule for p in problems] == [Rule.NAME, Rule.RESERVED]
    assert "['']" in str(problems[0])
    assert str(problems[1]) == "attribute name 'data' is reserved for the event's data"


def test_the_signals_rule_is_the_required_attributes_only() -> None:
    # Whatever else is wrong, a signal's event is judged by these four (the workflow's rule).
    loose = {"specversion": "0.3", "id": "1", "source": "s", "type": "t", "time": "soon", "X": {}}
    assert required_problems(loose) == []
    assert [(p.rule, p.name) for p in required_problems({"id": "", "specversion": "9"})] == [
        (Rule.EMPTY, "id"),
        (Rule.MISSING, "source"),
        (Rule.MISSING, "type"),
        (Rule.SPECVERSION, "specversion"),
    ]


def test_a_long_refused_value_is_cut_in_the_message() -> None:
    (problem,) = structured_problems(event(time="x" * 10_000))
    assert len(str(problem)) < 200 and str(problem).endswith("...")


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-14T09:31:27Z",
        "2024-05-14T09:31:27z",
        "2024-05-14T09:31:27.123456789Z",
        "2024-05-14T09:31:27+23:59",
        "2024-05-14T09:31:27-00:00",
        "2024-02-29T00:00:00+01:00",
    ],
)
def test_rfc3339_times_that_are_taken(text: str) -> None:
    assert is_rfc3339(text)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-14T09:31:27",  # no offset: no instant
        "2024-05-14",
        "2024-05-14 09:31:27Z",  # ISO 8601 allows a space; RFC 3339 (and Go) do not
        "2024-05-14t09:31:27Z",
        "2024-05-14T09:31Z",  # seconds are not optional
        "20240514T093127Z",  # ISO 8601's basic format
        "2024-05-14T09:31:27+0100",
        "2024-05-14T09:31:27+01",
        "2024-05-14T09:31:27,5Z",
        "2024-05-14T09:31:27.Z",
        "2024-05-14T09:31:27+24:00",
        "2024-05-14T09:31:27+01:60",
        "2024-05-14T24:00:00Z",
        "2024-05-14T09:31:60Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        " 2024-05-14T09:31:27Z",
        "2024-05-14T09:31:27Z ",
        "\uff12\uff10\uff12\uff14-05-14T09:31:27Z",  # fullwidth digits: \d to Python, not RFC 3339
        "",
    ],
)
def test_times_that_are_refused(text: str) -> None:
    assert not is_rfc3339(text)


def test_base64_is_standard_and_strict() -> None:
    assert is_base64("aGk=") and is_base64("")
    for text in ("aGk", "aGk=\n", "aGk=!", "a-_=", "äGk="):
        assert not is_base64(text), text
