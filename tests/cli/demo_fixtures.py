"""The demo's scene as its parts' tests build it: vcsim's VMs, a run's plan and what the demo
observed of it, and a workflow history's events."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from temporalio.api.common.v1 import ActivityType, Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    HistoryEvent,
)

from vsphere_preemption.devtools.demo.checks import Expectations, NoticeSeen, Observations, verify
from vsphere_preemption.devtools.demo.events import ALARM_EVENT_TYPE
from vsphere_preemption.devtools.demo.inventory import (
    PRIORITY_CATEGORY,
    PROTECTION_CATEGORY,
    PROTECTION_TAG,
    DemoPlan,
)
from vsphere_preemption.devtools.sink import ReceivedEvent
from vsphere_preemption.domain.model import Criticality, Resources, TagName, VmFacts, VmRef
from vsphere_preemption.domain.plan import Basis, LeaveReason, LeftOut, Plan, Victim
from vsphere_preemption.domain.policy import ResumePolicy
from vsphere_preemption.domain.selection import VmState
from vsphere_preemption.domain.shapes import PlanWire, ResponseExtras
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    RESUMED_EVENT_TYPE,
    SCHEDULED_EVENT_TYPE,
    Annotation,
    WorkflowResponse,
    format_time,
    preempted_event_data,
    vm_ref_to_wire,
)

# -- the scene ----------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALARM = "cluster-cpu-above-80"


# -- the inventory: vcsim's VMs -----------------------------------------------------------


def vm(index: int, power: str = "poweredOn", cluster: str = "DC0_C0") -> VmState:
    first, host = (40, "host-24") if cluster == "DC0_C0" else (140, "host-57")
    ref = VmRef(f"vm-{first + 3 * index}")
    return VmState(ref, f"{cluster}_RP0_VM{index}", power, host, cluster)


VCSIM = [vm(i) for i in range(14)] + [vm(i, cluster="DC0_C1") for i in range(14)]
NAMES = {s.ref: s.name for s in VCSIM}


def as_vcenter_has_it(demo: DemoPlan, boot: dict[VmRef, datetime]) -> list[VmFacts]:
    """The tagged VMs' facts once `prepare` applied the plan, as gather reads them."""
    off = {s.ref: "poweredOff" for s in demo.powered_off}
    off |= {s.ref: "suspended" for s in demo.suspended}
    facts = []
    for state in VCSIM:
        if state.ref not in demo.tagged:
            continue
        tags = {TagName("vsphere-preemption", "preemptible")}
        if state.ref in demo.priorities:
            tags.add(TagName(PRIORITY_CATEGORY, demo.priorities[state.ref]))
        if state.ref == demo.protected.ref:
            tags.add(TagName(PROTECTION_CATEGORY, PROTECTION_TAG))
        facts.append(
            VmFacts(
                ref=state.ref,
                name=state.name,
                power_state=off.get(state.ref, "poweredOn"),
                in_scope=state.cluster == "DC0_C0",
                tags=frozenset(tags),
                boot_time=boot[state.ref],
                allocation=Resources(cpu_mhz=2294.0, memory_mb=32.0),
            )
        )
    return facts


# -- a run the checks read: its plan, what the demo observed, the claims ------------------

ON = [vm(i) for i in range(4)]
OFF_BEFORE = vm(4, "poweredOff")
ELSEWHERE_VM = vm(0, cluster="DC0_C1")
PROTECTED = ON[2]
SELECTED = [ON[1].ref, ON[0].ref]  # the plan's order, not the names'
CLUSTER = VmRef("domain-c15", "ClusterComputeResource")
LEFT_OUT = {
    ON[3].ref: LeaveReason.OVER_CAP,
    PROTECTED.ref: LeaveReason.PROTECTED,
    OFF_BEFORE.ref: LeaveReason.NOT_RUNNING,
    ELSEWHERE_VM.ref: LeaveReason.OUT_OF_SCOPE,
}


NO_RESUME = ResumePolicy()


