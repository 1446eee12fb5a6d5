"""A workflow's history told as steps a newcomer can follow.

Pure: Temporal history events in, lines of text out. The demo polls the history of
the alarm's workflow and prints what each new event means: the signal, each
activity (with what the worker answered: which VMs it picked and why it left the
others), the cancel, the end. Results are read from the JSON payloads as Temporal's
default converter wrote them; a payload that does not read as expected only loses
its detail, never the line.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from vsphere_preemption.devtools.demo.report import REASON_TEXT
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.temporal.contracts import (
    ANNOTATE_VMS,
    GET_PREEMPTIBLE_VMS,
    PLAN_PREEMPTION,
    POWER_OFF_VMS,
    READ_ENTITY_USAGE,
    READ_ENTITY_USE,
    RESUME_VMS,
    SEND_PREEMPTED_EVENT,
    SET_GUEST_NOTICE,
)
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE

E = EventType
_ACTIVITY_CLOSED = (
    E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    E.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    E.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
)
_WORKFLOW_CLOSED = (
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
)
_WHAT = {
    GET_PREEMPTIBLE_VMS: "find the powered-on VMs carrying the tag",
    PLAN_PREEMPTION: "read the tagged VMs' facts from vCenter, choose the victims",
    READ_ENTITY_USAGE: "read the alarmed entity's use again",
    READ_ENTITY_USE: "read the alarmed entity's use again, on the policy's basis",
    POWER_OFF_VMS: "power them off",
    ANNOTATE_VMS: "write the preemption annotation on each",
    SEND_PREEMPTED_EVENT: "send the VmPreemptedEvent to K_SINK",
    SET_GUEST_NOTICE: "write the notice into each victim's guestinfo",
    RESUME_VMS: "power them on again, those nobody changed since",
}


def _event_type(data: Any) -> str:
    """The short name of the CloudEvent type a SendPreemptedEvent input carries."""
    kind = data.get("event_type") if isinstance(data, Mapping) else None
    name = str(kind or PREEMPTED_EVENT_TYPE).rsplit(".", 2)
    return name[-2] if len(name) == 3 else str(kind)


def _is_preempted_event(sent: Any) -> bool:
    """A SendPreemptedEvent input that sends a round's VmPreemptedEvent (its default type)."""
    kind = sent.get("event_type") if isinstance(sent, Mapping) else None
    return kind in (None, "", PREEMPTED_EVENT_TYPE)


def _round(sent: Any) -> str:
    """A round's place in a preempt-until-relieved loop, as its VmPreemptedEvent says it."""
    data = _text_json(sent.get("data_json")) if isinstance(sent, Mapping) else None
    if not isinstance(data, Mapping) or "round" not in data:
        return ""
    achieved = data.get("achieved")
    reached = achieved.get("reached") if isinstance(achieved, Mapping) else None
    target = "" if reached is None else "; target met" if reached is True else "; target not met"
    stopped = f"; the loop stops: {data['loopStopped']}" if data.get("loopStopped") else ""
    return f" of round {data['round']} (of at most {data.get('maxRounds')}{target}{stopped})"


def _use(result: Mapping[str, Any]) -> str:
    """An entity's use, as ReadEntityUse answers it: each resource against its capacity."""
    used, capacity = result.get("used"), result.get("capacity")
    if not isinstance(used, Mapping) or not isinstance(capacity, Mapping):
        return "done"
    parts = []
    for key, unit in (("cpu_mhz", "MHz"), ("memory_mb", "MB")):
        amount, whole = used.get(key), capacity.get(key)
        if isinstance(amount, int | float) and isinstance(whole, int | float) and whole:
            parts.append(f"{amount:g} of {whole:.0f} {unit} ({100 * amount / whole:.2f}%)")
    return "in use now: " + ("; ".join(parts) or "no figures")


def _text_json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _done_on(done: Any, failed: Any, text: str) -> str:
    """`text` with the count done, and how many failed if any did."""
    failures = len(failed or [])
    return text.format(len(done or [])) + (f", {failures} failed" if failures else "")


def _json(payloads: Payloads | None) -> Any:
    if payloads is None or not payloads.payloads:
        return None
    return _payload_json(payloads.payloads[0])


def _payload_json(payload: Payload) -> Any:
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


def _ref(obj: Any) -> VmRef | None:
    if isinstance(obj, Mapping) and isinstance(obj.get("value"), str):
        return VmRef(value=obj["value"], type=str(obj.get("type") or "VirtualMachine"))
    return None


def _seconds(value: Any) -> str:
    return f"{value:g}s" if isinstance(value, int | float) else "?"


