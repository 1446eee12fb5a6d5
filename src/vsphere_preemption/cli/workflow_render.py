"""How `preemptctl workflow status` shows a workflow and its last preemption run.

Pure: a `WorkflowSummary` (what Temporal says about the execution) and the
`current_state` answer in, text out. The answer records which VMs were acted on,
when, with which tag and criticality, and the triggering CloudEvent; it has no
power state, so the table shows how each VM was shut down (the criticality decides)
and the "why" comes from the event: an alarm's name and status change when the
event is a vCenter AlarmStatusChangedEvent, else its type and subject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from vsphere_preemption.domain.gojson import field as go_field
from vsphere_preemption.temporal.client import WorkflowSummary
from vsphere_preemption.wire import (
    CLI_EVENT_TYPE,
    GO_ZERO_TIME,
    CloudEventJSON,
    WireError,
    WorkflowResponse,
    parse_time,
)

_LABEL_WIDTH = 12


def format_when(value: datetime, now: datetime) -> str:
    """`2021-11-05 13:02:32 UTC (3m ago)`: absolute for the record, relative for people."""
    text = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = now - value
    if delta < timedelta(0):
        return f"{text} (in {_duration(-delta)})"
    return f"{text} ({_duration(delta)} ago)"


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"


def _get(obj: Any, name: str) -> Any:
    # vCenter event data comes in Go (`Alarm.Name`) and lower-camel (`alarm.name`)
    # spellings; Go's decoder matches either, and so does this lookup.
    return go_field(obj, name) if isinstance(obj, Mapping) else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def describe_trigger(event: CloudEventJSON) -> str:
    """Why the run happened, in one line, from the CloudEvent the signal carried."""
    data = _get(event, "data")
    alarm = _text(_get(_get(data, "Alarm"), "Name"))
    if alarm:
        parts = [f'alarm "{alarm}"']
        entity = _text(_get(_get(data, "Entity"), "Name"))
        if entity:
            parts.append(f"on {entity}")
        before, after = _text(_get(data, "From")), _text(_get(data, "To"))
        if before or after:
            parts.append(f"{before or '?'} -> {after or '?'}")
        return " ".join(parts)
    event_type = _text(event.get("type"))
    if event_type == CLI_EVENT_TYPE:
        return "manual run (preemptctl workflow run)"
    message = _text(_get(data, "FullFormattedMessage"))
    if message:
        return message
    subject = _text(event.get("subject"))
    if not event_type:
        return "unknown (no event)"
    return f"event {event_type}" + (f" ({subject})" if subject else "")


def describe_event(event: CloudEventJSON, now: datetime) -> str:
    """The triggering event's identity: type, subject, id, source and time."""
    event_type = _text(event.get("type"))
    if not event_type:
        return "none"
    subject = _text(event.get("subject"))
    line = event_type + (f" ({subject})" if subject else "")
    event_id, source = _text(event.get("id")), _text(event.get("source"))
    if event_id:
        line += f", id {event_id}"
    if source:
        line += f", from {source}"
    time = _text(event.get("time"))
    if time:
        try:
            line += f", at {format_when(parse_time(time), now)}"
        except WireError:
            line += f", at {time}"
    return line


def _status_line(summary: WorkflowSummary, now: datetime) -> str:
    line = f"{summary.status_text}, started {format_when(summary.start_time, now)}"
    if summary.close_time is not None:
        return f"{line}, closed {format_when(summary.close_time, now)}"
    if summary.timeout_at is not None:
        return f"{line}, times out {format_when(summary.timeout_at, now)}"
    return line


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _shutdown(response: WorkflowResponse) -> str:
    if response.criticality is None:
        return "unknown"
    if response.criticality.forces_power_off:
        return "forced power-off"
    return "guest shutdown"


def render_status(summary: WorkflowSummary, response: WorkflowResponse, now: datetime) -> str:
    """The `status` table: the execution, the last run, then one row per VM."""
    fields: list[tuple[str, str]] = [
        ("Workflow", f"{summary.workflow_id} ({summary.workflow_type})"),
        ("Run", summary.run_id),
        ("Task queue", summary.task_queue),
        ("Status", _status_line(summary, now)),
    ]
    never_ran = response.last_preemption == GO_ZERO_TIME
    if never_ran:
        fields.append(("Last run", "none yet (no PreemptVMsChan signal handled)"))
    else:
        fields += [
            ("Last run", format_when(response.last_preemption, now)),
            ("Tag", response.tag or "-"),
            ("Criticality", _criticality_line(response)),
            ("Why", describe_trigger(response.event)),
            ("Event", describe_event(response.event, now)),
            ("Reply to", response.reply_to or "none"),
        ]
    lines = [f"{label:<{_LABEL_WIDTH}} {value}" for label, value in fields]
    if never_ran:
        return "\n".join(lines)
    lines.append("")
    vms = response.virtual_machines or ()
    if not vms:
        lines.append("No VMs preempted in the last run.")
        return "\n".join(lines)
    rows = [(vm.value, vm.type, _shutdown(response)) for vm in vms]
    lines += _table(("VM", "TYPE", "SHUTDOWN"), rows)
    lines.append(f"{len(vms)} VM(s) preempted in the last run.")
    return "\n".join(lines)


def _criticality_line(response: WorkflowResponse) -> str:
    if response.criticality is None:
        return "-"
    return f"{response.criticality.value} ({_shutdown(response)})"
