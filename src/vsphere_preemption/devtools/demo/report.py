"""The demo's printed sections, as lines of text (pure: values in, strings out)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from vsphere_preemption.devtools.demo.checks import Check
from vsphere_preemption.devtools.demo.inventory import (
    ALARMED,
    PROTECTION_CATEGORY,
    PROTECTION_TAG,
    PreparedInventory,
)
from vsphere_preemption.devtools.sink import ReceivedEvent
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.plan import LeaveReason, Plan
from vsphere_preemption.domain.selection import VmState
from vsphere_preemption.temporal.contracts import GUEST_NOTICE_KEY
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    SCHEDULED_EVENT_TYPE,
    WireError,
    WorkflowResponse,
    format_time,
    parse_time,
    vm_ref_from_wire,
)


def heading(number: int, title: str) -> list[str]:
    return ["", f"{number}. {title}"]


def _label(ref: VmRef, states: Mapping[VmRef, VmState]) -> str:
    state = states.get(ref)
    return f"{state.name} ({ref.value})" if state else f"{ref.value} ({ref.type})"


# How a reason for leaving a VM out reads in a table.
REASON_TEXT = {
    LeaveReason.PROTECTED: "protected",
    LeaveReason.OUT_OF_SCOPE: "out of scope",
    LeaveReason.OVER_BUDGET: "over a budget",
    LeaveReason.NOT_NEEDED: "not needed",
    LeaveReason.NOT_RUNNING: "not running",
    LeaveReason.NOT_A_VM: "not a VM",
    LeaveReason.OVER_CAP: "over the cap",
}


def _table(rows: Sequence[Sequence[str]], indent: str = "    ") -> list[str]:
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        indent
        + "  ".join(f"{cell:<{width[i]}}" for i, cell in enumerate(row[:-1]))
        + "  "
        + row[-1]
        for row in rows
    ]


def inventory_table(prepared: PreparedInventory) -> list[str]:
    """Every tagged object: where it is, its power state and priority, what the plan should do."""
    plan, before, expected = prepared.plan, prepared.before, prepared.expected
    rank = {ref: i for i, ref in enumerate(expected.victims, 1)}
    rows = [("object", "cluster", "power state", "priority", "expected")]
    for ref in plan.tagged:
        state = before.get(ref)
        tag = plan.priorities.get(ref)
        if state is None:
            cluster, power, priority = ALARMED, "-", "-"
        else:
            cluster, power = state.cluster or "-", state.power_state
            priority = f"{tag} ({plan.level(ref)})" if tag else f"no tag ({plan.level(ref)})"
            if ref == plan.protected.ref:
                priority += f" + {PROTECTION_CATEGORY}/{PROTECTION_TAG}"
        # Every tagged object is either a victim or left out, by `expect`'s construction.
        outcome = (
            f"victim {rank[ref]}"
            if ref in rank
            else f"left out: {REASON_TEXT[expected.left_out[ref]]}"
        )
        rows.append((_label(ref, before), cluster, power, priority, outcome))
    lines = _table(rows)
    untagged = plan.untagged
    if untagged:
        states = sorted({s.power_state for s in untagged})
        lines.append(
            f"  not tagged: {len(untagged)} VMs on both clusters ({'/'.join(states)}): "
            "must stay as they are"
        )
    return lines


def _plan_label(ref: VmRef, name: str | None) -> str:
    return f"{name} ({ref.value})" if name else f"{ref.value} ({ref.type})"


def plan_lines(extra: Mapping[str, Any], indent: str = "    ") -> list[str]:
    """The plan our worker adds to the query answer (and the event): victims in order with
    their reason, then every candidate left out with its reason."""
    raw = extra.get("plan")
    if isinstance(raw, Mapping) and "error" in raw:
        return [f"{indent}planning failed: {raw.get('error')}"]
    try:
        plan = Plan.from_wire(raw)
    except ValueError as exc:
        return [f"{indent}(no readable plan: {exc})"]
    lines = [f"{indent}victims, in the order they go:"]
    lines += [
        f"{indent}  {i}. {_plan_label(v.ref, v.name)}: {v.reason}"
        for i, v in enumerate(plan.victims, 1)
    ] or [f"{indent}  none"]
    lines.append(f"{indent}left out:")
    rows = [
        (_plan_label(o.ref, o.name), REASON_TEXT.get(o.reason, str(o.reason)), o.detail)
        for o in plan.left_out
    ]
    lines += _table(rows, indent + "  ") if rows else [f"{indent}  none"]
    lines += [f"{indent}note: {note}" for note in plan.notes]
    return lines


def _elide_event(data: Mapping[str, Any]) -> dict[str, Any]:
    # The triggering CloudEvent is printed once already; show which one it is.
    shown = dict(data)
    event = shown.get("event")
    if isinstance(event, Mapping):
        shown["event"] = {k: event[k] for k in ("id", "type", "source") if k in event}
        shown["event"]["..."] = "(the whole alarm CloudEvent)"
    plan = shown.get("plan")
    if isinstance(plan, Mapping) and "victims" in plan:
        shown["plan"] = {
            "victims": [v.get("name") for v in plan.get("victims") or [] if isinstance(v, Mapping)],
            "leftOut": len(plan.get("leftOut") or []),
            "...": "(the whole plan, as the query answer's above)",
        }
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
        f"  its plan (field `plan`; scope {state.extra.get('scope')!r}, entity "
        f"{_entity(state.extra.get('entity'))}):",
        *plan_lines(state.extra),
    ]


def _entity(raw: Any) -> str:
    try:
        ref = vm_ref_from_wire(raw)
    except WireError:
        return "none"
    return f"{ref.type} {ref.value}"


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
        lines.append(f"    data.virtualMachines: {', '.join(_vms(data, states))}")
        plan = data.get("plan")
        if isinstance(plan, Mapping):
            names = [v.get("name") for v in plan.get("victims") or [] if isinstance(v, Mapping)]
            lines.append(f"    data.plan.victims: {', '.join(map(str, names))}")
        lines += ["    data:", *pretty(_elide_event(data), "      ")]
    return lines


def _vms(data: Mapping[str, Any], states: Mapping[VmRef, VmState]) -> list[str]:
    vms = []
    for item in data.get("virtualMachines") or []:
        try:
            vms.append(_label(vm_ref_from_wire(item), states))
        except WireError:
            vms.append(repr(item))
    return vms


def notice_lines(
    event: ReceivedEvent | None,
    read_at: datetime,
    states: Mapping[VmRef, VmState],
    guest: Mapping[VmRef, str],
    victims: Sequence[VmRef],
) -> list[str]:
    """The scheduled event as the sink got it; the victims, still on, and their guestinfo."""
    lines = [f"  the event the sink received ({SCHEDULED_EVENT_TYPE}):"]
    if event is None:
        lines.append("    (nothing arrived)")
    else:
        data = event.data if isinstance(event.data, Mapping) else {}
        lines.append(f"    id: {event.id}")
        when = ""
        try:
            left = (parse_time(str(data.get("notBefore"))) - read_at).total_seconds()
            when = f" (in {left:.1f}s, as the demo reads this)"
        except ValueError:
            pass
        lines += [
            f"    data.virtualMachines: {', '.join(_vms(data, states))}",
            f"    data.action: {data.get('action')}",
            f"    data.notBefore: {data.get('notBefore')}{when}",
            f"    data.noticeSeconds: {data.get('noticeSeconds')}",
        ]
    lines.append(f"  the victims now (vCenter) and their guestinfo {GUEST_NOTICE_KEY!r}:")
    for ref in victims:
        state = states.get(ref)
        power = state.power_state if state else "gone"
        lines.append(f"    {_label(ref, states)}: {power}  {guest.get(ref) or '(no notice)'}")
    others = sorted(ref for ref, value in guest.items() if value and ref not in victims)
    lines.append(
        f"    also carrying a notice: {', '.join(_label(r, states) for r in others)}"
        if others
        else "    no other VM carries a notice"
    )
    return lines


def _batch(event: ReceivedEvent) -> int:
    number = event.data.get("batch") if isinstance(event.data, Mapping) else None
    return number if isinstance(number, int) else -1


def resume_lines(
    events: Sequence[ReceivedEvent],
    states: Mapping[VmRef, VmState],
    annotations: Mapping[VmRef, str],
    guest: Mapping[VmRef, str],
    expected: Sequence[VmRef],
) -> list[str]:
    """The resume batches as the sink got them; the VMs, their annotations and guestinfo now."""
    lines = [f"  the resume, one event per batch at the sink ({len(events)}):"]
    first: datetime | None = None
    for event in sorted(events, key=_batch):
        data = event.data if isinstance(event.data, Mapping) else {}
        sent = event.attributes.get("time")
        offset = ""
        if isinstance(sent, datetime):
            first = first or sent
            offset = f" (+{(sent - first).total_seconds():.1f}s)"
        skipped = data.get("skipped") or []
        lines.append(
            f"    batch {data.get('batch')}{offset}: {', '.join(_vms(data, states)) or 'none'}"
            + (f"; skipped {skipped}" if skipped else "")
        )
    lines.append("  the VMs in the order a resume takes them (highest priority first), now:")
    for ref in expected:
        state = states.get(ref)
        raw = annotations.get(ref)
        try:
            note = json.loads(raw) if raw else {}
        except ValueError:
            note = {}
        note = note if isinstance(note, Mapping) else {}
        lines.append(
            f"    {_label(ref, states)}: {state.power_state if state else 'gone'}, "
            f"annotation resumed={json.dumps(note.get('resumed'))} "
            f"resumedAt={note.get('resumedAt')}, guestinfo {guest.get(ref) or '(cleared)'}"
        )
    return lines


def _achieved_text(achieved: Any) -> str:
    """What a round achieved, per targeted resource: its use after the round against the
    target, and whether the target is met."""
    if not isinstance(achieved, Mapping):
        return "nothing measured after it"
    parts = []
    for resource in ("cpu", "memory"):
        one = achieved.get(resource)
        if isinstance(one, Mapping):
            parts.append(
                f"{resource} after it {one.get('achievedAfterPercent')}% "
                f"(target {one.get('targetPercent')}%)"
            )
    reached = achieved.get("reached")
    verdict = "not judged" if reached is None else "met" if reached is True else "not met"
    return f"{', '.join(parts) or achieved.get('note', 'no target')}: {verdict}"


def _round_event(number: Any, events: Sequence[ReceivedEvent]) -> str:
    """The round's VmPreemptedEvent at the sink, in one line."""
    for event in events:
        data = event.data if isinstance(event.data, Mapping) else {}
        if data.get("round") == number:
            stopped = data.get("loopStopped")
            return (
                f"event {event.id}: round {number} of at most {data.get('maxRounds')}, "
                f"{len(data.get('virtualMachines') or [])} VM(s)"
                + (f", loopStopped {stopped!r}" if stopped else "")
            )
    return f"no {PREEMPTED_EVENT_TYPE} of round {number} arrived"


