"""CloudEvents over HTTP in (binary and structured content mode), structured JSON out.

What makes a valid CloudEvent is domain/cloudevent_rules.py's to say, of the attributes as
they were sent. Reading them is short, and ours rather than the SDK's, whose event classes
judge by rules of their own (any ISO 8601 `time`, extension values unchecked) and invent an
`id` and a `time` when they are missing, neither of which may reach the workflow:

- binary mode: the attributes are the `ce-*` headers, percent-decoded, and `content-type`;
  the body (`data`) is read by the domain per its content type;
- structured mode: the attributes are the members of the JSON object, but for `data` and
  `data_base64`; a member that comes twice is refused, as is a header sent twice.

`structured_json` renders the event as the Go SDK marshals it into the signal (field order
specversion, id, source, type, subject, datacontenttype, dataschema, time, data, extensions),
JSON `data` as the text that arrived and `time` with its nanoseconds (docs/wire.md).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from vsphere_preemption.domain.cloudevent_rules import (
    DATA_MEMBERS,
    Problem,
    attribute_problems,
    is_base64_data,
    structured_problems,
)
from vsphere_preemption.domain.events import (
    EventData,
    JsonData,
    XmlData,
    data_from_body,
    data_from_structured,
    media_type,
)
from vsphere_preemption.domain.text import one_line
from vsphere_preemption.rawjson import RawJSON, members
from vsphere_preemption.wire import (
    CE_ATTRIBUTE_ORDER,
    canonical_time,
    format_time,
    is_go_json_media,
    parse_time,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_CE = "ce-"


class NotACloudEvent(ValueError):
    """The request is not a CloudEvent we accept; the message is one line."""


@dataclass(frozen=True)
class IncomingEvent:
    mode: str  # "binary" | "structured"
    attributes: Mapping[str, Any]  # as received; `time` parsed to a timezone-aware datetime
    raw_data: bytes | None  # the body (binary mode) or the decoded `data_base64`
    embedded_data: Any  # structured mode's `data`, parsed JSON (None when absent)
    # What is parsed into values, as the text that came: structured mode's `data` member,
    # and the `time` attribute (header or member). None when absent or unreadable.
    data_text: str | None = None
    time_text: str | None = None

    @property
    def id(self) -> str:
        return str(self.attributes.get("id", ""))

    @property
    def datacontenttype(self) -> str | None:
        value = self.attributes.get("datacontenttype")
        return value if isinstance(value, str) else None

    def data(self) -> EventData:
        """The data, read per content type (raises the domain's UndecodableData)."""
        if self.raw_data is not None:
            return data_from_body(self.raw_data, self.datacontenttype)
        return data_from_structured(self.embedded_data, self.datacontenttype)


def parse(headers: Mapping[str, str], body: bytes) -> IncomingEvent:
    """An HTTP request (lower-case header names) as a CloudEvent, or NotACloudEvent."""
    repeated = _repeated_headers(headers)
    if repeated:
        raise NotACloudEvent(
            f"header {repeated} is repeated: a CloudEvents attribute takes one value"
        )
    media = media_type(headers.get("content-type", ""))
    if media.startswith("application/cloudevents"):
        return _structured(media, body)
    if "ce-specversion" in headers:
        return _binary(headers, body)
    raise NotACloudEvent(
        "not a CloudEvent: no ce-specversion header (binary mode) "
        f"and content type is not {STRUCTURED} (structured mode)"
    )


def _binary(headers: Mapping[str, str], body: bytes) -> IncomingEvent:
    """Binary mode: the attributes in `ce-*` headers (percent-encoded) and `content-type`."""
    attributes = {
        lowered[len(_CE) :]: unquote(value)
        for name, value in headers.items()
        if (lowered := name.lower()).startswith(_CE)
    }
    if "content-type" in headers:
        attributes["datacontenttype"] = headers["content-type"]
    _refuse(attribute_problems(attributes))
    time_text = attributes.get("time")
    return IncomingEvent("binary", _timed(attributes), body, None, None, time_text)


def _structured(media: str, body: bytes) -> IncomingEvent:
    """Structured mode: the event one JSON object, its attributes and its data members."""
    if media == BATCH:
        raise NotACloudEvent("batched CloudEvents are not supported: send one event")
    if media != STRUCTURED:
        raise NotACloudEvent(f"unsupported CloudEvents format {media!r}")
    event = _json(body)
    pairs = _members(body)
    texts = dict(pairs)
    if len(texts) != len(pairs):
        name = _first_repeated(key for key, _ in pairs)
        raise NotACloudEvent(f"member {name!r} is repeated in the structured CloudEvent")
    _refuse(structured_problems(event))
    attributes = {name: value for name, value in event.items() if name not in DATA_MEMBERS}
    raw = _raw_data(event)
    embedded = event.get("data") if raw is None else None
    time_text = attributes.get("time")
    return IncomingEvent(
        "structured", _timed(attributes), raw, embedded, texts.get("data"), time_text
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise NotACloudEvent(f"not a valid CloudEvent: {one_line(exc)}") from None


def _refuse(problems: list[Problem]) -> None:
    if problems:
        raise NotACloudEvent("not a valid CloudEvent: " + "; ".join(map(str, problems)))


def _timed(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes with `time` (checked: RFC 3339) as a timezone-aware datetime."""
    if "time" in attributes:
        attributes["time"] = parse_time(attributes["time"])
    return attributes


def _raw_data(event: Mapping[str, Any]) -> bytes | None:
    """Data sent as base64 (checked), decoded: `data_base64`, or 0.3's base64 `data`."""
    if isinstance(event.get("data_base64"), str):
        return base64.b64decode(event["data_base64"], validate=True)
    if is_base64_data(event):
        return base64.b64decode(event["data"], validate=True)
    return None


class RequestHeaders(dict[str, str]):
    """A request's header lines by lower-case name, the first value of each kept, and
    `repeated`: the first CloudEvents header (ce-*, content-type: one attribute each, or the
    mode) that came more than once, or None.

    Two values for one attribute are refused rather than one picked silently: a proxy and
    the function could each read a different one (ce-id, say)."""

    __slots__ = ("repeated",)

    def __init__(self, lines: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        self.repeated: str | None = None
        for name, value in lines:
            if name not in self:
                self[name] = value
            elif self.repeated is None and (name.startswith("ce-") or name == "content-type"):
                self.repeated = name


def _repeated_headers(headers: Mapping[str, str]) -> str | None:
    """The first CloudEvents header sent more than once (a plain mapping holds none)."""
    return headers.repeated if isinstance(headers, RequestHeaders) else None


def _first_repeated(names: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _members(body: bytes) -> list[tuple[str, str]]:
    try:
        return members(body)
    except ValueError:  # json.loads read it, NaN and all: keep the values, not the texts
        return []


def _raw_json_data(event: IncomingEvent, data: JsonData) -> Any:
    """The JSON data as the text that arrived, where Go keeps the bytes; else the value."""
    if not is_go_json_media(event.datacontenttype):
        return data.value
    text = event.raw_data if event.raw_data is not None else event.data_text
    try:
        return RawJSON.parse(text) if text is not None else data.value
    except ValueError:  # UTF-16 and other encodings json.loads reads: keep the value
        return data.value


def _time(event: IncomingEvent, value: datetime) -> str:
    try:
        return canonical_time(event.time_text) if event.time_text else format_time(value)
    except ValueError:
        return format_time(value)


def structured_json(event: IncomingEvent, data: EventData | None) -> dict[str, Any]:
    """The event in CloudEvents structured JSON, `data` embedded, as the Go SDK writes it."""
    attributes = event.attributes
    out: dict[str, Any] = {}
    for name in CE_ATTRIBUTE_ORDER:
        if name in attributes:
            value = attributes[name]
            out[name] = _time(event, value) if isinstance(value, datetime) else value
    if event.raw_data is not None and event.mode == "structured":
        out["data_base64"] = base64.b64encode(event.raw_data).decode("ascii")
    elif isinstance(data, XmlData):
        out["data"] = data.text  # non-JSON data is embedded as a string
    elif isinstance(data, JsonData):
        out["data"] = _raw_json_data(event, data)
    for name in sorted(attributes):  # Go iterates a map: any order is Go's order
        if name not in out and name not in CE_ATTRIBUTE_ORDER:
            value = attributes[name]
            out[name] = format_time(value) if isinstance(value, datetime) else value
    return out
