"""The demo's printed sections, as lines of text (pure: values in, strings out)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vsphere_preemption.devtools.demo.checks import Check
from vsphere_preemption.devtools.demo.inventory import PreparedInventory
from vsphere_preemption.devtools.sink import ReceivedEvent
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import VmState
from vsphere_preemption.wire import WireError, WorkflowResponse, format_time, vm_ref_from_wire


def heading(number: int, title: str) -> list[str]:
    return ["", f"{number}. {title}"]


def _label(ref: VmRef, states: Mapping[VmRef, VmState]) -> str:
    state = states.get(ref)
    return f"{state.name} ({ref.value})" if state else f"{ref.value} ({ref.type})"


def inventory_table(prepared: PreparedInventory) -> list[str]:
    """Every tagged object, its power state, and what the worker should do with it."""
    plan, before = prepared.plan, prepared.before
    why = {issue.vm: issue.reason for issue in prepared.expected.left_out}
    rows = [("object", "power state", "expected")]
    for ref in plan.tagged:
        state = before.get(ref)
        power = state.power_state if state else "-"
        rows.append(
            (_label(ref, before), power, "preempt" if ref not in why else f"left alone: {why[ref]}")
        )
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"    {a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    untagged = plan.untagged
    if untagged:
        states = sorted({s.power_state for s in untagged})
        lines.append(
            f"  not tagged: {len(untagged)} VMs ({untagged[0].name} ... {untagged[-1].name}, "
            f"{'/'.join(states)}): must stay as they are"
        )
    return lines


def _elide_event(data: Mapping[str, Any]) -> dict[str, Any]:
    # The triggering CloudEvent is printed once already; show which one it is.
    shown = dict(data)
    event = shown.get("event")
    if isinstance(event, Mapping):
        shown["event"] = {k: event[k] for k in ("id", "type", "source") if k in event}
        shown["event"]["..."] = "(the whole alarm CloudEvent)"
    return shown


def pretty(value: Any, indent: str = "    ") -> list[str]:
    """JSON with one line per object field; lists and scalars stay on their line."""
    if not isinstance(value, Mapping) or not value:
        return [indent + json.dumps(value)]
    lines = [indent + "{"]
    items = list(value.items())
    for i, (key, item) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(item, Mapping) and item:
            nested = pretty(item, indent + "  ")
            lines.append(f"{indent}  {json.dumps(key)}: {nested[0].strip()}")
            lines += nested[1:-1]
            lines.append(nested[-1] + comma)
        else:
            lines.append(f"{indent}  {json.dumps(key)}: {json.dumps(item)}{comma}")
    lines.append(indent + "}")
    return lines


def state_lines(state: WorkflowResponse | None, states: Mapping[VmRef, VmState]) -> list[str]:
    if state is None:
        return ["  current_state: no answer"]
    vms = state.virtual_machines or ()
    return [
        f"  current_state (query of workflow {state.workflow_id!r}): last preemption at "
        f"{format_time(state.last_preemption)}, criticality {state.criticality}, "
        f"{len(vms)} VMs:",
        *(f"    {_label(ref, states)}" for ref in vms),
    ]


def annotation_lines(
    selected: Sequence[VmRef], annotations: Mapping[VmRef, str], states: Mapping[VmRef, VmState]
) -> list[str]:
    """One line per preempted VM; the first annotation in full."""
    lines = []
    first: Any = None
    for ref in selected:
        raw = annotations.get(ref)
        if raw is None:
            lines.append(f"    {_label(ref, states)}: (no annotation)")
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            lines.append(f"    {_label(ref, states)}: (not JSON) {raw[:80]!r}")
            continue
        first = value if first is None else first
        lines.append(
            f"    {_label(ref, states)}: preempted={json.dumps(value.get('preempted'))} "
            f"forcedShutdown={json.dumps(value.get('forcedShutdown'))} "
            f"workflowStarted={value.get('workflowStarted')}"
        )
    if isinstance(first, Mapping):
        lines += ["  the first one in full:", *pretty(_elide_event(first))]
    return lines


def event_lines(event: ReceivedEvent | None, states: Mapping[VmRef, VmState]) -> list[str]:
    if event is None:
        return ["  (nothing arrived)"]
    lines = [f"  {event.mode} mode CloudEvent:"]
    for name, value in event.attributes.items():
        text = format_time(value) if hasattr(value, "tzinfo") else str(value)
        lines.append(f"    {name}: {text}")
    data = event.data
    if isinstance(data, Mapping):
        vms = []
        for item in data.get("virtualMachines") or []:
            try:
                vms.append(_label(vm_ref_from_wire(item), states))
            except WireError:
                vms.append(repr(item))
        lines.append(f"    data.virtualMachines: {', '.join(vms)}")
        lines += ["    data:", *pretty(_elide_event(data), "      ")]
    return lines


def check_lines(checks: Sequence[Check]) -> list[str]:
    lines = []
    for check in checks:
        lines.append(f"  [{'ok' if check.ok else 'FAILED'}] {check.claim}")
        lines += [f"         {problem}" for problem in check.problems]
    return lines
