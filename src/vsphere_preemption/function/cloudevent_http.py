"""CloudEvents over HTTP in (binary and structured content mode), structured JSON out.

Parsing and attribute validation is the official SDK's (`cloudevents.core.bindings.http`). Two
things we do around it:

- binary mode: the SDK reads the `ce-*` headers; the body (`data`) is read by the domain per
  its content type, because the SDK turns a body it cannot parse as JSON into a string and
  would hide whether a JSON body held a string or an object;
- the attributes are kept as received: the SDK's event classes invent an `id` and a `time`
  when they are missing, and neither may reach the workflow.

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

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v03.event import CloudEvent as CloudEventV03
from cloudevents.core.v1.event import CloudEvent as CloudEventV1

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
    CE_REQUIRED_ATTRIBUTES,
    canonical_time,
    format_time,
    is_go_json_media,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_FACTORIES = {"1.0": CloudEventV1, "0.3": CloudEventV03}
_FORMAT = JSONFormat()


class NotACloudEvent(ValueError):
    """The request is not a CloudEvent we accept; the message is one line."""


@dataclass(frozen=True)
class IncomingEvent:
    mode: str  # "binary" | "structured"
    attributes: Mapping[str, Any]  # as received; `time` parsed to a timezone-aware datetime
    raw_data: bytes | None  # the body (binary mode) or the decoded `data_base64`
    embedded_data: Any  # structured mode's `data`, parsed JSON (None when absent)
    # What the SDK parses into values, as the text that came: structured mode's `data`
    # member, and the `time` attribute (header or member). None when absent or unreadable.
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


class _KeepAttributes:
    """An SDK event factory that validates with the SDK's classes but keeps what was sent."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}
        self.data: Any = None

    def __call__(self, attributes: dict[str, Any], data: Any) -> BaseCloudEvent:
        self.attributes, self.data = dict(attributes), data
        missing = [name for name in CE_REQUIRED_ATTRIBUTES if name not in attributes]
        if missing:
            raise NotACloudEvent(f"not a CloudEvent: missing {', '.join(missing)}")
        factory = _FACTORIES.get(attributes["specversion"])
        if factory is None:
            raise NotACloudEvent(
                f"unsupported CloudEvents specversion {attributes['specversion']!r}"
            )
        return factory(dict(attributes), data)


def parse(headers: Mapping[str, str], body: bytes) -> IncomingEvent:
    """An HTTP request (lower-case header names) as a CloudEvent, or NotACloudEvent."""
    repeated = _repeated_headers(headers)
    if repeated:
        raise NotACloudEvent(
            f"header {repeated} is repeated: a CloudEvents attribute takes one value"
        )
    media = media_type(headers.get("content-type", ""))
    keep = _KeepAttributes()
    try:
        if media == BATCH:
            raise NotACloudEvent("batched CloudEvents are not supported: send one event")
        if media.startswith("application/cloudevents"):
            if media != STRUCTURED:
                raise NotACloudEvent(f"unsupported CloudEvents format {media!r}")
            message = HTTPMessage(headers={"content-type": STRUCTURED}, body=body)
            try:
                from_structured(message, _FORMAT, keep)
            except NotACloudEvent:
                raise
            except Exception as exc:  # noqa: BLE001 (the SDK's words, unless ours are clearer)
                raise NotACloudEvent(_structured_problem(body) or _invalid(exc)) from None
            raw = keep.data if isinstance(keep.data, bytes) else None
            embedded = None if raw is not None else keep.data
            pairs = _members(body)
            texts = dict(pairs)
            if len(texts) != len(pairs):
                name = _first_repeated(key for key, _ in pairs)
                raise NotACloudEvent(f"member {name!r} is repeated in the structured CloudEvent")
            time_text = _json_string(texts.get("time"))
            return IncomingEvent(
                "structured", keep.attributes, raw, embedded, texts.get("data"), time_text
            )
        if "ce-specversion" in headers:
            wanted = {k: v for k, v in headers.items() if k.startswith("ce-")}
            if "content-type" in headers:
                wanted["content-type"] = headers["content-type"]
            # The body is left out on purpose (see the module docstring).
            from_binary(HTTPMessage(headers=wanted, body=b""), _FORMAT, keep)
            return IncomingEvent(
                "binary", keep.attributes, body, None, None, headers.get("ce-time")
            )
    except NotACloudEvent:
        raise
    except Exception as exc:  # noqa: BLE001 (whatever the SDK raises, the input was invalid)
        raise NotACloudEvent(_invalid(exc)) from None
    raise NotACloudEvent(
        "not a CloudEvent: no ce-specversion header (binary mode) "
        f"and content type is not {STRUCTURED} (structured mode)"
    )


def _invalid(exc: BaseException) -> str:
    return f"not a valid CloudEvent: {one_line(exc)}"


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


def _structured_problem(body: bytes) -> str | None:
    """A clearer reason than the SDK's for a structured event it refused, when there is one."""
    try:
        pairs = members(body)
    except ValueError:
        try:
            json.loads(body)
        except ValueError:
            return None  # not JSON: the SDK's decoding error says where
        return "a structured CloudEvent must be a JSON object"
    for name, text in pairs:
        if name in ("time", "data_base64", *CE_REQUIRED_ATTRIBUTES) and not text.startswith('"'):
            return f"not a valid CloudEvent: {name} must be a string"
    return None


def _members(body: bytes) -> list[tuple[str, str]]:
    try:
        return members(body)
    except ValueError:  # the SDK parsed it: only an odd encoding lands here, keep values
        return []


def _json_string(text: str | None) -> str | None:
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return value if isinstance(value, str) else None


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
