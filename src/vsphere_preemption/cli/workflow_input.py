"""What `preemptctl workflow run` sends, checked before anything leaves the machine.

Pure: the flags in, a `WorkflowRequest` (or a message naming every problem) out.
The Go CLI upper-cases the criticality, accepts `--event` only as a valid
structured-JSON CloudEvent and sends it as its CloudEvents SDK re-writes it, and
builds a `PreempctlRunEvent` when none is given; ours does the same, so a worker (and
the annotation it writes) cannot tell which CLI sent the signal (docs/wire.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.rawjson import RawJSON, members
from vsphere_preemption.wire import (
    CE_ATTRIBUTE_ORDER,
    CE_REQUIRED_ATTRIBUTES,
    CLI_EVENT_TYPE,
    CLI_WORKFLOW_ID,
    CloudEventJSON,
    WireError,
    WorkflowRequest,
    canonical_time,
    format_time,
    is_go_json_media,
)

SPECVERSION = "1.0"
_OPTIONAL_STRINGS = ("subject", "datacontenttype", "dataschema", "time")
# CloudEvents 1.0: attribute names are lower-case ASCII letters and digits.
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]+$")
_PAYLOAD_MEMBERS = frozenset({"data", "data_base64"})
_CONTEXT = frozenset(CE_ATTRIBUTE_ORDER)
_INT32 = (-(2**31), 2**31 - 1)


class InvalidInput(ValueError):
    """A flag value the CLI refuses; the message says what is wrong and how to fix it."""


def parse_criticality(value: str) -> Criticality:
    # Go's CLI accepts any case and sends upper case; so do we.
    try:
        return Criticality(value.strip().upper())
    except ValueError:
        valid = ", ".join(c.value for c in Criticality)
        raise InvalidInput(f"--criticality {value!r} is invalid (valid: {valid})") from None


def cloud_event_problems(event: Any) -> list[str]:
    """Everything that keeps `event` from being a CloudEvents 1.0 structured-JSON event."""
    if not isinstance(event, dict):
        return [f"must be a JSON object, got {type(event).__name__}"]
    problems: list[str] = []
    for name in CE_REQUIRED_ATTRIBUTES:
        if name not in event:
            problems.append(f"missing required attribute {name!r}")
        elif not isinstance(event[name], str):
            problems.append(f"{name!r} must be a string")
        elif not event[name]:
            problems.append(f"{name!r} must not be empty")
    if isinstance(event.get("specversion"), str) and event["specversion"] not in ("", SPECVERSION):
        problems.append(f"'specversion' must be {SPECVERSION!r}, got {event['specversion']!r}")
    for name in _OPTIONAL_STRINGS:
        if name in event and (not isinstance(event[name], str) or not event[name]):
            problems.append(f"{name!r} must be a non-empty string when present")
    if isinstance(event.get("time"), str) and event["time"]:
        try:
            canonical_time(event["time"])
        except WireError:
            problems.append(f"'time' must be an RFC 3339 timestamp, got {event['time']!r}")
    if event.keys() >= _PAYLOAD_MEMBERS:
        problems.append("'data' and 'data_base64' must not both be present")
    problems += _payload_problems(event) + _extension_problems(event)
    bad_names = sorted(
        key for key in event if key not in _PAYLOAD_MEMBERS and not _ATTRIBUTE_NAME.match(key)
    )
    if bad_names:
        problems.append(f"attribute names must be lower-case letters and digits: {bad_names}")
    return problems


def _payload_problems(event: dict[str, Any]) -> list[str]:
    # What Go's SDK refuses to read: a non-JSON type's data must be a string, and
    # data_base64 must be standard base64.
    problems = []
    json_media = is_go_json_media(event.get("datacontenttype"))
    if "data" in event and not json_media and not isinstance(event["data"], str):
        problems.append("'data' must be a string when 'datacontenttype' is not JSON")
    if "data_base64" in event:
        try:
            base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            problems.append("'data_base64' must be standard base64")
    return problems


def _extension_problems(event: dict[str, Any]) -> list[str]:
    # CloudEvents extension values are strings, booleans or 32-bit integers.
    problems = []
    for name, value in event.items():
        if name in _CONTEXT or name in _PAYLOAD_MEMBERS or value is None:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not _INT32[0] <= value <= _INT32[1]:
                problems.append(f"extension {name!r} is out of range for a 32-bit integer")
        elif not isinstance(value, str | bool):
            problems.append(f"extension {name!r} must be a string, number or boolean")
    return problems


def canonical_event(event: dict[str, Any], text: str) -> CloudEventJSON:
    """`event` (valid, decoded from `text`) as the Go CLI sends it.

    The Go CLI decodes `--event` into its SDK's event and marshals that: attributes in the
    SDK's order, `time` in UTC with its nanoseconds, JSON data as given (compacted, so
    `1.50` stays `1.50`), base64 data re-encoded, numbers in extensions as 32-bit
    integers, null extensions dropped.
    """
    # In Go's order; the extensions, sorted (Go's map order is random), come last.
    out: CloudEventJSON = {
        name: canonical_time(event[name]) if name == "time" else event[name]
        for name in CE_ATTRIBUTE_ORDER
        if name in event
    }
    if "data" in event:
        if is_go_json_media(event.get("datacontenttype")):
            out["data"] = RawJSON.parse(dict(members(text))["data"])
        else:
            out["data"] = event["data"]
    if "data_base64" in event:
        decoded = base64.b64decode(event["data_base64"], validate=True)
        out["data_base64"] = base64.b64encode(decoded).decode("ascii")
    for name in sorted(set(event) - _CONTEXT - _PAYLOAD_MEMBERS):
        value = event[name]
        if isinstance(value, float):
            value = int(value)  # Go converts to int32, truncating
        if value is not None:
            out[name] = value
    return out


def parse_event(text: str) -> CloudEventJSON:
    """The `--event` flag: a CloudEvent in structured JSON form, in the Go CLI's form."""
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--event is not valid JSON: {exc}") from None
    problems = cloud_event_problems(event)
    if problems:
        raise InvalidInput("--event is not a CloudEvent: " + "; ".join(problems))
    try:
        return canonical_event(event, text)
    except ValueError as exc:  # NaN or Infinity in data: Python reads them, Go does not
        raise InvalidInput(f"--event is not valid JSON: {exc}") from None


