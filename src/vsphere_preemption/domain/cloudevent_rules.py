"""Is this a valid CloudEvent? The CloudEvents rules, stated once, for every reader.

Pure, standard library only. An event is judged by its attributes as they were sent (header
text in binary mode, JSON values in structured mode), before anything parses them: a `time` is
judged as the text that came, not as whatever a date parser made of it.

- required: `specversion`, `id`, `source` and `type`, non-empty strings (null is absent);
  `specversion` one the reader takes;
- optional: `subject`, `datacontenttype`, `dataschema` (0.3: `schemaurl` and
  `datacontentencoding`) and `time`, non-empty strings when present; `time` an RFC 3339
  timestamp with its offset, as Go's SDK reads one;
- extensions: named with lower-case ASCII letters and digits (`data` is the data's own name),
  valued a string, a boolean or a number a 32-bit integer holds (CloudEvents' Integer; Go's SDK
  converts a number to one), or null;
- structured mode (the event as one JSON object): `data` or `data_base64`, never both;
  `data_base64` (and 0.3's `data` under `datacontentencoding: base64`) standard base64.

Who asks, and how much:

- the function, of every request (function/cloudevent_http.py): all of it, 1.0 or 0.3;
- `preemptctl workflow run --event` (cli/workflow_input.py): all of it, 1.0 only (what the Go
  CLI sends), and what Go's SDK needs to read the data;
- the wire, of the event in every signal (wire.signal_event_problem): the required attributes
  only. The workflow has dropped signals by that rule since its `strict-signals` patch; a
  stricter one would refuse on replay what a recorded history accepted.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from vsphere_preemption.domain.text import json_kind

REQUIRED = ("specversion", "id", "source", "type")
# The versions the function takes, and so puts into its signals.
SPECVERSIONS = ("1.0", "0.3")
OPTIONAL = {
    "1.0": ("subject", "datacontenttype", "dataschema", "time"),
    "0.3": ("subject", "datacontenttype", "schemaurl", "datacontentencoding", "time"),
}
# The members of a structured event that carry its data rather than an attribute.
DATA_MEMBERS = ("data", "data_base64")

_NAME = re.compile(r"[a-z0-9]+")
_INT32 = (-(2**31), 2**31 - 1)
# RFC 3339's date-time (section 5.6) as Go's time.RFC3339 reads it: ASCII digits, `T`, whole
# seconds, any fraction, then `Z` or a `±hh:mm` offset.
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))"
)
_SHOWN = 64  # the most of a refused value a message quotes


class Rule(StrEnum):
    MISSING = "missing"  # a required attribute absent, or null
    NOT_A_STRING = "not a string"  # a required attribute of another JSON type
    EMPTY = "empty"  # a required attribute that is ""
    SPECVERSION = "specversion"  # a version the reader does not take
    OPTIONAL = "optional"  # an optional attribute that is no non-empty string
    TIME = "time"  # a `time` that is no RFC 3339 timestamp
    NAME = "name"  # attribute names other than lower-case letters and digits
    RESERVED = "reserved"  # an attribute named `data`
    EXTENSION = "extension"  # an extension value CloudEvents has no type for
    DATA_MEMBERS = "data members"  # `data` and `data_base64` both
    BASE64 = "base64"  # data that should be base64 and is not
    NOT_AN_OBJECT = "not an object"  # a structured event that is no JSON object


@dataclass(frozen=True)
class Problem:
    """One rule an event breaks: which, about what (attribute or member; "" for the event as
    a whole), the value it had, and the sentence that says so."""

    rule: Rule
    name: str
    value: Any
    text: str

    def __str__(self) -> str:
        return self.text


def required_problems(
    event: Mapping[str, Any], versions: Sequence[str] = SPECVERSIONS
) -> list[Problem]:
    """What keeps `event`'s required attributes from being a CloudEvent's, in their order."""
    problems = [p for name in REQUIRED if (p := _required(name, event.get(name))) is not None]
    version = event.get("specversion")
    if isinstance(version, str) and version and version not in versions:
        either = " or ".join(repr(v) for v in versions)
        text = f"'specversion' must be {either}, got {_shown(version)}"
        problems.append(Problem(Rule.SPECVERSION, "specversion", version, text))
    return problems


def attribute_problems(
    attributes: Mapping[str, Any], versions: Sequence[str] = SPECVERSIONS
) -> list[Problem]:
    """Every rule the attributes (the event without its data) break: required, optional,
    extensions."""
    optional = OPTIONAL.get(str(attributes.get("specversion")), OPTIONAL["1.0"])
    context = {*REQUIRED, *optional}
    extensions = {k: v for k, v in attributes.items() if k not in context}
    return [
        *required_problems(attributes, versions),
        *(p for name in optional if name in attributes for p in _optional(name, attributes[name])),
        *_name_problems(attributes),
        *(p for name, value in extensions.items() if (p := _extension(name, value)) is not None),
    ]


def structured_problems(event: Any, versions: Sequence[str] = SPECVERSIONS) -> list[Problem]:
    """Every rule a structured-mode event (one JSON object, its data inside) breaks."""
    if not isinstance(event, Mapping):
        text = f"a structured CloudEvent must be a JSON object, got {type(event).__name__}"
        return [Problem(Rule.NOT_AN_OBJECT, "", event, text)]
    attributes = {k: v for k, v in event.items() if k not in DATA_MEMBERS}
    return attribute_problems(attributes, versions) + _data_member_problems(event)


def is_rfc3339(text: str) -> bool:
    """Whether `text` is an RFC 3339 date-time, offset included, that names a real instant."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return False
    whole, hours, minutes = match.groups()
    try:
        datetime.fromisoformat(whole)  # the calendar: no 13th month, no 25th hour
    except ValueError:
        return False
    return hours is None or (int(hours) <= 23 and int(minutes) <= 59)


