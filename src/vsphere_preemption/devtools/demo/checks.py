"""What the demo must have seen for it to pass, checked on what it read back.

Pure: observations in (HTTP replies, power states before and after, the annotations
and the events as read back), one `Check` per claim out, each with the reason it
failed. The demo exits 0 only when every check holds.

With --loop a run has rounds: `Expectations.victims` and `left_out` are the first round's
plan, `later` the plans of the rounds after it; what the whole run stopped is
`all_victims`, and the plan the workflow answers last is the last round's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from vsphere_preemption.devtools.demo.inventory import Expected
from vsphere_preemption.devtools.sink import ReceivedEvent
from vsphere_preemption.domain.model import Criticality, MoRef, VmRef
from vsphere_preemption.domain.plan import LeaveReason, Plan
from vsphere_preemption.domain.policy import ResumePolicy
from vsphere_preemption.domain.selection import PowerState, VmState
from vsphere_preemption.temporal.workflow import TARGET_MET
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    RESUMED_EVENT_TYPE,
    SCHEDULED_EVENT_TYPE,
    Annotation,
    WireError,
    WorkflowResponse,
    parse_time,
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
    action: str  # the policy's stop action for the criticality (StopAction value)
    notice_seconds: float  # the policy's notice for the criticality
    resume: ResumePolicy  # the policy's resume on clear
    resume_order: tuple[VmRef, ...]  # the victims as a resume powers them on: highest first
    later: tuple[Expected, ...] = ()  # --loop: the plans of round 2 on
    max_rounds: int = 1  # the policy's loop.maxRounds
    loop_stopped: str = ""  # --loop: why the loop must have stopped ("target met")

    @property
    def rounds(self) -> tuple[Expected, ...]:
        """Each round's plan, the first one first."""
        return (Expected(self.victims, self.left_out), *self.later)

    @property
    def all_victims(self) -> tuple[VmRef, ...]:
        """What the whole run stops, round after round, in the order they go."""
        return tuple(ref for one in self.rounds for ref in one.victims)

    @property
    def looping(self) -> bool:
        return self.max_rounds > 1


@dataclass(frozen=True)
class NoticeSeen:
    """What the demo read while the workflow waited out its notice."""

    at: datetime  # when it read (UTC), to compare with notBefore
    states: Mapping[VmRef, VmState]  # the victims' power states then
    guest: Mapping[VmRef, str]  # the guest notice variable, every VM that has one


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
    notice: NoticeSeen | None = None  # None: the demo saw no notice
    # Read once the workflow completed after the lowering event:
    after_lowering: Mapping[VmRef, VmState] = field(default_factory=dict)
    annotations_after_lowering: Mapping[VmRef, str] = field(default_factory=dict)
    guest_after_lowering: Mapping[VmRef, str] = field(default_factory=dict)
    # The workflow's run records (its `history` query) once the run finished; None: unread.
    runs: Sequence[Mapping[str, Any]] | None = None


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
    wanted = set(expect.all_victims)
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


def _not_in_state(
    refs: Sequence[VmRef], states: Mapping[VmRef, VmState], power: str, obs: Observations
) -> list[str]:
    """One problem for each VM of `refs` that `states` does not show in `power` (or at all)."""
    problems = []
    for ref in refs:
        state = states.get(ref)
        if state is None or state.power_state != power:
            found = state.power_state if state else "gone"
            problems.append(f"{_names([ref], obs.before)}: {found}")
    return problems


def _stayed_on(expect: Expectations, obs: Observations) -> Check:
    problems = _not_in_state(expect.stay_on, obs.after, PowerState.POWERED_ON, obs)
    return Check("the protected VM and the tagged VMs out of scope are still on", tuple(problems))


def _in_order(refs: Sequence[VmRef], wanted: Sequence[VmRef], obs: Observations) -> list[str]:
    if list(refs) == list(wanted):
        return []
    return [f"{_ordered(refs, obs)} (expected {_ordered(wanted, obs)})"]


def _ordered(refs: Sequence[VmRef], obs: Observations) -> str:
    return ", ".join(_names([r], obs.before) for r in refs) or "none"


