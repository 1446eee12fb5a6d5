"""vCenter `AlarmStatusChangedEvent`s out of CloudEvents, decoded the way the Go function does.

Pure: the CloudEvent's attributes (already parsed by the HTTP layer) and its data in, a frozen
`AlarmChange` out, or a `DecodeError` whose message is one line. Standard library only.

Two event shapes (docs/wire.md, decision rules): VEBA's old router
(`com.vmware.event.router/event`, subject `AlarmStatusChangedEvent`) and Tanzu Sources
(`com.vmware.vsphere.AlarmStatusChangedEvent.v0`). Two data encodings (samples of both in
tests/fixtures/):

- JSON, decoded with Go's `encoding/json` rules into govmomi's struct: a key matches a field in
  any letter case, keys apply in document order (a later one overrides), `null` leaves a value
  field alone, nested objects merge, and a value of the wrong type is an error.
- XML, as Go's `encoding/xml` writes govmomi's struct: lower-camel element names matched exactly,
  references as `<alarm type="Alarm">alarm-101</alarm>`. A DOCTYPE is refused outright, so no
  entity can expand (billion laughs) or point outside (XXE).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

from vsphere_preemption.domain.gojson import fold
from vsphere_preemption.domain.model import MoRef
from vsphere_preemption.domain.text import json_kind, one_line

OLD_ROUTER_TYPE = "com.vmware.event.router/event"
OLD_ROUTER_SUBJECT = "AlarmStatusChangedEvent"
TANZU_SOURCES_TYPE = "com.vmware.vsphere.AlarmStatusChangedEvent.v0"

_INT32 = (-(2**31), 2**31 - 1)
_DECIMAL = re.compile(r"[+-]?[0-9]+")


class DecodeError(ValueError):
    """The event cannot be read as an AlarmStatusChangedEvent; the message is one line."""


class NotAnAlarmEvent(DecodeError):
    """A CloudEvent of another type (or the old router's shape with another subject)."""


class UndecodableData(DecodeError):
    """The right event type, but its data is not an AlarmStatusChangedEvent."""


class EventShape(StrEnum):
    OLD_ROUTER = "old-router"  # com.vmware.event.router/event + subject
    TANZU_SOURCES = "tanzu-sources"  # com.vmware.vsphere.<EventClass>.v0


@dataclass(frozen=True)
class JsonData:
    """Data that is JSON, already parsed (structured mode embeds it; binary mode is parsed once)."""

    value: Any


@dataclass(frozen=True)
class XmlData:
    """Data that is XML text, as Tanzu Sources sends it by default."""

    text: str


EventData = JsonData | XmlData


@dataclass(frozen=True)
class AlarmChange:
    """What the alarm rules need to know about one AlarmStatusChangedEvent."""

    event_id: str
    event_type: str
    shape: EventShape
    alarm_name: str
    alarm_ref: str  # the alarm's managed object id, e.g. alarm-282 ("" when absent)
    from_status: str  # as sent: the rules compare them lower-cased
    to_status: str
    entity_name: str  # what the alarm fired on (a cluster, a host, ...)
    entity: MoRef | None  # its managed object reference; None when the event has none
    message: str  # FullFormattedMessage
    key: int  # vCenter's event key
    created_time: datetime | None


# The media types whose data Go's CloudEvents SDK keeps as JSON ("": no content type).
GO_JSON_MEDIA_TYPES = frozenset({"", "application/json", "text/json"})


def media_type(content_type: str | None) -> str:
    """The media type of a content type, lower-cased, without parameters (`""` for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_content_type(content_type: str | None) -> bool:
    """JSON media types; no content type at all counts as JSON, as it does for the Go SDK."""
    media = media_type(content_type)
    return media in GO_JSON_MEDIA_TYPES or media.endswith("+json")


def is_xml_content_type(content_type: str | None) -> bool:
    media = media_type(content_type)
    return media in {"application/xml", "text/xml"} or media.endswith("+xml")


def event_shape(event_type: Any, subject: Any) -> EventShape:
    """Which of the two alarm event shapes this is; any other event is a NotAnAlarmEvent."""
    if event_type == TANZU_SOURCES_TYPE:
        return EventShape.TANZU_SOURCES
    if event_type == OLD_ROUTER_TYPE:
        if subject == OLD_ROUTER_SUBJECT:
            return EventShape.OLD_ROUTER
        raise NotAnAlarmEvent(
            f"not an AlarmStatusChangedEvent: type {OLD_ROUTER_TYPE} with subject {subject!r}"
        )
    raise NotAnAlarmEvent(f"not an AlarmStatusChangedEvent: type {event_type!r}")


def data_from_body(body: bytes, content_type: str | None) -> EventData:
    """Data sent as raw bytes (binary content mode, or `data_base64`), read by its content type."""
    if not body.strip():
        raise UndecodableData("the event has no data")
    if is_xml_content_type(content_type):
        try:
            return XmlData(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UndecodableData(f"XML data is not UTF-8: {exc.reason}") from None
    if is_json_content_type(content_type):
        try:
            return JsonData(json.loads(body))
        except (ValueError, RecursionError) as exc:
            raise UndecodableData(f"data is not valid JSON: {one_line(exc, 200)}") from None
    raise UndecodableData(f"unsupported datacontenttype {media_type(content_type)!r}")


def data_from_structured(value: Any, content_type: str | None) -> EventData:
    """Data embedded in a structured-mode event (`data`), already parsed as JSON."""
    if isinstance(value, bytes | bytearray):  # `data_base64`: raw bytes after all
        return data_from_body(bytes(value), content_type)
    if value is None:
        raise UndecodableData("the event has no data")
    if is_xml_content_type(content_type):
        if not isinstance(value, str):
            raise UndecodableData("XML data must be embedded as a JSON string")
        return XmlData(value)
    if is_json_content_type(content_type):
        return JsonData(value)
    raise UndecodableData(f"unsupported datacontenttype {media_type(content_type)!r}")


def decode(attributes: Mapping[str, Any], data: EventData | None) -> AlarmChange:
    """Attributes (`id`, `type`, `subject`, ...) and data into an AlarmChange, or a DecodeError."""
    shape = event_shape(attributes.get("type"), attributes.get("subject"))
    if data is None:
        raise UndecodableData("the event has no data")
    if isinstance(data, XmlData):
        fields = _decode_xml(data.text)
    else:
        if data.value is None:
            raise UndecodableData("the event has no data")
        fields = _decode_struct(_EVENT, data.value, "data")
    # Decoded structs hold only the fields the data set: absent means Go's zero value.
    alarm = fields.get("Alarm") or {}
    return AlarmChange(
        event_id=str(attributes.get("id", "")),
        event_type=str(attributes.get("type", "")),
        shape=shape,
        alarm_name=alarm.get("Name", ""),
        alarm_ref=(alarm.get("Alarm") or {}).get("Value", ""),
        from_status=fields.get("From", ""),
        to_status=fields.get("To", ""),
        entity_name=(fields.get("Entity") or {}).get("Name", ""),
        entity=_entity_ref(fields),
        message=fields.get("FullFormattedMessage", ""),
        key=fields.get("Key", 0),
        created_time=fields.get("CreatedTime"),
    )


def _entity_ref(fields: Mapping[str, Any]) -> MoRef | None:
    ref = (fields.get("Entity") or {}).get("Entity") or {}
    value, kind = ref.get("Value", ""), ref.get("Type", "")
    return MoRef(value=value, type=kind) if value and kind else None


def alarm_entity(event: Mapping[str, Any]) -> MoRef | None:
    """The alarmed entity of a structured-JSON alarm CloudEvent, or None.

    For the worker: a signal from the Go function (or ours) names no entity of its own, but
    carries the alarm event whole. Any event that is not a decodable alarm change has none.
    """
    try:
        data = data_from_structured(event.get("data"), event.get("datacontenttype"))
        return decode(event, data).entity
    except DecodeError:
        return None


# govmomi's AlarmStatusChangedEvent as the Go function decodes it: Go field name (what JSON
# matches in any case), XML element name (matched exactly), and kind.
@dataclass(frozen=True)
class _Field:
    name: str
    xml: str
    kind: str  # str | int32 | time | struct | ptr (a struct that null resets) | moref
    fields: tuple[_Field, ...] = ()

    @cached_property
    def by_name(self) -> dict[str, _Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def by_folded_name(self) -> dict[str, _Field]:
        return {fold(f.name): f for f in self.fields}

    @cached_property
    def by_xml_name(self) -> dict[str, _Field]:
        return {f.xml: f for f in self.fields}

    @cached_property
    def is_object(self) -> bool:
        return self.kind in {"struct", "ptr", "moref"}


def _moref(name: str) -> _Field:
    # A ManagedObjectReference: {"Type", "Value"} in JSON, <x type="...">value</x> in XML.
    fields = (_Field("Type", "type", "str"), _Field("Value", "", "str"))
    return _Field(name, name[0].lower() + name[1:], "moref", fields)


def _argument(name: str, xml: str, ref: str, kind: str = "ptr") -> _Field:
    # An *EventArgument: the entity's name and its managed object reference.
    return _Field(name, xml, kind, (_Field("Name", "name", "str"), _moref(ref)))


_EVENT = _Field(
    "AlarmStatusChangedEvent",
    "",
    "struct",
    (
        _Field("Key", "key", "int32"),
        _Field("ChainId", "chainId", "int32"),
        _Field("CreatedTime", "createdTime", "time"),
        _Field("UserName", "userName", "str"),
        _argument("Datacenter", "datacenter", "Datacenter"),
        _argument("ComputeResource", "computeResource", "ComputeResource"),
        _argument("Host", "host", "Host"),
        _argument("Vm", "vm", "Vm"),
        _argument("Ds", "ds", "Datastore"),
        _argument("Net", "net", "Network"),
        _argument("Dvs", "dvs", "Dvs"),
        _Field("FullFormattedMessage", "fullFormattedMessage", "str"),
        _Field("ChangeTag", "changeTag", "str"),
        _argument("Alarm", "alarm", "Alarm", "struct"),
        _argument("Source", "source", "Entity", "struct"),
        _argument("Entity", "entity", "Entity", "struct"),
        _Field("From", "from", "str"),
        _Field("To", "to", "str"),
    ),
)


def _decode_struct(spec: _Field, value: Any, path: str, into: Any = None) -> dict[str, Any]:
    # Every event of every alarm passes here (most are another alarm's, answered and dropped):
    # a JSON object is a dict, checked before the slower Mapping ABC, and a string field, the
    # commonest, is taken in the loop.
    if type(value) is not dict and not isinstance(value, Mapping):
        raise UndecodableData(f"{path} must be a JSON object, got {json_kind(value)}")
    out: dict[str, Any] = {} if into is None else into
    by_name, by_folded_name = spec.by_name, spec.by_folded_name
    for key, item in value.items():
        # Go looks a key up exactly first, then case-insensitively.
        field = by_name.get(key)
        if field is None:
            field = by_folded_name.get(fold(key)) if isinstance(key, str) else None
            if field is None:
                continue  # unknown fields are ignored, as in Go
        if item is None:
            if field.kind == "ptr":
                out[field.name] = None
            continue  # null leaves any other value as it was
        if field.kind == "str" and type(item) is str:
            out[field.name] = item
        elif field.is_object:
            # Go decodes into the value already there: a repeated object merges.
            where = f"{path}.{field.name}"
            out[field.name] = _decode_struct(field, item, where, out.get(field.name))
        else:
            out[field.name] = _scalar(field, item, path)
    return out


def _scalar(field: _Field, item: Any, path: str) -> Any:
    if field.kind == "str":
        if not isinstance(item, str):
            raise UndecodableData(f"{path}.{field.name} must be a string, got {json_kind(item)}")
        return item
    where = f"{path}.{field.name}"
    if field.kind == "int32":
        if isinstance(item, bool) or not isinstance(item, int):
            raise UndecodableData(f"{where} must be an integer, got {json_kind(item)}")
        return _int32(item, where)
    if not isinstance(item, str):
        raise UndecodableData(f"{where} must be an RFC 3339 time string, got {json_kind(item)}")
    return _rfc3339(item, where)


def _int32(value: int, where: str) -> int:
    if not _INT32[0] <= value <= _INT32[1]:
        raise UndecodableData(f"{where} is out of range for a 32-bit integer")
    return value


def _rfc3339(text: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in text:
        raise UndecodableData(f"{where} is not an RFC 3339 time: {text[:64]!r}")
    return parsed


def _decode_xml(text: str) -> dict[str, Any]:
    # The only DTD-borne attacks (entity expansion, external entities) need a DOCTYPE, and
    # Go's encoder never writes one: refusing it is the whole defence, and a cheap one.
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise UndecodableData("XML data with a DOCTYPE is refused")
    try:
        root = ET.fromstring(text)  # noqa: S314 (DOCTYPE refused above: nothing can expand)
    except ET.ParseError as exc:
        raise UndecodableData(f"data is not valid XML: {one_line(exc, 200)}") from None
    return _xml_struct(_EVENT, root, "data", {})


def _local(name: str) -> str:
    # Go matches elements without a namespace in the tag by their local name.
    return name.rsplit("}", 1)[-1]


def _chardata(element: ET.Element) -> str:
    # Go's encoding/xml: the element's own character data, not its children's.
    return (element.text or "") + "".join(child.tail or "" for child in element)


def _xml_struct(
    spec: _Field, element: ET.Element, path: str, out: dict[str, Any]
) -> dict[str, Any]:
    if spec.kind == "moref":
        for attr, value in element.attrib.items():
            if _local(attr) == "type":
                out["Type"] = value
        out["Value"] = _chardata(element)
        return out
    for child in element:
        field = spec.by_xml_name.get(_local(child.tag))
        if field is None:
            continue  # unknown elements are ignored, as in Go
        where = f"{path}.{field.name}"
        if field.is_object:
            out[field.name] = _xml_struct(field, child, where, out.get(field.name) or {})
        else:
            out[field.name] = _xml_scalar(field, _chardata(child), where)
    return out


def _xml_scalar(field: _Field, text: str, where: str) -> Any:
    if field.kind == "str":
        return text
    if field.kind == "int32":
        digits = text.strip()
        # Python's int() also takes 1_000 and other scripts' digits; Go's ParseInt does not.
        if not _DECIMAL.fullmatch(digits):
            raise UndecodableData(f"{where} must be an integer, got {text[:32]!r}")
        return _int32(int(digits), where)
    return _rfc3339(text, where)