def expectations(resume: ResumePolicy = NO_RESUME) -> Expectations:
    return Expectations(
        workflow_id=ALARM,
        tag="preemptible",
        criticality=Criticality.HIGH,
        trigger_event_id="4242",
        event_source="127.0.0.1:7233/vsphere-preemption",
        entity=CLUSTER,
        cluster="DC0_C0",
        victims=tuple(SELECTED),
        left_out=LEFT_OUT,
        stay_on=(PROTECTED.ref, ELSEWHERE_VM.ref),
        action="poweroff",
        notice_seconds=5.0,
        resume=resume,
        resume_order=(SELECTED[1], SELECTED[0]),  # priority 5, then 1
    )


RESUMING = ResumePolicy(True, batch_size=1, interval_seconds=2.0)
NOT_BEFORE = NOW + timedelta(seconds=5)
GUEST = json.dumps(
    {"action": "poweroff", "notBefore": format_time(NOT_BEFORE), "workflowID": ALARM}
)


def the_plan(
    victims: list[VmRef] = SELECTED,
    priorities: tuple[int, ...] = (1, 5),
    left_out: dict[VmRef, LeaveReason] = LEFT_OUT,
) -> PlanWire:
    return Plan(
        victims=tuple(
            Victim(r, NAMES[r], p, f"priority {p}", Resources(), Basis.NONE)
            for r, p in zip(victims, priorities, strict=True)
        ),
        left_out=tuple(LeftOut(r, NAMES.get(r), why, str(why)) for r, why in left_out.items()),
        target=None,
        budgets=(),
        notes=(),
        criticality=Criticality.HIGH,
    ).to_wire()


def extras(**changes: Any) -> ResponseExtras:
    # Hand-made, as a worker might answer: the demo reads them as they are.
    extra = {"entity": vm_ref_to_wire(CLUSTER), "scope": "entity", "plan": the_plan(), **changes}
    return cast("ResponseExtras", extra)


def annotation(**changes: Any) -> Annotation:
    base = Annotation(
        tag="preemptible",
        forced_shutdown=True,
        criticality=Criticality.HIGH,
        workflow_id=ALARM,
        workflow_started=NOW,
        event={"specversion": "1.0", "id": "4242", "source": "s", "type": ALARM_EVENT_TYPE},
        extra={"action": "poweroff"},
    )
    return replace(base, **changes)


def good_observations() -> Observations:
    before = {s.ref: s for s in [*ON, OFF_BEFORE, ELSEWHERE_VM]}
    after = dict(before)
    for ref in SELECTED:
        after[ref] = replace(before[ref], power_state="poweredOff")
    note = annotation()
    scheduled = ReceivedEvent(
        {
            "id": f"{ALARM}-4242-scheduled",
            "type": SCHEDULED_EVENT_TYPE,
            "time": NOW + timedelta(seconds=0.1),
        },
        {
            "action": "poweroff",
            "notBefore": format_time(NOT_BEFORE),
            "noticeSeconds": 5.0,
            "virtualMachines": [vm_ref_to_wire(r) for r in SELECTED],
        },
        "binary",
    )
    event = ReceivedEvent(
        {
            "id": f"{ALARM}-4242",
            "type": PREEMPTED_EVENT_TYPE,
            "source": "127.0.0.1:7233/vsphere-preemption",
            "time": NOT_BEFORE + timedelta(seconds=0.2),
        },
        {**preempted_event_data(note, SELECTED), **extras()},
        "binary",
    )
    return Observations(
        raising_reply=(200, {"decision": "preempt"}),
        before=before,
        after=after,
        state=WorkflowResponse(
            workflow_id=ALARM,
            run_id="r",
            last_preemption=NOW,
            virtual_machines=tuple(SELECTED),
            tag="preemptible",
            criticality=Criticality.HIGH,
            event=note.event,
            extra=extras(),
        ),
        annotations={ref: note.to_json() for ref in SELECTED},
        events=[scheduled, event],
        lowering_reply=(200, {"decision": "cancel"}),
        final_status="completed",
        notice=NoticeSeen(
            NOW + timedelta(seconds=1),
            {ref: before[ref] for ref in SELECTED},
            dict.fromkeys(SELECTED, GUEST),
        ),
        after_lowering=after,
        annotations_after_lowering={ref: note.to_json() for ref in SELECTED},
        guest_after_lowering=dict.fromkeys(SELECTED, GUEST),
    )