def _selection(policy: Mapping[str, Any]) -> str:
    """The policy file's choice rules, in one line."""
    parts = [f"scope {policy.get('scope')}"]
    priority = policy.get("priority")
    if isinstance(priority, Mapping) and priority.get("category"):
        levels = priority.get("levels") or {}
        ranked = ", ".join(
            f"{tag} {level}" for tag, level in sorted(levels.items(), key=lambda item: item[1])
        )
        parts.append(
            f"priority from tags of {priority.get('category')!r} ({ranked}; "
            f"default {priority.get('default')})"
        )
    protection = policy.get("protection")
    for tag in protection if isinstance(protection, list) else [protection]:
        if isinstance(tag, Mapping):
            parts.append(f"protection tag {tag.get('category')}/{tag.get('tag')}")
    return "choice: " + ", ".join(parts)


def _care(policy: Mapping[str, Any]) -> str:
    """The policy file's notice, actions and resume, in one line."""
    notice = policy.get("notice")
    notice = notice if isinstance(notice, Mapping) else {}
    actions = policy.get("actions")
    actions = actions if isinstance(actions, Mapping) else {}
    levels = ", ".join(
        f"{level} {notice.get(level, '?')} then {_action(actions.get(level))}"
        for level in ("LOW", "MEDIUM", "HIGH")
    )
    guest = " (also in the guest's guestinfo)" if notice.get("guest") else ""
    resume = policy.get("resume")
    resume = resume if isinstance(resume, Mapping) else {}
    back = (
        f"resume on clear: {resume.get('batchSize')} at a time, {resume.get('interval')} apart"
        if resume.get("enabled")
        else "no resume on clear"
    )
    return f"notice: {levels}{guest}; {back}"


def _action(entry: Any) -> str:
    return str(entry.get("action", "?")) if isinstance(entry, Mapping) else "?"


def is_closed(events: Sequence[HistoryEvent]) -> bool:
    return any(e.event_type in _WORKFLOW_CLOSED for e in events)


def _since_last_signal(events: Sequence[HistoryEvent]) -> Sequence[HistoryEvent] | None:
    last_signal = max(
        (
            i
            for i, e in enumerate(events)
            if e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ),
        default=None,
    )
    return None if last_signal is None else events[last_signal:]


def notice_started(events: Sequence[HistoryEvent]) -> bool:
    """The last signal's run waits out its notice: it started a timer that has not fired."""
    after = _since_last_signal(events) or ()
    started = {e.event_id for e in after if e.event_type == E.EVENT_TYPE_TIMER_STARTED}
    return bool(started - _closed_timers(after))


def _closed_timers(events: Sequence[HistoryEvent]) -> set[int]:
    closed = set()
    for e in events:
        if e.event_type == E.EVENT_TYPE_TIMER_FIRED:
            closed.add(int(e.timer_fired_event_attributes.started_event_id))
        elif e.event_type == E.EVENT_TYPE_TIMER_CANCELED:
            closed.add(int(e.timer_canceled_event_attributes.started_event_id))
    return closed