def default_event(
    now: datetime, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> CloudEventJSON:
    """The event the Go CLI sends when no --event is given (no data, no subject)."""
    return {
        "specversion": SPECVERSION,
        "id": new_id(),
        "source": CLI_WORKFLOW_ID,
        "type": CLI_EVENT_TYPE,
        "time": format_time(now),
    }


def require_not_empty(**flags: str) -> None:
    # The Go CLI refuses empty --server/--namespace/--queue/--tag the same way.
    for name, value in flags.items():
        if not value.strip():
            raise InvalidInput(f"--{name.replace('_', '-')} must not be empty")


def check_reply_to(value: str) -> str:
    # The worker POSTs the VmPreemptedEvent there; anything but an http(s) URL would
    # only fail three retries later, inside the workflow.
    if value and urlsplit(value).scheme not in ("http", "https"):
        raise InvalidInput(f"--reply-to must be an http:// or https:// URL, got {value!r}")
    if value and not urlsplit(value).netloc:
        raise InvalidInput(f"--reply-to has no host: {value!r}")
    return value


def build_request(
    *,
    tag: str,
    criticality: str,
    event: str | None,
    reply_to: str,
    now: datetime,
) -> WorkflowRequest:
    """The PreemptVMsChan signal for `run`, or InvalidInput naming the bad flag."""
    require_not_empty(tag=tag)
    return WorkflowRequest(
        tag=tag,
        criticality=parse_criticality(criticality),
        event=parse_event(event) if event else default_event(now),
        reply_to=check_reply_to(reply_to),
    )
