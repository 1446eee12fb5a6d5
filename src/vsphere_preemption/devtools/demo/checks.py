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
from vsphere_preemption.domain.model import Criticality, MoRef, VmRef
from vsphere_preemption.domain.plan import LeaveReason, Plan
from vsphere_preemption.domain.selection import PowerState, VmState
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    Annotation,
    WireError,
    WorkflowResponse,
    preempted_event_id,
    vm_ref_from_wire,
    vm_ref_to_wire,
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
    entity: MoRef  # the alarmed cluster
    cluster: str  # its name, as the VMs' placement says it
    victims: tuple[VmRef, ...]  # what the worker should preempt, in the plan's order
    left_out: Mapping[MoRef, LeaveReason]  # every other tagged object, and why
    stay_on: tuple[VmRef, ...]  # running, tagged, never victims: protected, out of scope


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
    wanted = set(expect.victims)
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
    if elsewhere := {r for r in went_off if obs.before[r].cluster != expect.cluster}:
        problems.append(f"off outside {expect.cluster}: {_names(elsewhere, obs.before)}")
    return Check(
        f"exactly the {len(wanted)} planned VMs on {expect.cluster} were powered off",
        tuple(problems),
    )


def _stayed_on(expect: Expectations, obs: Observations) -> Check:
    problems = []
    for ref in expect.stay_on:
        state = obs.after.get(ref)
        if state is None or state.power_state != PowerState.POWERED_ON:
            power = state.power_state if state else "gone"
            problems.append(f"{_names([ref], obs.before)}: {power}")
    return Check("the protected VM and the tagged VMs out of scope are still on", tuple(problems))


def _in_order(refs: Sequence[VmRef], expect: Expectations, obs: Observations) -> list[str]:
    if list(refs) == list(expect.victims):
        return []
    return [f"{_ordered(refs, obs)} (expected {_ordered(expect.victims, obs)})"]


def _ordered(refs: Sequence[VmRef], obs: Observations) -> str:
    return ", ".join(_names([r], obs.before) for r in refs) or "none"


def _plan_problems(expect: Expectations, extra: Mapping[str, Any], obs: Observations) -> list[str]:
    """The plan our worker adds to the query answer and the event, checked on its own."""
    problems = []
    if extra.get("scope") != "entity" or extra.get("entity") != vm_ref_to_wire(expect.entity):
        problems.append(f"scope {extra.get('scope')!r}, entity {extra.get('entity')!r}")
    try:
        plan = Plan.from_wire(extra.get("plan"))
    except ValueError as exc:
        return [*problems, f"no readable plan: {exc}"]
    problems += [f"victims {p}" for p in _in_order(plan.refs, expect, obs)]
    levels = [v.priority for v in plan.victims]
    if levels != sorted(levels):
        problems.append(f"victims' priorities not ascending: {levels}")
    got = {o.ref: o.reason for o in plan.left_out}
    for ref, reason in sorted(expect.left_out.items()):
        if got.get(ref) != reason:
            problems.append(f"{_names([ref], obs.before)} left out as {got.get(ref)}, not {reason}")
    if extra_left := set(got) - set(expect.left_out):
        problems.append(f"left out unexpectedly: {_names(extra_left, obs.before)}")
    return problems


def _plan(expect: Expectations, obs: Observations) -> Check:
    claim = "the plan in the query answer: victims by priority, the others left out and why"
    if obs.state is None:
        return Check(claim, ("no answer to the current_state query",))
    return Check(claim, tuple(_plan_problems(expect, obs.state.extra, obs)))


def _state(expect: Expectations, obs: Observations) -> Check:
    claim = "the workflow's current_state names the preempted VMs, in the plan's order"
    state = obs.state
    if state is None:
        return Check(claim, ("no answer to the current_state query",))
    problems = [
        f"virtualMachines {p}" for p in _in_order(state.virtual_machines or (), expect, obs)
    ]
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
    for ref in expect.victims:
        raw = obs.annotations.get(ref)
        name = _names([ref], obs.before)
        if raw is None:
            problems.append(f"{name}: no annotation")
            continue
        problems += [f"{name}: {p}" for p in _annotation_problems(expect, raw)]
    if extra := set(obs.annotations) - set(expect.victims):
        problems.append(f"annotated but not preempted: {_names(extra, obs.before)}")
    return Check("each preempted VM carries a valid annotation, no other VM does", tuple(problems))


def _event(expect: Expectations, obs: Observations) -> Check:
    claim = f"the sink received the {PREEMPTED_EVENT_TYPE}, with the plan"
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
        vms = [vm_ref_from_wire(v) for v in data.get("virtualMachines") or []]
    except WireError as exc:
        problems.append(f"virtualMachines: {exc}")
        vms = []
    problems += [f"virtualMachines {p}" for p in _in_order(vms, expect, obs)]
    problems += [f"data: {p}" for p in _annotation_problems(expect, data)]
    problems += [f"data: {p}" for p in _plan_problems(expect, data, obs)]
    return Check(claim, tuple(problems))


def verify(expect: Expectations, obs: Observations) -> list[Check]:
    completed = obs.final_status == "completed"
    return [
        _reply("the function accepted the raising alarm event", obs.raising_reply, "preempt"),
        _power(expect, obs),
        _stayed_on(expect, obs),
        _plan(expect, obs),
        _state(expect, obs),
        _annotations(expect, obs),
        _event(expect, obs),
        _reply("the function accepted the lowering alarm event", obs.lowering_reply, "cancel"),
        Check(
            "the workflow completed after the lowering event",
            () if completed else (f"its status is {obs.final_status}",),
        ),
    ]