def _plan_problems(
    expect: Expectations, wanted: Expected, extra: Mapping[str, Any], obs: Observations
) -> list[str]:
    """The plan our worker adds to the query answer and the event, checked against the plan
    `wanted` of its round."""
    problems = []
    if extra.get("scope") != "entity" or extra.get("entity") != vm_ref_to_wire(expect.entity):
        problems.append(f"scope {extra.get('scope')!r}, entity {extra.get('entity')!r}")
    try:
        plan = Plan.from_wire(extra.get("plan"))
    except ValueError as exc:
        return [*problems, f"no readable plan: {exc}"]
    problems += [f"victims {p}" for p in _in_order(plan.refs, wanted.victims, obs)]
    levels = [v.priority for v in plan.victims]
    if levels != sorted(levels):
        problems.append(f"victims' priorities not ascending: {levels}")
    got = {o.ref: o.reason for o in plan.left_out}
    for ref, reason in sorted(wanted.left_out.items()):
        if got.get(ref) != reason:
            problems.append(f"{_names([ref], obs.before)} left out as {got.get(ref)}, not {reason}")
    if extra_left := set(got) - set(wanted.left_out):
        problems.append(f"left out unexpectedly: {_names(extra_left, obs.before)}")
    return problems


def _plan(expect: Expectations, obs: Observations) -> Check:
    # The state answers the last plan made: with --loop, the last round's.
    which = f" (round {len(expect.rounds)}'s, the last)" if expect.looping else ""
    claim = f"the plan in the query answer{which}: victims by priority, the others left out and why"
    if obs.state is None:
        return Check(claim, ("no answer to the current_state query",))
    return Check(claim, tuple(_plan_problems(expect, expect.rounds[-1], obs.state.extra, obs)))