def round_lines(
    record: Mapping[str, Any] | None,
    events: Sequence[ReceivedEvent],
    states: Mapping[VmRef, VmState],
) -> list[str]:
    """Preempt until relieved: each round (what it stopped, what it achieved, its event) from
    the run's record and the sink, then why the loop stopped."""
    lines = ["  the rounds (the run's record, as `preemptctl history` reads it, and the sink):"]
    if record is None:
        return [*lines, "    (no run record was read)"]
    by_value = {ref.value: ref for ref in states}
    for entry in record.get("rounds") or []:
        if not isinstance(entry, Mapping):
            continue
        stopped = [
            _label(by_value[v], states) if v in by_value else str(v)
            for v in entry.get("stopped") or []
        ]
        lines += [
            f"    round {entry.get('round')}: stopped {', '.join(stopped) or 'none'}; "
            f"{_achieved_text(entry.get('achieved'))}",
            f"      {_round_event(entry.get('round'), events)}",
        ]
    loop = record.get("loop")
    if isinstance(loop, Mapping):
        detail = f" ({loop['detail']})" if loop.get("detail") else ""
        lines.append(
            f"  the loop stopped after {loop.get('rounds')} round(s) of at most "
            f"{loop.get('maxRounds')}: {loop.get('stopped')}{detail}"
        )
    else:
        lines.append("  the record does not say why the loop stopped")
    return lines


def check_lines(checks: Sequence[Check]) -> list[str]:
    lines = []
    for check in checks:
        lines.append(f"  [{'ok' if check.ok else 'FAILED'}] {check.claim}")
        lines += [f"         {problem}" for problem in check.problems]
    return lines
