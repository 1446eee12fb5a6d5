"""A corpus of malformed requests for the running function, each with the answer it must get.

Every request is the exact bytes sent on the wire (tests/function/process.py's RawClient), so
framing, repeated headers and bytes no client library would send are all in reach. Built
from the real samples (tests/fixtures): an AlarmStatusChangedEvent for the function's alarm
with one thing broken at a time. `wrong_types` adds a request per field of the event's data
and per CloudEvents attribute, with each JSON type the field does not have.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.function.conftest import alarm_event, as_binary, as_structured
from tests.function.process import http_request

MIB = 1024 * 1024


@dataclass(frozen=True)
class Bad:
    name: str
    raw: bytes  # the whole request
    status: int  # the status it must get
    error: str = ""  # a fragment of the JSON reply's `error` ("" for the HTTP layer's own 400)
    # The server may close the connection after answering (HTTP-level errors, 413), or, for
    # a request head over its limit, before (it answers, then the close resets what the
    # client has not read yet): never for anything else.
    may_drop: bool = False


def _post(headers: list[tuple[str, str]], body: bytes, **kw: Any) -> bytes:
    return http_request("POST", "/", headers, body, **kw)


def _pairs(request: tuple[dict[str, str], bytes]) -> list[tuple[str, str]]:
    return list(request[0].items())


def _structured(event: dict[str, Any], **changes: Any) -> bytes:
    headers, _ = as_structured(event)
    return _post(list(headers.items()), json.dumps({**event, **changes}).encode())


def corpus(alarm: str) -> list[Bad]:
    """Hand-picked bad requests against a function for `alarm`."""
    event = alarm_event(alarm, "green", "red", event_id="corpus-1")
    headers, body = as_binary(event)
    head = _pairs((headers, body))
    no_ce_id = [(k, v) for k, v in head if k != "ce-id"]
    xml_head = _pairs(as_binary(alarm_event(alarm, "green", "red", xml=True)))
    s_headers = [("content-type", "application/cloudevents+json")]
    structured = json.dumps(event).encode()
    nested = b"[" * 100_000 + b"]" * 100_000
    attributes = {k: v for k, v in event.items() if k != "data"}
    chunk = b"x" * 65536
    streamed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    json_error = "data is not valid JSON"
    return [
        # Broken JSON and XML.
        Bad("truncated JSON", _post(head, body[: len(body) // 2]), 400, json_error),
        Bad("JSON with trailing text", _post(head, body + b"}"), 400, json_error),
        Bad("empty body", _post(head, b""), 400, "the event has no data"),
        Bad(
            "NaN in data",
            _post(head, body.replace(b'"ChangeTag": ""', b'"X": NaN')),
            400,
            "the signal is not JSON",
        ),
        Bad("a JSON array as data", _post(head, b"[1, 2]"), 400, "AlarmStatusChangedEvent"),
        Bad("a JSON string as data", _post(head, b'"green"'), 400, "AlarmStatusChangedEvent"),
        Bad("broken XML", _post(xml_head, b"<AlarmStatusChangedEvent><alarm>"), 400, "XML"),
        Bad(
            "XML with a DOCTYPE (entity expansion)",
            _post(xml_head, b'<!DOCTYPE a [<!ENTITY b "bbbbbbbb">]><a>&b;&b;</a>'),
            400,
            "DOCTYPE",
        ),
        Bad(
            "XML with an external entity",
            _post(xml_head, b'<!DOCTYPE a [<!ENTITY b SYSTEM "file:///etc/passwd">]><a>&b;</a>'),
            400,
            "DOCTYPE",
        ),
        Bad(
            "structured: broken JSON",
            _post(s_headers, structured[:-1]),
            400,
            "not a valid CloudEvent",
        ),
        Bad("structured: a JSON array", _post(s_headers, b"[{}]"), 400, "must be a JSON object"),
        Bad("structured: empty", _post(s_headers, b""), 400, "not a valid CloudEvent"),
        # Deeply nested and huge.
        Bad("100,000 nested arrays as data", _post(head, nested), 400, json_error),
        Bad(
            "100,000 nested objects as data",
            _post(head, b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
            400,
            json_error,
        ),
        Bad(
            "100,000 nested arrays, structured",
            _post(s_headers, nested),
            400,
            "not a valid CloudEvent",
        ),
        Bad(
            "100,000 nested arrays in structured data",
            _post(s_headers, json.dumps(attributes).encode()[:-1] + b', "data": ' + nested + b"}"),
            400,
            "not a valid CloudEvent",
        ),
        Bad(
            "100,000 nested XML elements",
            _post(xml_head, b"<a>" * 100_000 + b"</a>" * 100_000),
            400,
            "AlarmStatusChangedEvent",
        ),
        Bad(
            "a body announced over 1 MiB",
            _post(head, b"", length=False).replace(
                b"\r\n\r\n", b"\r\nContent-Length: 2000000\r\n\r\n"
            ),
            413,
            "over 1048576 bytes",
            may_drop=True,
        ),
        Bad(
            "a body streamed past 1 MiB (chunked)",
            _post([*head, ("Transfer-Encoding", "chunked")], streamed, length=False),
            413,
            "over 1048576 bytes",
            may_drop=True,
        ),
        Bad("a 20-digit Key", _post(head, body.replace(b"51141", b"9" * 20, 1)), 400, "Key"),
        Bad(
            "a 5,000-digit number",
            _post(head, body.replace(b"51141", b"9" * 5000, 1)),
            400,
            json_error,
        ),
        # Invalid UTF-8.
        Bad(
            "invalid UTF-8 in JSON data",
            _post(head, body.replace(b"green", b"gr\xffen")),
            400,
            "utf-8",
        ),
        Bad("invalid UTF-8 in XML data", _post(xml_head, b"<a>\xff\xfe</a>"), 400, "UTF-8"),
        Bad(
            "invalid UTF-8 in a structured event",
            _post(s_headers, structured.replace(b"corpus-1", b"corpus-\xc3")),
            400,
            "not a valid CloudEvent",
        ),
        Bad(
            "a lone surrogate escape as the alarm name",
            _post(head, body.replace(alarm.encode(), b"\\udc80")),
            200,
        ),  # another alarm
        # Wrong content types.
        Bad(
            "text/plain data",
            _post([*no_ce_id, ("ce-id", "ct-1")], body).replace(b"application/json", b"text/plain"),
            400,
            "unsupported datacontenttype",
        ),
        Bad(
            "no content type, not structured", _post([("ce-x", "1")], body), 400, "not a CloudEvent"
        ),
        Bad(
            "JSON data declared XML",
            _post([(k, "application/xml" if k == "content-type" else v) for k, v in head], body),
            400,
            "XML",
        ),
        Bad(
            "a batch of CloudEvents",
            _post(
                [("content-type", "application/cloudevents-batch+json")], b"[" + structured + b"]"
            ),
            400,
            "batched CloudEvents are not supported",
        ),
        Bad(
            "the CloudEvents XML format",
            _post([("content-type", "application/cloudevents+xml")], b"<event/>"),
            400,
            "unsupported CloudEvents format",
        ),
        Bad(
            "a plain JSON body, no CloudEvent",
            _post([("content-type", "application/json")], body),
            400,
            "not a CloudEvent",
        ),
        # Invalid or repeated CloudEvents attributes.
        Bad("no ce-id", _post(no_ce_id, body), 400, "missing required attribute 'id'"),
        Bad("an empty ce-id", _post([*no_ce_id, ("ce-id", "")], body), 400, "id"),
        Bad(
            "ce-id twice",
            _post([*head, ("ce-id", "corpus-2")], body),
            400,
            "header ce-id is repeated",
        ),
        Bad(
            "ce-source twice",
            _post([*head, ("ce-source", "https://evil/sdk")], body),
            400,
            "header ce-source is repeated",
        ),
        Bad(
            "content-type twice",
            _post([*head, ("content-type", "application/xml")], body),
            400,
            "header content-type is repeated",
        ),
        Bad(
            "ce-specversion 2.0",
            _post([(k, "2.0" if k == "ce-specversion" else v) for k, v in head], body),
            400,
            "'specversion' must be '1.0' or '0.3', got '2.0'",
        ),
        Bad(
            "a ce-time that is no time",
            _post([(k, "yesterday" if k == "ce-time" else v) for k, v in head], body),
            400,
            "not a valid CloudEvent",
        ),
        Bad(
            "an extension name with a dash",
            _post([*head, ("ce-my-ext", "1")], body),
            400,
            "not a valid CloudEvent",
        ),
        Bad(
            "structured: id twice",
            _post(s_headers, structured[:-1] + b', "id": "corpus-2"}'),
            400,
            "member 'id' is repeated",
        ),
        Bad(
            "structured: an id that is a number",
            _structured(event, id=42),
            400,
            "'id' must be a string, got a number",
        ),
        Bad(
            "structured: a time that is a number",
            _structured(event, time=1),
            400,
            "'time' must be a non-empty string when present, got a number",
        ),
        Bad(
            "structured: data and data_base64",
            _structured(event, data_base64="e30="),
            400,
            "not a valid CloudEvent",
        ),
        Bad(
            "structured: no attributes at all",
            _post(s_headers, json.dumps({"data": event["data"]}).encode()),
            400,
            "missing",
        ),
        # Header injection: bare CR/LF and NUL in values, folding, bad names, smuggling.
        Bad("CR inside a header value", _post([*head, ("ce-x", "a\rb")], body), 400, may_drop=True),
        # httptools refuses a bare LF in a head outright (its own 400, then it closes); were
        # it read as a line end, the second ce-id would be refused as repeated (unit-tested
        # in test_cloudevent_http.py).
        Bad(
            "a second ce-id smuggled after a bare LF",
            _post([*no_ce_id, ("ce-id", "corpus-3\nce-id: corpus-4")], body),
            400,
            may_drop=True,
        ),
        Bad("NUL in a header value", _post([*head, ("ce-x", "a\x00b")], body), 400, may_drop=True),
        Bad("a space before the colon", _post([*head, ("ce-x ", "a")], body), 400, may_drop=True),
        Bad(
            "two different Content-Lengths",
            _post([*head, ("Content-Length", str(len(body))), ("Content-Length", "5")], body),
            400,
            may_drop=True,
        ),
        Bad(
            "a negative Content-Length",
            _post([*head, ("Content-Length", "-1")], b""),
            400,
            may_drop=True,
        ),
        Bad(
            "a bad chunk size",
            _post(
                [*head, ("Transfer-Encoding", "chunked")], b"zz\r\nab\r\n0\r\n\r\n", length=False
            ),
            400,
            may_drop=True,
        ),
        Bad(
            "a request head of 200 KB",
            _post([*head, ("ce-x", "v" * 200_000)], body),
            400,
            may_drop=True,
        ),
        Bad("not HTTP at all", b"HELLO\r\n\r\n", 400, may_drop=True),
        # The wrong place.
        Bad("GET /", http_request("GET", "/", [], b""), 405, "POST CloudEvents here"),
        Bad("POST elsewhere", http_request("POST", "/events", head, body), 404, "Not Found"),
    ]


# One wrong value of each JSON type (the field's own type is skipped).
WRONG_VALUES: list[Any] = [None, True, 7, 2.5, "", "x" * 300, [], {}, [{"Name": "n"}]]


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))


def _set(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _same_type(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (not isinstance(a, str) or (a == "") == (b == ""))


@dataclass(frozen=True)
class Typed:
    name: str
    raw: bytes
    field: str  # the field or attribute whose type is wrong


def wrong_types(alarm: str) -> list[Typed]:
    """Every field of the event's data and every CloudEvents attribute of a raising event
    for `alarm`, given each wrong JSON type in turn (binary mode for data, structured for
    attributes, where a JSON type can be wrong at all)."""
    event = alarm_event(alarm, "green", "red", event_id="typed")
    head = _pairs(as_binary(event))
    found: list[Typed] = []
    for number, path in enumerate(_paths(event["data"])):
        original = event["data"]
        for key in path:
            original = original[key]
        for index, value in enumerate(WRONG_VALUES):
            if _same_type(original, value):
                continue
            data = copy.deepcopy(event["data"])
            _set(data, path, value)
            ids = [(k, f"typed-{number}-{index}" if k == "ce-id" else v) for k, v in head]
            name = "data." + ".".join(path)
            found.append(
                Typed(
                    f"{name} = {json.dumps(value)[:20]}",
                    _post(ids, json.dumps(data).encode()),
                    name,
                )
            )
    for name, original in event.items():
        if name == "data":
            continue
        for index, value in enumerate(WRONG_VALUES):
            if _same_type(original, value):
                continue
            fields = {**event, "id": f"typed-{name}-{index}", name: value}
            found.append(Typed(f"{name} = {json.dumps(value)[:20]}", _structured(fields), name))
    return found
