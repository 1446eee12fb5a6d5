"""What the demo must have seen for it to pass, checked on what it read back.

Pure: observations in (HTTP replies, power states before and after, the annotations
and the events as read back), one `Check` per claim out, each with the reason it
failed. The demo exits 0 only when every check holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vsphere_preemption.devtools.sink import ReceivedEvent
from vsphere_preemption.domain.model import Criticality, Selection, VmRef
from vsphere_preemption.domain.selection import PowerState, VmState
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    Annotation,
    WireError,
    WorkflowResponse,
    preempted_event_id,
    vm_ref_from_wire,
)


@dataclass(frozen=True)
class Check:
    claim: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Expectations:
    workflow_id: str  # the alarm name
    tag: str
    criticality: Criticality  # what the raising event's `to` status maps to
    trigger_event_id: str  # id of the raising CloudEvent the demo sent
    event_source: str  # <TEMPORAL_URL>/<namespace>
    selection: Selection  # what the worker should preempt


@dataclass(frozen=True)
class Observations:
    raising_reply: tuple[int, Any]  # HTTP status, JSON body
    before: Mapping[VmRef, VmState]
    after: Mapping[VmRef, VmState]
    state: WorkflowResponse | None  # `current_state` after the run
    annotations: Mapping[VmRef, str]  # raw custom field values, every VM that has one
    events: Sequence[ReceivedEvent]  # what the sink received
    lowering_reply: tuple[int, Any]
    final_status: str  # the workflow's status once the demo stopped waiting


def _reply(claim: str, reply: tuple[int, Any], decision: str) -> Check:
    status, body = reply
    got = body.get("decision") if isinstance(body, Mapping) else None
    if status == 200 and got == decision:
        return Check(claim)
    return Check(claim, (f"HTTP {status}, decision {got!r}, body {body!r}",))


def _names(refs: Sequence[VmRef] | set[VmRef], states: Mapping[VmRef, VmState]) -> str:
    def label(ref: VmRef) -> str:
        state = states.get(ref)
        return f"{state.name} ({ref.value})" if state else ref.value

    return ", ".join(label(r) for r in sorted(refs)) or "none"


def _power(expect: Expectations, obs: Observations) -> Check:
    wanted = set(expect.selection.selected)
    went_off = {
        ref
        for ref, state in obs.after.items()
        if state.power_state == PowerState.POWERED_OFF
        and ref in obs.before
        and obs.before[ref].power_state == PowerState.POWERED_ON
    }
    changed = {
        ref
        for ref, state in obs.after.items()
        if ref in obs.before and obs.before[ref].power_state != state.power_state
    }
    problems = []
    if missing := wanted - went_off:
        problems.append(f"still not off: {_names(missing, obs.before)}")
    if extra := changed - wanted:
        problems.append(f"changed but not expected: {_names(extra, obs.before)}")
    if gone := set(obs.before) - set(obs.after):
        problems.append(f"VMs no longer found: {_names(gone, obs.before)}")
    return Check(f"exactly the {len(wanted)} expected VMs were powered off", tuple(problems))


def _state(expect: Expectations, obs: Observations) -> Check:
    claim = "the workflow's current_state names the preempted VMs"
    state = obs.state
    if state is None:
        return Check(claim, ("no answer to the current_state query",))
    problems = []
    if set(state.virtual_machines or ()) != set(expect.selection.selected):
        problems.append(f"virtualMachines {_names(list(state.virtual_machines or ()), obs.before)}")
    if state.tag != expect.tag or state.criticality != expect.criticality:
        problems.append(f"tag {state.tag!r}, criticality {state.criticality}")
    if state.event.get("id") != expect.trigger_event_id:
        problems.append(f"event id {state.event.get('id')!r}")
    return Check(claim, tuple(problems))


def _annotation_problems(expect: Expectations, raw: str | Mapping[str, Any]) -> list[str]:
    try:
        note = Annotation.from_wire(raw)
    except WireError as exc:
        return [f"does not parse: {exc}"]
    problems = []
    if not note.preempted or note.tag != expect.tag or note.workflow_id != expect.workflow_id:
        problems.append(
            f"preempted={note.preempted} tag={note.tag!r} workflowID={note.workflow_id!r}"
        )
    if note.criticality != expect.criticality or not note.forced_shutdown:
        # Anything but LOW is a hard power-off (docs/wire.md, the Go worker's rule).
        problems.append(f"criticality {note.criticality} forcedShutdown={note.forced_shutdown}")
    if note.event.get("id") != expect.trigger_event_id:
        problems.append(f"event id {note.event.get('id')!r}")
    return problems


def _annotations(expect: Expectations, obs: Observations) -> Check:
    problems = []
    for ref in expect.selection.selected:
        raw = obs.annotations.get(ref)
        name = _names([ref], obs.before)
        if raw is None:
            problems.append(f"{name}: no annotation")
            continue
        problems += [f"{name}: {p}" for p in _annotation_problems(expect, raw)]
    if extra := set(obs.annotations) - set(expect.selection.selected):
        problems.append(f"annotated but not preempted: {_names(extra, obs.before)}")
    return Check("each preempted VM carries a valid annotation, no other VM does", tuple(problems))


def _event(expect: Expectations, obs: Observations) -> Check:
    claim = f"the sink received the {PREEMPTED_EVENT_TYPE}"
    received = [e for e in obs.events if e.type == PREEMPTED_EVENT_TYPE]
    if not received:
        return Check(claim, (f"nothing of that type arrived ({len(obs.events)} other events)",))
    wanted_id = preempted_event_id(expect.workflow_id, {"id": expect.trigger_event_id})
    problems = []
    # A retried send repeats the same id, so duplicates are fine; other ids are not.
    if ids := {e.id for e in received} - {wanted_id}:
        problems.append(f"ids {sorted(ids)} (expected {wanted_id!r})")
    event = received[0]
    if event.source != expect.event_source:
        problems.append(f"source {event.source!r} (expected {expect.event_source!r})")
    data = event.data if isinstance(event.data, Mapping) else {}
    try:
        vms = {vm_ref_from_wire(v) for v in data.get("virtualMachines") or []}
    except WireError as exc:
        problems.append(f"virtualMachines: {exc}")
        vms = set()
    if vms != set(expect.selection.selected):
        problems.append(f"virtualMachines {_names(vms, obs.before)}")
    problems += [f"data: {p}" for p in _annotation_problems(expect, data)]
    return Check(claim, tuple(problems))


def verify(expect: Expectations, obs: Observations) -> list[Check]:
    completed = obs.final_status == "completed"
    return [
        _reply("the function accepted the raising alarm event", obs.raising_reply, "preempt"),
        _power(expect, obs),
        _state(expect, obs),
        _annotations(expect, obs),
        _event(expect, obs),
        _reply("the function accepted the lowering alarm event", obs.lowering_reply, "cancel"),
        Check(
            "the workflow completed after the lowering event",
            () if completed else (f"its status is {obs.final_status}",),
        ),
    ]
