"""Raw JSON texts: kept as sent, compacted as Go compacts, written verbatim by go_json."""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES
from vsphere_preemption.rawjson import RawJSON, compact, members
from vsphere_preemption.wire import (
    WireError,
    WorkflowRequest,
    canonical_time,
    format_unix_ns,
    go_json,
)

GO_SIGNAL = (FIXTURES / "go" / "preemptctl-signal-WorkflowRequest.json").read_bytes()


def test_compact_drops_whitespace_outside_strings_only() -> None:
    text = '{ "a b" : [ 1.50 ,\n\t1e3 ] ,"c":"x \\" y" }'
    assert compact(text) == '{"a b":[1.50,1e3],"c":"x \\" y"}'


def test_go_json_writes_raw_text_verbatim_and_escapes_it_as_go_does() -> None:
    raw = RawJSON.parse(b'{"n": "caf\\u00e9", "p": 1.50, "h": "<&>"}')
    out = go_json({"b": 1, "data": raw, "l": [raw]})
    assert out == (b'{"b":1,"data":{"n":"caf\\u00e9","p":1.50,"h":"\\u003c\\u0026\\u003e"},'
                   b'"l":[{"n":"caf\\u00e9","p":1.50,"h":"\\u003c\\u0026\\u003e"}]}')  # fmt: skip


@pytest.mark.parametrize("text", ["{", "NaN", '{"a":Infinity}', "1 2", ""])
def test_raw_json_refuses_what_is_not_one_json_value(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        RawJSON.parse(text)


def test_members_give_each_value_as_its_text_in_order() -> None:
    text = ' { "a" : 1.50 , "b":{"c": [1e3]}, "a": "x" } '
    assert members(text) == [("a", "1.50"), ("b", '{"c": [1e3]}'), ("a", '"x"')]
    assert members("{}") == []
    for bad in ("[]", '{"a":1} x', '{"a" 1}', '{"a":1,}'):
        with pytest.raises(ValueError, match=r"expected|extra data|Expecting"):
            members(bad)


def test_the_go_cli_signal_round_trips_byte_for_byte() -> None:
    request = WorkflowRequest.from_json(GO_SIGNAL)
    assert isinstance(request.event["data"], RawJSON)
    assert go_json(request.to_wire()) == GO_SIGNAL


def test_non_json_data_is_a_decoded_string_as_go_keeps_it() -> None:
    text = ('{"tag":"t","criticality":"LOW","event":{"specversion":"1.0",'
            '"id":"1","source":"s","type":"t","datacontenttype":"application/xml",'
            '"data":"\\u003ca/\\u003e"},"replyTo":""}')  # fmt: skip
    request = WorkflowRequest.from_json(text)
    assert request.event["data"] == "<a/>"
    assert go_json(request.to_wire()).decode() == text


def test_a_signal_that_is_not_json_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        WorkflowRequest.from_json(b'{"tag":"t",')


@pytest.mark.parametrize(
    ("text", "go"),
    [
        ("2021-11-24T21:26:00.980410+01:00", "2021-11-24T20:26:00.98041Z"),
        ("2026-11-30T12:41:56.002932673Z", "2026-11-30T12:41:56.002932673Z"),
        ("2021-01-01T00:30:00.500-02:30", "2021-01-01T03:00:00.5Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ],
)
def test_canonical_time_is_go_rfc3339nano_in_utc(text: str, go: str) -> None:
    assert canonical_time(text) == go


def test_canonical_time_refuses_what_is_not_rfc3339() -> None:
    for bad in ("2021-11-24 21:26:00Z", "2021-11-24T21:26:00", "2021-13-01T00:00:00Z"):
        with pytest.raises(WireError):
            canonical_time(bad)


def test_unix_nanoseconds_format_without_trailing_zeros() -> None:
    assert format_unix_ns(1_764_506_516_002_932_673) == "2025-11-30T12:41:56.002932673Z"
    assert format_unix_ns(1_764_506_516_120_000_000) == "2025-11-30T12:41:56.12Z"
    assert format_unix_ns(1_764_506_516_000_000_000) == "2025-11-30T12:41:56Z"
