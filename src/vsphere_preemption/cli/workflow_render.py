"""How `preemptctl workflow status` shows a workflow and its last preemption run, and
`preemptctl workflow list` the open ones.

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

from vsphere_preemption.cli.table import table
from vsphere_preemption.domain.gojson import field as go_field
from vsphere_preemption.domain.shapes import ResponseExtras, moref_from_wire
from vsphere_preemption.rawjson import RawJSON
from vsphere_preemption.temporal.client import ListedWorkflow, State, WorkflowSummary
from vsphere_preemption.wire import (
    CLI_EVENT_TYPE,
    GO_ZERO_TIME,
    CloudEventJSON,
    WireError,
    WorkflowResponse,
    format_time,
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
    paused = response.extra.get("paused")
    if paused is not None:  # a run held by a pause or a quiet window: what holds it, until when
        fields.append(("Paused", f"{paused['status']} (since {paused['heldAt']})"))
    latest = _latest_run_line(response)
    if latest:
        fields.append(("Latest run", latest))
    never_ran = response.last_preemption == GO_ZERO_TIME
    if never_ran:
        fields.append(("Last run", "none yet (no run acted)" if latest else
                       "none yet (no PreemptVMsChan signal handled)"))  # fmt: skip
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
    lines += table(("VM", "TYPE", "SHUTDOWN"), rows)
    lines.append(f"{len(vms)} VM(s) preempted in the last run.")
    return "\n".join(lines)


def _latest_run_line(response: WorkflowResponse) -> str:
    """The newest run when it did not act (failed, skipped, cancelled...): the fields below
    describe the last run that acted, which may be older. Empty when there is nothing to add."""
    latest = response.extra.get("lastRun", {})
    outcome = latest.get("outcome")
    if outcome is None or outcome == "acted":
        return ""
    text = f"#{latest.get('run', '?')} {outcome}"
    if latest.get("endedAt"):
        text += f" at {latest['endedAt']}"
    return text + (f": {latest['reason']}" if latest.get("reason") else "")


def _criticality_line(response: WorkflowResponse) -> str:
    if response.criticality is None:
        return "-"
    return f"{response.criticality.value} ({_shutdown(response)})"


# -- list ---------------------------------------------------------------------------------

# A listed workflow and its `current_state` answer, or why it gave none (one line).
ListRow = tuple[ListedWorkflow, State | str]


def _entity_cell(listed: ListedWorkflow, state: State | str) -> str:
    extra = state.response.extra if isinstance(state, State) else ResponseExtras()
    if "entity" in extra:
        # What the run acted on, as the worker reports it; null: the whole vCenter.
        entity = extra["entity"]
        return "whole vCenter" if entity is None else str(moref_from_wire(entity))
    return listed.entity or "-"


def _plan_cell(response: WorkflowResponse) -> str:
    plan = response.extra.get("plan")
    dry = response.extra.get("dryRun", False)
    if plan is None or "victims" not in plan:  # none, or planning failed
        return "dry run" if dry else "-"
    text = f"{len(plan['victims'])} victim(s)"
    return f"{text}, dry run" if dry else text


def _ago(value: datetime, now: datetime) -> str:
    delta = now - value
    return f"in {_duration(-delta)}" if delta < timedelta(0) else f"{_duration(delta)} ago"


def list_cells(listed: ListedWorkflow, state: State | str, now: datetime) -> tuple[str, ...]:
    """ALARM, ENTITY, LAST RUN, VMS, CRITICALITY, PLAN, STATE of one listed workflow."""
    started = f"started {_ago(listed.summary.start_time, now)}"
    if not isinstance(state, State):
        return (listed.alarm, _entity_cell(listed, state), "?", "?", "?", "?", "no answer")
    response = state.response
    if response.last_preemption == GO_ZERO_TIME:
        last, vms, criticality, plan = "never", "-", "-", "-"
    else:
        last = _ago(response.last_preemption, now)
        vms = str(len(response.virtual_machines or ()))
        criticality = response.criticality.value if response.criticality else "-"
        plan = _plan_cell(response)
    status = f"{state.summary.status_text}, {started}"
    if "paused" in response.extra:
        status += ", run held by a pause"
    return (listed.alarm, _entity_cell(listed, state), last, vms, criticality, plan, status)


def render_list(rows: Sequence[ListRow], now: datetime) -> str:
    """The `list` table, one row per open workflow, then why some gave no answer."""
    if not rows:
        return "No open preemption workflows."
    header = ("ALARM", "ENTITY", "LAST RUN", "VMS", "CRITICALITY", "PLAN", "STATE")
    lines = table(header, [list_cells(listed, state, now) for listed, state in rows])
    lines.append(f"{len(rows)} open preemption workflow(s).")
    for listed, state in rows:
        if not isinstance(state, State):
            lines.append(f"{listed.summary.workflow_id}: {state}")
    return "\n".join(lines)


def list_json(rows: Sequence[ListRow]) -> list[dict[str, Any]]:
    """`list --json`: per workflow, what Temporal lists and its current_state answer as is."""
    out = []
    for listed, state in rows:
        summary = listed.summary
        out.append(
            {
                "workflowID": summary.workflow_id,
                "workflowRunID": summary.run_id,
                "alarm": listed.alarm,
                "entity": listed.entity,
                "taskQueue": summary.task_queue,
                "status": summary.status,
                "startTime": format_time(summary.start_time),
                # The answer's own bytes: its event data is not re-encoded (`1.50` stays).
                "state": RawJSON.parse(state.raw_json) if isinstance(state, State) else None,
                "error": None if isinstance(state, State) else state,
            }
        )
    return out