def _state(expect: Expectations, obs: Observations) -> Check:
    claim = "the workflow's current_state names the preempted VMs, in the plan's order"
    state = obs.state
    if state is None:
        return Check(claim, ("no answer to the current_state query",))
    problems = [
        f"virtualMachines {p}"
        for p in _in_order(state.virtual_machines or (), expect.all_victims, obs)
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
    if note.extra.get("action") != expect.action:
        problems.append(f"action {note.extra.get('action')!r} (expected {expect.action!r})")
    return problems


def _annotations(expect: Expectations, obs: Observations) -> Check:
    problems = []
    for ref in expect.all_victims:
        raw = obs.annotations.get(ref)
        name = _names([ref], obs.before)
        if raw is None:
            problems.append(f"{name}: no annotation")
            continue
        problems += [f"{name}: {p}" for p in _annotation_problems(expect, raw)]
    if extra := set(obs.annotations) - set(expect.all_victims):
        problems.append(f"annotated but not preempted: {_names(extra, obs.before)}")
    return Check("each preempted VM carries a valid annotation, no other VM does", tuple(problems))


def _round_id(expect: Expectations, number: int) -> str:
    """The id of round `number`'s VmPreemptedEvent: the first round's is the Go worker's."""
    first = preempted_event_id(expect.workflow_id, {"id": expect.trigger_event_id})
    return first if number == 1 else f"{first}-round-{number}"


def _wanted_reached(expect: Expectations, number: int) -> bool:
    """Whether round `number` must have reached the target: only the last, when the loop
    stopped because the target was met (an earlier one reaching it would have stopped it)."""
    return number == len(expect.rounds) and expect.loop_stopped == TARGET_MET


def _reached(achieved: Any) -> Any:
    return achieved.get("reached") if isinstance(achieved, Mapping) else None


def _event(expect: Expectations, obs: Observations) -> Check:
    claim = (
        f"the sink received a {PREEMPTED_EVENT_TYPE} per round ({len(expect.rounds)}), each "
        "with its round's VMs and plan, the last saying why the loop stopped"
        if expect.looping
        else f"the sink received the {PREEMPTED_EVENT_TYPE}, with the plan"
    )
    received = _of_type(obs, PREEMPTED_EVENT_TYPE)
    if not received:
        return _nothing_arrived(claim, obs)
    wanted = {_round_id(expect, n): plan for n, plan in enumerate(expect.rounds, 1)}
    problems = []
    # A retried send repeats the same id, so duplicates are fine; other ids are not.
    if ids := {e.id for e in received} - set(wanted):
        problems.append(f"ids {sorted(ids)} (expected {', '.join(map(repr, wanted))})")
    for number, (event_id, plan) in enumerate(wanted.items(), 1):
        event = next((e for e in received if e.id == event_id), None)
        found = (
            [f"none with id {event_id!r}"]
            if event is None
            else _round_event_problems(expect, number, plan, event, obs)
        )
        problems += [f"round {number}: {p}" if expect.looping else p for p in found]
    return Check(claim, tuple(problems))


def _round_event_problems(
    expect: Expectations, number: int, plan: Expected, event: ReceivedEvent, obs: Observations
) -> list[str]:
    problems = []
    if event.source != expect.event_source:
        problems.append(f"source {event.source!r} (expected {expect.event_source!r})")
    data = _data(event)
    vms = _vms(data, problems)
    problems += [f"virtualMachines {p}" for p in _in_order(vms, plan.victims, obs)]
    problems += [f"data: {p}" for p in _annotation_problems(expect, data)]
    problems += [f"data: {p}" for p in _plan_problems(expect, plan, data, obs)]
    if not expect.looping:
        return problems
    last = number == len(expect.rounds)
    told = (data.get("round"), data.get("maxRounds"), data.get("loopStopped"))
    if told != (number, expect.max_rounds, expect.loop_stopped if last else None):
        problems.append(f"round, maxRounds, loopStopped: {told}")
    if (reached := _reached(data.get("achieved"))) is not _wanted_reached(expect, number):
        problems.append(f"achieved.reached {reached!r}")
    return problems


def _of_type(obs: Observations, event_type: str) -> list[ReceivedEvent]:
    return [e for e in obs.events if e.type == event_type]


def _nothing_arrived(claim: str, obs: Observations) -> Check:
    return Check(claim, (f"nothing of that type arrived ({len(obs.events)} other events)",))


def _data(event: ReceivedEvent) -> Mapping[str, Any]:
    return event.data if isinstance(event.data, Mapping) else {}


def _vms(data: Mapping[str, Any], problems: list[str]) -> list[VmRef]:
    """The event's `virtualMachines`; none, and a problem noted, where they do not decode."""
    try:
        return [vm_ref_from_wire(v) for v in data.get("virtualMachines") or []]
    except WireError as exc:
        problems.append(f"virtualMachines: {exc}")
        return []


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(str(value))
    except ValueError:
        return None


def _not_before(obs: Observations) -> datetime | None:
    for event in _of_type(obs, SCHEDULED_EVENT_TYPE):
        data = _data(event)
        try:
            return parse_time(str(data.get("notBefore")))
        except ValueError:
            return None
    return None


def _scheduled(expect: Expectations, obs: Observations) -> Check:
    claim = (
        f"the sink received the {SCHEDULED_EVENT_TYPE} first: the victims, "
        f"{expect.action}, notBefore {expect.notice_seconds:g}s on"
    )
    received = _of_type(obs, SCHEDULED_EVENT_TYPE)
    if not received:
        return _nothing_arrived(claim, obs)
    problems = []
    # Each round announces its own new victims (with --loop, round N's id ends -round-N).
    wanted = {f"{_round_id(expect, n)}-scheduled": p for n, p in enumerate(expect.rounds, 1)}
    if ids := {e.id for e in received} - set(wanted):
        problems.append(f"ids {sorted(ids)} (expected {', '.join(map(repr, wanted))})")
    for event_id, plan in list(wanted.items())[1:]:
        later = next((e for e in received if e.id == event_id), None)
        vms = [] if later is None else _vms(_data(later), problems)
        problems += [f"{event_id}: virtualMachines {p}" for p in _in_order(vms, plan.victims, obs)]
    event = received[0]
    data = _data(event)
    vms = _vms(data, problems)
    problems += [f"virtualMachines {p}" for p in _in_order(vms, expect.victims, obs)]
    if data.get("action") != expect.action or data.get("noticeSeconds") != expect.notice_seconds:
        problems.append(f"action {data.get('action')!r}, noticeSeconds {data.get('noticeSeconds')}")
    not_before = _not_before(obs)
    sent = event.attributes.get("time")
    if not_before is None:
        problems.append(f"notBefore {data.get('notBefore')!r} is not a time")
    elif isinstance(sent, datetime):
        ahead = (not_before - sent).total_seconds()
        # Sent right after the timer's start is fixed: the whole notice ahead, less a moment.
        if not expect.notice_seconds - 2 < ahead <= expect.notice_seconds:
            problems.append(f"notBefore is {ahead:.1f}s after the event's time")
    preempted = _of_type(obs, PREEMPTED_EVENT_TYPE)
    if preempted and obs.events.index(preempted[0]) < obs.events.index(event):
        problems.append(f"it arrived after the {PREEMPTED_EVENT_TYPE}")
    stopped_at = preempted[0].attributes.get("time") if preempted else None
    if not_before is not None and isinstance(stopped_at, datetime) and stopped_at < not_before:
        problems.append(f"the VMs were reported stopped at {stopped_at}, before notBefore")
    return Check(claim, tuple(problems))


def _during_notice(expect: Expectations, obs: Observations) -> Check:
    claim = "during the notice the victims were still on, each with the notice in its guestinfo"
    seen = obs.notice
    if seen is None:
        return Check(claim, ("the demo saw no notice (no timer before the power-off)",))
    problems = []
    not_before = _not_before(obs)
    if not_before is not None and seen.at >= not_before:
        problems.append(f"read at {seen.at}, not before notBefore {not_before}: proves nothing")
    for ref in expect.victims:
        problems += _not_in_state([ref], seen.states, PowerState.POWERED_ON, obs)
        raw = seen.guest.get(ref)
        try:
            note = json.loads(raw) if raw else None
        except ValueError:
            note = None
        wanted = {"action": expect.action, "workflowID": expect.workflow_id}
        if not isinstance(note, Mapping) or any(note.get(k) != v for k, v in wanted.items()):
            problems.append(f"{_names([ref], obs.before)}: guestinfo {raw!r}")
        elif not_before is not None and _time(note.get("notBefore")) != not_before:
            # Without the event's notBefore, the check on the event says so already.
            problems.append(f"{_names([ref], obs.before)}: notBefore {note.get('notBefore')!r}")
    if extra := {r for r, v in seen.guest.items() if v} - set(expect.victims):
        problems.append(f"a notice on VMs that are no victims: {_names(extra, obs.before)}")
    return Check(claim, tuple(problems))


def _stayed_off(expect: Expectations, obs: Observations) -> Check:
    claim = "after the lowering the preempted VMs stayed off (the policy resumes nothing)"
    problems = _not_in_state(expect.all_victims, obs.after_lowering, PowerState.POWERED_OFF, obs)
    if resumed := _of_type(obs, RESUMED_EVENT_TYPE):
        problems.append(f"{len(resumed)} {RESUMED_EVENT_TYPE} arrived")
    return Check(claim, tuple(problems))


def _resumed(expect: Expectations, obs: Observations) -> Check:
    claim = "after the lowering every preempted VM is on again, no other VM changed"
    problems = _not_in_state(expect.all_victims, obs.after_lowering, PowerState.POWERED_ON, obs)
    changed = {
        ref
        for ref, state in obs.after_lowering.items()
        if ref not in expect.all_victims
        and ref in obs.after
        and obs.after[ref].power_state != state.power_state
    }
    if changed:
        problems.append(f"changed but not preempted: {_names(changed, obs.before)}")
    return Check(claim, tuple(problems))


def _resume_batches(expect: Expectations, obs: Observations) -> Check:
    size, interval = expect.resume.batch_size, expect.resume.interval_seconds
    claim = (
        f"the resume went highest priority first, {size} at a time, {interval:g}s apart "
        f"(one {RESUMED_EVENT_TYPE} per batch)"
    )
    received = _of_type(obs, RESUMED_EVENT_TYPE)
    if not received:
        return _nothing_arrived(claim, obs)
    problems: list[str] = []
    batches: list[tuple[int, list[VmRef], datetime | None]] = []
    for event in received:
        data = _data(event)
        vms = _vms(data, problems)
        sent = event.attributes.get("time")
        batch = data.get("batch")
        batches.append(
            (
                batch if isinstance(batch, int) else -1,
                vms,
                sent if isinstance(sent, datetime) else None,
            )
        )
        if data.get("skipped"):
            problems.append(f"batch {batch} skipped {data.get('skipped')}")
    batches.sort(key=lambda b: b[0])
    if (numbers := [b[0] for b in batches]) != list(range(1, len(batches) + 1)):
        problems.append(f"batch numbers {numbers}")
    order = [ref for _, vms, _ in batches for ref in vms]
    if order != list(expect.resume_order):
        problems.append(
            f"powered on {_ordered(order, obs)} (expected {_ordered(expect.resume_order, obs)})"
        )
    sizes = [len(vms) for _, vms, _ in batches]
    if any(n != size for n in sizes[:-1]) or not 0 < sizes[-1] <= size:
        problems.append(f"batch sizes {sizes}")
    for (_, _, earlier), (number, _, later) in itertools.pairwise(batches):
        if earlier and later and later - earlier < timedelta(seconds=interval):
            gap = (later - earlier).total_seconds()
            problems.append(f"batch {number} came {gap:.1f}s after the one before")
    return Check(claim, tuple(problems))


def _resumed_annotations(expect: Expectations, obs: Observations) -> Check:
    claim = "each resumed VM's annotation now says resumed: true; its guest notice is cleared"
    problems = []
    for ref in expect.all_victims:
        name = _names([ref], obs.before)
        raw = obs.annotations_after_lowering.get(ref)
        if raw is None:
            problems.append(f"{name}: no annotation")
            continue
        found = _annotation_problems(expect, raw)
        problems += [f"{name}: {p}" for p in found]
        extra = {} if found else Annotation.from_wire(raw).extra
        if not found and (extra.get("resumed") is not True or not extra.get("resumedAt")):
            problems.append(f"{name}: resumed={extra.get('resumed')!r}")
        if obs.guest_after_lowering.get(ref):
            problems.append(f"{name}: guestinfo still {obs.guest_after_lowering[ref]!r}")
    return Check(claim, tuple(problems))


def _rounds(expect: Expectations, obs: Observations) -> Check:
    """--loop: the run's record holds each round, what it stopped and achieved, and why the
    loop stopped."""
    count = len(expect.rounds)
    claim = (
        f"the run's record: {count} rounds, each with the VMs it stopped and what it achieved; "
        f"the loop stopped: {expect.loop_stopped}"
    )
    if not obs.runs:
        return Check(claim, ("no run record was read (the workflow's history query)",))
    record = obs.runs[-1]
    problems = []
    wanted = {"rounds": count, "maxRounds": expect.max_rounds, "stopped": expect.loop_stopped}
    loop = record.get("loop")
    if not isinstance(loop, Mapping) or {k: loop.get(k) for k in wanted} != wanted:
        problems.append(f"loop {loop!r} (expected {wanted})")
    entries = [e for e in record.get("rounds") or [] if isinstance(e, Mapping)]
    if (numbers := [e.get("round") for e in entries]) != list(range(1, count + 1)):
        problems.append(f"rounds {numbers}")
    for number, (entry, plan) in enumerate(zip(entries, expect.rounds, strict=False), 1):
        # Stopped in the order the power-offs finished: compared as sets.
        stopped = set(entry.get("stopped") or [])
        if stopped != {ref.value for ref in plan.victims}:
            problems.append(f"round {number} stopped {sorted(stopped)}")
        if (reached := _reached(entry.get("achieved"))) is not _wanted_reached(expect, number):
            problems.append(f"round {number}: achieved.reached {reached!r}")
    return Check(claim, tuple(problems))


def verify(expect: Expectations, obs: Observations) -> list[Check]:
    completed = obs.final_status == "completed"
    after_lowering = (
        [_resumed(expect, obs), _resume_batches(expect, obs), _resumed_annotations(expect, obs)]
        if expect.resume.enabled
        else [_stayed_off(expect, obs)]
    )
    return [
        _reply("the function accepted the raising alarm event", obs.raising_reply, "preempt"),
        _scheduled(expect, obs),
        _during_notice(expect, obs),
        _power(expect, obs),
        _stayed_on(expect, obs),
        _plan(expect, obs),
        _state(expect, obs),
        _annotations(expect, obs),
        _event(expect, obs),
        *([_rounds(expect, obs)] if expect.looping else []),
        _reply("the function accepted the lowering alarm event", obs.lowering_reply, "cancel"),
        Check(
            "the workflow completed after the lowering event",
            () if completed else (f"its status is {obs.final_status}",),
        ),
        *after_lowering,
    ]
