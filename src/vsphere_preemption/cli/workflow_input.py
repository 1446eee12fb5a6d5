"""What `preemptctl workflow run` sends, checked before anything leaves the machine.

Pure: the flags in, a `WorkflowRequest` (or a message naming every problem) out.
The Go CLI upper-cases the criticality, accepts `--event` only as a valid
structured-JSON CloudEvent, and builds a `PreempctlRunEvent` when none is given;
ours does the same, so a Go worker cannot tell which CLI sent the signal.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.wire import (
    CLI_EVENT_TYPE,
    CLI_WORKFLOW_ID,
    CloudEventJSON,
    WireError,
    WorkflowRequest,
    format_time,
    parse_time,
)

SPECVERSION = "1.0"
_REQUIRED = ("specversion", "id", "source", "type")
_OPTIONAL_STRINGS = ("subject", "datacontenttype", "dataschema", "time")
# CloudEvents 1.0: attribute names are lower-case ASCII letters and digits.
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]+$")
_PAYLOAD_MEMBERS = frozenset({"data", "data_base64"})


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
    for name in _REQUIRED:
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
            parse_time(event["time"])
        except WireError:
            problems.append(f"'time' must be an RFC 3339 timestamp, got {event['time']!r}")
    if event.keys() >= _PAYLOAD_MEMBERS:
        problems.append("'data' and 'data_base64' must not both be present")
    bad_names = sorted(
        key for key in event if key not in _PAYLOAD_MEMBERS and not _ATTRIBUTE_NAME.match(key)
    )
    if bad_names:
        problems.append(f"attribute names must be lower-case letters and digits: {bad_names}")
    return problems


def parse_event(text: str) -> CloudEventJSON:
    """The `--event` flag: a CloudEvent in structured JSON form, passed on as given."""
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--event is not valid JSON: {exc}") from None
    problems = cloud_event_problems(event)
    if problems:
        raise InvalidInput("--event is not a CloudEvent: " + "; ".join(problems))
    result: CloudEventJSON = event
    return result


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