def run_finished(events: Sequence[HistoryEvent]) -> bool:
    """The last signal's run is over: it scheduled activities, none is open (nor a timer), the
    workflow waits.

    The workflow runs a signal's activities one after the other; when the run ends,
    its last workflow task completes without scheduling anything new.
    """
    after = _since_last_signal(events)
    if after is None:
        return False
    timers = {e.event_id for e in after if e.event_type == E.EVENT_TYPE_TIMER_STARTED}
    scheduled = {e.event_id for e in after if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    closed = {_scheduled_id(e) for e in after if e.event_type in _ACTIVITY_CLOSED}
    return (
        bool(scheduled)
        and scheduled <= closed
        and timers <= _closed_timers(after)
        and after[-1].event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ) or is_closed(events)


def _scheduled_id(event: HistoryEvent) -> int:
    for name in (
        "activity_task_completed_event_attributes",
        "activity_task_failed_event_attributes",
        "activity_task_timed_out_event_attributes",
        "activity_task_canceled_event_attributes",
    ):
        if event.HasField(name):
            return int(getattr(event, name).scheduled_event_id)
    return -1


class HistoryNarrator:
    """Feed it the whole history each time; it returns lines for the events it has not told."""

    def __init__(self, names: Mapping[VmRef, str]) -> None:
        self._names = names
        self._told = 0
        self._activities: dict[int, str] = {}
        self._start: datetime | None = None
        self._lowered = False  # the cancel came: timers from now on space resume batches
        # A round's VmPreemptedEvent was the last thing scheduled: a timer now is the loop's
        # settle (preempt until relieved), not a notice.
        self._after_report = False
        self._settles: set[int] = set()  # the settle timers' started event ids

    def lines(self, events: Sequence[HistoryEvent]) -> list[str]:
        out: list[str] = []
        for event in events[self._told :]:
            when = event.event_time.ToDatetime()
            self._start = self._start or when
            for text in self._tell(event):
                out.append(f"[{(when - self._start).total_seconds():5.1f}s] {text}")
        self._told = max(self._told, len(events))
        return out

    def _name(self, ref: VmRef) -> str:
        name = self._names.get(ref)
        return f"{name} ({ref.value})" if name else f"{ref.type} {ref.value}"

    def _tell(self, event: HistoryEvent) -> list[str]:
        kind = event.event_type
        teller = self._tellers().get(kind)
        if teller is not None:
            return teller(event)
        if kind in _ACTIVITY_CLOSED:
            return [f"  {E.Name(kind).removeprefix('EVENT_TYPE_ACTIVITY_TASK_').lower()}"]
        if kind in _WORKFLOW_CLOSED:
            return [f"workflow {E.Name(kind).removeprefix('EVENT_TYPE_WORKFLOW_EXECUTION_')}"]
        return []

    @functools.cache  # noqa: B019 (one narrator per demo run: the table is built once for it)
    def _tellers(self) -> dict[int, Callable[[HistoryEvent], list[str]]]:
        """What each kind of history event is told as (the others are not told)."""
        return {
            E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: self._started,
            E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: lambda e: [self._signal(e)],
            E.EVENT_TYPE_MARKER_RECORDED: self._marker,
            E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: self._scheduled,
            E.EVENT_TYPE_ACTIVITY_TASK_STARTED: self._activity_started,
            E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: self._completed,
            E.EVENT_TYPE_TIMER_STARTED: self._timer_started,
            E.EVENT_TYPE_TIMER_FIRED: self._timer_fired,
            E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED: self._cancel_requested,
            E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: lambda _: [
                "workflow completed (its result is the last run's state)"
            ],
        }

    @staticmethod
    def _started(event: HistoryEvent) -> list[str]:
        started = event.workflow_execution_started_event_attributes
        return [
            f"workflow {started.workflow_type.name} started (task queue {started.task_queue.name})"
        ]

    def _scheduled(self, event: HistoryEvent) -> list[str]:
        attrs = event.activity_task_scheduled_event_attributes
        name = attrs.activity_type.name
        self._activities[event.event_id] = name
        what = _WHAT.get(name, "scheduled")
        self._after_report = False
        if name == SEND_PREEMPTED_EVENT:
            sent = _json(attrs.input)
            what = f"send the {_event_type(sent)}{_round(sent)} to K_SINK"
            self._after_report = _is_preempted_event(sent)
        if name == SET_GUEST_NOTICE:
            given = _json(attrs.input)
            if isinstance(given, Mapping) and given.get("value") == "":
                what = "clear the notice from their guestinfo"
        return [f"activity {name}: {what}"]

    @staticmethod
    def _activity_started(event: HistoryEvent) -> list[str]:
        attempt = event.activity_task_started_event_attributes.attempt
        return [f"  retrying (attempt {attempt})"] if attempt > 1 else []

    def _completed(self, event: HistoryEvent) -> list[str]:
        attrs = event.activity_task_completed_event_attributes
        name = self._activities.get(attrs.scheduled_event_id, "")
        return self._result(name, _json(attrs.result))

    def _timer_started(self, event: HistoryEvent) -> list[str]:
        timeout = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        seconds = _seconds(timeout.total_seconds())
        if self._lowered:
            return [f"timer: {seconds} before the next batch (a durable timer)"]
        if self._after_report:
            self._settles.add(event.event_id)
            return [
                f"settle: a durable timer of {seconds}; then the use is read again and the "
                "plan made anew"
            ]
        return [f"notice: a durable timer of {seconds}; nothing is stopped before it fires"]

    def _timer_fired(self, event: HistoryEvent) -> list[str]:
        if event.timer_fired_event_attributes.started_event_id in self._settles:
            return ["  settled: the next round plans again"]
        return ["  timer fired" if self._lowered else "  notice over: acting now"]

    def _cancel_requested(self, _: HistoryEvent) -> list[str]:
        self._lowered = True
        return ["cancel requested: the workflow stops waiting for signals"]

    def _signal(self, event: HistoryEvent) -> str:
        attrs = event.workflow_execution_signaled_event_attributes
        request = _json(attrs.input)
        if not isinstance(request, Mapping):
            return f"signal {attrs.signal_name} received"
        trigger = request.get("event")
        if not isinstance(trigger, Mapping):
            trigger = {}
        return (
            f"signal {attrs.signal_name} received: tag {request.get('tag')!r}, "
            f"criticality {request.get('criticality')}, event {trigger.get('id', '')!r}"
        )

    def _marker(self, event: HistoryEvent) -> list[str]:
        # Our workflow's only local activity reads the worker's policy; the SDK keeps
        # a local activity's result in the marker's `result` detail.
        policy = _json(event.marker_recorded_event_attributes.details.get("result"))
        if not isinstance(policy, Mapping) or "max_vms" not in policy:
            return []
        lines = [
            f"worker policy: at most {policy.get('max_vms')} VMs per run, cooldown "
            f"{_seconds(policy.get('cooldown_seconds'))}, soft-shutdown grace "
            f"{_seconds(policy.get('soft_shutdown_grace_seconds'))}"
        ]
        selection = policy.get("selection")
        if isinstance(selection, Mapping):
            lines.append(f"  {_selection(selection)}")
            lines.append(f"  {_care(selection)}")
        return lines

    def _result(self, name: str, result: Any) -> list[str]:
        if name == SEND_PREEMPTED_EVENT:
            return ["  the sink acknowledged it"]
        if not isinstance(result, Mapping):
            return ["  done"]
        teller = {
            SET_GUEST_NOTICE: self._noticed,
            RESUME_VMS: self._resumed,
            GET_PREEMPTIBLE_VMS: self._picked,
            PLAN_PREEMPTION: self._plan,
            READ_ENTITY_USE: lambda r: [f"  {_use(r)}"],
            POWER_OFF_VMS: self._powered_off,
            ANNOTATE_VMS: self._annotated,
        }.get(name)
        return ["  done"] if teller is None else teller(result)

    @staticmethod
    def _noticed(result: Mapping[str, Any]) -> list[str]:
        return [_done_on(result.get("written"), result.get("failed"), "  done on {} VMs")]

    @staticmethod
    def _powered_off(result: Mapping[str, Any]) -> list[str]:
        off = [r for r in map(_ref, result.get("powered_off") or []) if r]
        return [_done_on(off, result.get("failed"), "  confirmed off: {} VMs")]

    @staticmethod
    def _annotated(result: Mapping[str, Any]) -> list[str]:
        return [_done_on(result.get("annotated"), result.get("failed"), "  annotated {} VMs")]

    def _resumed(self, result: Mapping[str, Any]) -> list[str]:
        on = [r for r in map(_ref, result.get("resumed") or []) if r]
        lines = [f"  powered on: {', '.join(map(self._name, on)) or 'none'}"]
        for key in ("skipped", "failed"):
            lines += self._issues(result.get(key), key)
        return lines

    def _picked(self, result: Mapping[str, Any]) -> list[str]:
        selected = [r for r in map(_ref, result.get("selected") or []) if r]
        lines = [f"  picked {len(selected)}: " + ", ".join(map(self._name, selected))]
        return lines + self._issues(result.get("left_out"), "left out")

    def _issues(self, issues: Any, label: str) -> list[str]:
        """`  <label> <name>: <reason>` for each issue (`{"vm", "reason"}`) that names a VM."""
        lines: list[str] = []
        for issue in issues or []:
            ref = _ref(issue.get("vm")) if isinstance(issue, Mapping) else None
            if ref is not None:
                lines.append(f"  {label} {self._name(ref)}: {issue.get('reason')}")
        return lines

    def _plan(self, result: Mapping[str, Any]) -> list[str]:
        plan = result.get("plan")
        if not isinstance(plan, Mapping):
            return ["  done"]
        victims = [v for v in plan.get("victims") or [] if isinstance(v, Mapping)]
        named = [f"{v.get('name')} (priority {v.get('priority')})" for v in victims]
        lines = [f"  plan: {len(victims)} victims, in order: " + (", ".join(named) or "none")]
        reasons: dict[str, int] = {}
        for left in plan.get("leftOut") or []:
            if isinstance(left, Mapping):
                raw = str(left.get("reason", "?"))
                reason = next((t for r, t in REASON_TEXT.items() if r.value == raw), raw)
                reasons[reason] = reasons.get(reason, 0) + 1
        if reasons:
            counts = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
            lines.append(f"  left out: {counts}")
        scoped = result.get("scope_vms")
        if isinstance(scoped, int):
            lines.append(f"  (the alarmed entity holds {scoped} VMs, tagged or not)")
        return lines