def is_base64(text: str) -> bool:
    """Whether `text` is standard base64 (padded, nothing outside the alphabet)."""
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters beyond ASCII
        return False
    return True


def is_base64_data(event: Mapping[str, Any]) -> bool:
    """Whether a 0.3 structured event's `data` is base64 (`datacontentencoding: base64`)."""
    encoding = event.get("datacontentencoding")
    return (
        event.get("specversion") == "0.3"
        and isinstance(encoding, str)
        and encoding.lower() == "base64"
        and isinstance(event.get("data"), str)
    )


def _required(name: str, value: Any) -> Problem | None:
    if value is None:
        return Problem(Rule.MISSING, name, value, f"missing required attribute {name!r}")
    if not isinstance(value, str):
        text = f"{name!r} must be a string, got {json_kind(value)}"
        return Problem(Rule.NOT_A_STRING, name, value, text)
    if not value:
        return Problem(Rule.EMPTY, name, value, f"{name!r} must not be empty")
    return None


def _optional(name: str, value: Any) -> list[Problem]:
    if not isinstance(value, str) or not value:
        got = "" if isinstance(value, str) else f", got {json_kind(value)}"
        text = f"{name!r} must be a non-empty string when present{got}"
        return [Problem(Rule.OPTIONAL, name, value, text)]
    if name == "time" and not is_rfc3339(value):
        example = "2024-05-14T09:31:27Z"
        text = f"'time' must be an RFC 3339 timestamp like {example}, got {_shown(value)}"
        return [Problem(Rule.TIME, name, value, text)]
    return []


def _name_problems(attributes: Mapping[str, Any]) -> list[Problem]:
    problems = []
    bad = sorted(name for name in attributes if not _NAME.fullmatch(name))
    if bad:
        text = f"attribute names must be lower-case letters and digits: {bad}"
        problems.append(Problem(Rule.NAME, "", bad, text))
    if "data" in attributes:  # binary mode's ce-data: the body is the data
        text = "attribute name 'data' is reserved for the event's data"
        problems.append(Problem(Rule.RESERVED, "data", attributes["data"], text))
    return problems


def _extension(name: str, value: Any) -> Problem | None:
    if value is None or isinstance(value, str | bool):
        return None
    if not isinstance(value, int | float):
        text = f"extension {name!r} must be a string, number or boolean"
        return Problem(Rule.EXTENSION, name, value, text)
    if not _INT32[0] <= value <= _INT32[1]:  # NaN too: no comparison holds
        text = f"extension {name!r} is out of range for a 32-bit integer"
        return Problem(Rule.EXTENSION, name, value, text)
    return None


def _data_member_problems(event: Mapping[str, Any]) -> list[Problem]:
    problems = []
    if all(name in event for name in DATA_MEMBERS):
        text = "'data' and 'data_base64' must not both be present"
        problems.append(Problem(Rule.DATA_MEMBERS, "", None, text))
    if "data_base64" in event:
        problems += _base64("data_base64", event["data_base64"])
    if is_base64_data(event):
        problems += _base64("data", event["data"])
    return problems


def _base64(name: str, value: Any) -> list[Problem]:
    if not isinstance(value, str):
        text = f"{name!r} must be a string, got {json_kind(value)}"
        return [Problem(Rule.BASE64, name, value, text)]
    if not is_base64(value):
        return [Problem(Rule.BASE64, name, value, f"{name!r} must be standard base64")]
    return []


def _shown(text: str) -> str:
    return repr(text) if len(text) <= _SHOWN else repr(text[:_SHOWN]) + "..."