def resumed_observations() -> Observations:
    """As good_observations, then a resume: one VM per batch, priority 5 first, 2.5 s apart."""
    obs = good_observations()
    order = (SELECTED[1], SELECTED[0])
    resumed = [
        ReceivedEvent(
            {
                "id": f"{ALARM}-resume-2-{n}",
                "type": RESUMED_EVENT_TYPE,
                "time": NOW + timedelta(seconds=10 + 2.5 * n),
            },
            {
                "workflowID": ALARM,
                "batch": n,
                "virtualMachines": [vm_ref_to_wire(ref)],
                "skipped": [],
            },
            "binary",
        )
        for n, ref in enumerate(order, 1)
    ]
    note = annotation(
        extra={"action": "poweroff", "resumed": True, "resumedAt": "2026-03-01T12:00:12Z"}
    )
    return replace(
        obs,
        events=[*obs.events, *resumed],
        after_lowering={**obs.after, **{ref: obs.before[ref] for ref in SELECTED}},
        annotations_after_lowering={ref: note.to_json() for ref in SELECTED},
        guest_after_lowering={},
    )


def failures(obs: Observations, resume: ResumePolicy = NO_RESUME) -> dict[str, tuple[str, ...]]:
    return {c.claim: c.problems for c in verify(expectations(resume), obs) if not c.ok}


def _one_failure(obs: Observations, resume: ResumePolicy = NO_RESUME) -> tuple[str, str]:
    found = failures(obs, resume)
    assert len(found) == 1, found
    ((claim, problems),) = found.items()
    return claim, " | ".join(problems)


SCHEDULED = (
    f"the sink received the {SCHEDULED_EVENT_TYPE} first: the victims, poweroff, notBefore 5s on"
)
DURING = "during the notice the victims were still on, each with the notice in its guestinfo"
STAYED_OFF = "after the lowering the preempted VMs stayed off (the policy resumes nothing)"
RESUMED = "after the lowering every preempted VM is on again, no other VM changed"
BATCHES = (
    f"the resume went highest priority first, 1 at a time, 2s apart (one {RESUMED_EVENT_TYPE} "
    "per batch)"
)
RESUMED_NOTES = "each resumed VM's annotation now says resumed: true; its guest notice is cleared"


# -- a workflow history's events ----------------------------------------------------------


def history_event(event_id: int, kind: EventType.ValueType, seconds: float, **attrs: Any) -> Any:
    event = HistoryEvent(event_id=event_id, event_type=kind, **attrs)
    event.event_time.FromDatetime(NOW + timedelta(seconds=seconds))
    return event


def json_payloads(value: Any) -> Payloads:
    return Payloads(payloads=[Payload(data=json.dumps(value).encode())])


E = EventType


def activity(event_id: int, name: str, seconds: float, given: Any = None) -> Any:
    return history_event(
        event_id,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        seconds,
        activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
            activity_type=ActivityType(name=name),
            input=json_payloads(given) if given is not None else None,
        ),
    )


def done(event_id: int, scheduled: int, seconds: float, result: Any) -> Any:
    return history_event(
        event_id,
        E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        seconds,
        activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
            scheduled_event_id=scheduled, result=json_payloads(result)
        ),
    )


def timer(event_id: int, seconds: float, wait: float) -> Any:
    event = history_event(event_id, E.EVENT_TYPE_TIMER_STARTED, seconds)
    event.timer_started_event_attributes.timer_id = str(event_id)
    event.timer_started_event_attributes.start_to_fire_timeout.FromTimedelta(
        timedelta(seconds=wait)
    )
    return event


def fired(event_id: int, started: int, seconds: float) -> Any:
    event = history_event(event_id, E.EVENT_TYPE_TIMER_FIRED, seconds)
    event.timer_fired_event_attributes.started_event_id = started
    return event
