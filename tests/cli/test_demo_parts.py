"""The demo's parts on their own: its alarm events, its plan, its checks, its sink, its story."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from temporalio.api.common.v1 import ActivityType, Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
)

from vsphere_preemption.devtools.demo.checks import (
    Expectations,
    NoticeSeen,
    Observations,
    verify,
)
from vsphere_preemption.devtools.demo.events import (
    ALARM_EVENT_TYPE,
    AlarmScene,
    Named,
    alarm_status_changed,
)
from vsphere_preemption.devtools.demo.inventory import (
    DEMO_POLICY,
    ELSEWHERE,
    LEVELS,
    LOOP,
    MAX_VMS,
    NOTICE_SECONDS,
    PRIORITY_CATEGORY,
    PROTECTION_CATEGORY,
    PROTECTION_TAG,
    RESUME,
    RUNNING_PRIORITIES,
    TAGGED_OFF,
    TAGGED_SUSPENDED,
    DemoPlan,
    Expected,
    InventoryTooSmall,
    demo_policy,
    expect,
    expect_next_round,
    loop_memory_target,
    plan_demo,
    policy_yaml,
    resume_order,
)
from vsphere_preemption.devtools.demo.progress import (
    HistoryNarrator,
    notice_started,
    run_finished,
)
from vsphere_preemption.devtools.demo.report import plan_lines, pretty, round_lines
from vsphere_preemption.devtools.demo.run import write_secret
from vsphere_preemption.devtools.sink import EventSink, ReceivedEvent
from vsphere_preemption.domain.alarm_rules import Action, decide
from vsphere_preemption.domain.events import EventShape, data_from_body, decode
from vsphere_preemption.domain.model import (
    Criticality,
    EntityUsage,
    Resources,
    TagName,
    VmFacts,
    VmRef,
)
from vsphere_preemption.domain.plan import Basis, LeaveReason, LeftOut, Plan, Victim, plan
from vsphere_preemption.domain.policy import ResumePolicy, policy_from_mapping
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

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALARM = "cluster-cpu-above-80"
SCENE = AlarmScene(
    vcenter_url="https://127.0.0.1:8989/sdk",
    datacenter=Named("DC0", "Datacenter", "datacenter-2"),
    cluster=Named("DC0_C0", "ClusterComputeResource", "domain-c15"),
    alarm=Named(ALARM, "Alarm", "alarm-101"),
)


# -- the alarm events ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_status", "to_status", "action", "criticality"),
    [("green", "red", Action.PREEMPT, Criticality.HIGH), ("red", "green", Action.CANCEL, None)],
)
def test_alarm_events_decode_as_the_function_decodes_them(
    from_status: str, to_status: str, action: Action, criticality: Criticality | None
) -> None:
    statuses = (from_status, to_status)
    event = alarm_status_changed(
        SCENE, key=4242, from_status=from_status, to_status=to_status, now=NOW
    )
    headers = event.headers
    # Binary content mode in the new (Tanzu Sources) shape.
    assert headers["ce-type"] == ALARM_EVENT_TYPE == "com.vmware.vsphere.AlarmStatusChangedEvent.v0"
    assert headers["ce-id"] == event.id == "4242"
    assert headers["ce-source"] == SCENE.vcenter_url and "ce-subject" not in headers
    assert headers["ce-eventclass"] == "event" and headers["content-type"] == "application/json"
    attributes = {k.removeprefix("ce-"): v for k, v in headers.items() if k.startswith("ce-")}
    change = decode(attributes, data_from_body(event.body, headers["content-type"]))
    assert change.shape == EventShape.TANZU_SOURCES
    assert (change.alarm_name, change.from_status, change.to_status) == (ALARM, *statuses)
    assert (change.key, change.entity_name) == (4242, "DC0_C0")
    decision = decide(change, ALARM)
    assert decision.action == action
    if criticality is not None:
        assert decision.criticality == criticality
    # The data carries the Go field names, as events/01_* does.
    data = json.loads(event.body)
    assert data["Alarm"] == {"Name": ALARM, "Alarm": {"Type": "Alarm", "Value": "alarm-101"}}
    assert data["Entity"]["Entity"] == {"Type": "ClusterComputeResource", "Value": "domain-c15"}
    assert data["Key"] == 4242 and data["CreatedTime"] == "2026-03-01T12:00:00Z"


def test_another_alarms_name_is_ignored_by_the_function() -> None:
    event = alarm_status_changed(SCENE, key=1, from_status="green", to_status="red", now=NOW)
    attributes = {k.removeprefix("ce-"): v for k, v in event.headers.items() if k.startswith("ce-")}
    change = decode(attributes, data_from_body(event.body, "application/json"))
    assert decide(change, "another-alarm").action == Action.IGNORE


# -- the inventory and the policy ---------------------------------------------------------


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


def test_the_inventory_shows_every_rule_of_the_plan_at_once() -> None:
    demo = plan_demo(list(reversed(VCSIM)))
    # Natural order: VM2 comes before VM10.
    running = len(RUNNING_PRIORITIES)
    assert [s.name for s in demo.running] == [f"DC0_C0_RP0_VM{i}" for i in range(running)]
    assert demo.protected.name == f"DC0_C0_RP0_VM{running}"
    assert len(demo.powered_off) == TAGGED_OFF and len(demo.suspended) == TAGGED_SUSPENDED
    assert demo.host == VmRef("host-24", "HostSystem")  # a host of the alarmed cluster
    assert [s.name for s in demo.elsewhere] == [f"DC0_C1_RP0_VM{i}" for i in range(ELSEWHERE)]
    assert demo.stay_on == [demo.protected.ref, *(s.ref for s in demo.elsewhere)]
    assert len(demo.untagged) == len(VCSIM) - len(demo.tagged) + 1  # + 1: the host
    assert set(demo.tagged).isdisjoint(s.ref for s in demo.untagged)
    # The other cluster's VMs have the lowest priority: only scope keeps them.
    assert {demo.level(s.ref) for s in demo.elsewhere} == {min(demo.level(r) for r in NAMES)}


def test_the_expected_victims_go_by_priority_then_boot_time_as_the_plan_takes_them() -> None:
    demo = plan_demo(VCSIM)
    # vcsim boots its VMs in name order: the later the name, the more recent the boot.
    boot = {s.ref: NOW + timedelta(seconds=i) for i, s in enumerate(VCSIM)}
    expected = expect(demo, boot)
    # lows (VM1, VM4), then priority 5 (normal VM0, VM3; VM5 untagged: the default), newest
    # first; the highs (VM2, VM6) are over the cap.
    order = ["DC0_C0_RP0_VM4", "DC0_C0_RP0_VM1", "DC0_C0_RP0_VM5", "DC0_C0_RP0_VM3"]
    assert [NAMES[r] for r in expected.victims] == [*order, "DC0_C0_RP0_VM0"]
    assert len(expected.victims) == MAX_VMS
    reasons = {NAMES.get(r, r.value): why for r, why in expected.left_out.items()}
    assert reasons == {
        "DC0_C0_RP0_VM2": LeaveReason.OVER_CAP,
        "DC0_C0_RP0_VM6": LeaveReason.OVER_CAP,
        "DC0_C0_RP0_VM7": LeaveReason.PROTECTED,
        "DC0_C0_RP0_VM8": LeaveReason.NOT_RUNNING,
        "DC0_C0_RP0_VM9": LeaveReason.NOT_RUNNING,
        "DC0_C0_RP0_VM10": LeaveReason.NOT_RUNNING,
        **{f"DC0_C1_RP0_VM{i}": LeaveReason.OUT_OF_SCOPE for i in range(ELSEWHERE)},
        "host-24": LeaveReason.NOT_A_VM,
    }
    # The worker's plan, from the same facts and the policy file, says the same.
    chosen = plan(as_vcenter_has_it(demo, boot), None, DEMO_POLICY, Criticality.HIGH,
                  non_vms=[demo.host])  # fmt: skip
    assert tuple(chosen.refs) == expected.victims
    assert {o.ref: o.reason for o in chosen.left_out} == expected.left_out
    # Booted the other way round, the lows swap: the boot time decides within a priority.
    backwards = {ref: NOW - (when - NOW) for ref, when in boot.items()}
    first = [NAMES[r] for r in expect(demo, backwards).victims[:2]]
    assert first == ["DC0_C0_RP0_VM1", "DC0_C0_RP0_VM4"]
    assert tuple(plan(as_vcenter_has_it(demo, backwards), None, DEMO_POLICY,
                      Criticality.HIGH).refs) == expect(demo, backwards).victims  # fmt: skip


def test_the_policy_file_reads_back_as_the_demo_policy() -> None:
    import yaml

    text = policy_yaml()
    assert "category: preemption-priority" in text and "maxVMs: 5" in text
    assert policy_from_mapping(yaml.safe_load(text)) == DEMO_POLICY
    # A red alarm gets a short notice, told to the guests too; the rest keep their defaults.
    assert "notice: {LOW: 2m, MEDIUM: 30s, HIGH: 5s, guest: true}" in text
    assert DEMO_POLICY.notice_for(Criticality.HIGH) == NOTICE_SECONDS == 5
    assert not DEMO_POLICY.resume.enabled and demo_policy(resume=False) == DEMO_POLICY
    resuming = policy_yaml(resume=True)
    resume_line = "resume: {enabled: true, batchSize: 2, interval: 2s, headroom: 10.0, maxWait: 1h}"
    assert resume_line in resuming
    assert policy_from_mapping(yaml.safe_load(resuming)) == demo_policy(resume=True)
    assert demo_policy(resume=True).resume == RESUME == ResumePolicy(True, 2, 2.0)


def test_a_resume_takes_the_highest_priority_first_then_the_names() -> None:
    demo = plan_demo(VCSIM)
    names = {s.ref: s.name for s in VCSIM}
    order = resume_order(demo, [s.ref for s in demo.running], names)
    levels = [demo.level(ref) for ref in order]
    assert levels == sorted(levels, reverse=True) and levels[0] == LEVELS["high"]
    assert [names[r] for r in order[:2]] == ["DC0_C0_RP0_VM2", "DC0_C0_RP0_VM6"]  # the highs
    assert [names[r] for r in order[-2:]] == ["DC0_C0_RP0_VM1", "DC0_C0_RP0_VM4"]  # the lows


def test_a_too_small_inventory_is_refused_with_the_reason() -> None:
    with pytest.raises(InventoryTooSmall, match="at least 11 VMs on cluster DC0_C0 and 3 on "):
        plan_demo([vm(i) for i in range(3)])
    with pytest.raises(InventoryTooSmall, match="found 14 and 0"):
        plan_demo([vm(i) for i in range(14)])
    with pytest.raises(InventoryTooSmall, match="needs a host"):
        plan_demo([replace(s, host=None) for s in VCSIM])


def test_the_secret_is_private(tmp_path: Any) -> None:
    secret = write_secret(tmp_path / "secret", "user", "pass")
    assert secret.stat().st_mode & 0o777 == 0o700
    for name, value in (("username", "user"), ("password", "pass")):
        assert (secret / name).read_text() == value
        assert (secret / name).stat().st_mode & 0o777 == 0o600


# -- the checks ---------------------------------------------------------------------------

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


def test_everything_as_expected_passes_every_check() -> None:
    checks = verify(expectations(), good_observations())
    assert len(checks) == 12 and all(c.ok for c in checks), checks
    checks = verify(expectations(RESUMING), resumed_observations())
    assert len(checks) == 14 and all(c.ok for c in checks), checks
    # Each run is checked for what its policy says happens on clear.
    assert failures(resumed_observations()).keys() == {STAYED_OFF}
    assert set(failures(good_observations(), RESUMING)) == {RESUMED, BATCHES, RESUMED_NOTES}


def _one_failure(obs: Observations, resume: ResumePolicy = NO_RESUME) -> tuple[str, str]:
    found = failures(obs, resume)
    assert len(found) == 1, found
    ((claim, problems),) = found.items()
    return claim, " | ".join(problems)


def test_a_vm_left_on_or_an_extra_vm_off_fails() -> None:
    obs = good_observations()
    after = dict(obs.after)
    after[SELECTED[1]] = obs.before[SELECTED[1]]  # still on
    after[ON[3].ref] = replace(ON[3], power_state="poweredOff")  # not expected
    claim, why = _one_failure(replace(obs, after=after))
    assert claim == "exactly the 2 planned VMs on DC0_C0 were powered off"
    assert "still not off: DC0_C0_RP0_VM0 (vm-40)" in why
    assert "changed but not expected: DC0_C0_RP0_VM3 (vm-49)" in why


def test_a_protected_or_out_of_scope_vm_powered_off_fails() -> None:
    obs = good_observations()
    after = dict(obs.after)
    for state in (PROTECTED, ELSEWHERE_VM):
        after[state.ref] = replace(state, power_state="poweredOff")
    found = failures(replace(obs, after=after))
    assert set(found) == {
        "exactly the 2 planned VMs on DC0_C0 were powered off",
        "the protected VM and the tagged VMs out of scope are still on",
    }
    power = " | ".join(found["exactly the 2 planned VMs on DC0_C0 were powered off"])
    assert "off outside DC0_C0: DC0_C1_RP0_VM0 (vm-140)" in power
    assert found["the protected VM and the tagged VMs out of scope are still on"] == (
        "DC0_C0_RP0_VM2 (vm-46): poweredOff",
        "DC0_C1_RP0_VM0 (vm-140): poweredOff",
    )


PLAN_CLAIM = "the plan in the query answer: victims by priority, the others left out and why"


def with_extras(obs: Observations, **changes: Any) -> Observations:
    assert obs.state is not None
    return replace(obs, state=replace(obs.state, extra=extras(**changes)))


def test_a_plan_out_of_order_or_with_a_wrong_reason_fails() -> None:
    obs = good_observations()
    backwards = the_plan(victims=SELECTED[::-1], priorities=(5, 1))
    claim, why = _one_failure(with_extras(obs, plan=backwards))
    assert claim == PLAN_CLAIM
    assert "victims DC0_C0_RP0_VM0 (vm-40), DC0_C0_RP0_VM1 (vm-43) (expected " in why
    assert "victims' priorities not ascending: [5, 1]" in why
    wrong = the_plan(left_out={**LEFT_OUT, ELSEWHERE_VM.ref: LeaveReason.OVER_CAP})
    _, why = _one_failure(with_extras(obs, plan=wrong))
    assert why == "DC0_C1_RP0_VM0 (vm-140) left out as over_cap, not out_of_scope"
    fewer = the_plan(left_out={k: v for k, v in LEFT_OUT.items() if k != PROTECTED.ref})
    _, why = _one_failure(with_extras(obs, plan=fewer))
    assert why == "DC0_C0_RP0_VM2 (vm-46) left out as None, not protected"
    _, why = _one_failure(with_extras(obs, scope="vcenter", entity=None))
    assert why == "scope 'vcenter', entity None"
    _, why = _one_failure(with_extras(obs, plan={"error": "vCenter unreachable"}))
    assert why.startswith("no readable plan")


def test_the_query_and_the_event_must_follow_the_plans_order_and_carry_it() -> None:
    obs = good_observations()
    assert obs.state is not None
    state = replace(obs.state, virtual_machines=tuple(SELECTED[::-1]))
    claim, why = _one_failure(replace(obs, state=state))
    assert claim == "the workflow's current_state names the preempted VMs, in the plan's order"
    assert why.startswith("virtualMachines DC0_C0_RP0_VM0 (vm-40), DC0_C0_RP0_VM1 (vm-43)")
    data = {k: v for k, v in obs.events[1].data.items() if k != "plan"}
    claim, why = _one_failure(
        replace(obs, events=[obs.events[0], replace(obs.events[1], data=data)])
    )
    assert claim == f"the sink received the {PREEMPTED_EVENT_TYPE}, with the plan"
    assert "data: no readable plan" in why


def test_a_missing_or_wrong_annotation_fails() -> None:
    obs = good_observations()
    bad = annotation(forced_shutdown=False, workflow_id="other").to_json()
    claim, why = _one_failure(replace(obs, annotations={SELECTED[0]: bad, ON[2].ref: "{}"}))
    assert claim.startswith("each preempted VM carries a valid annotation")
    assert "DC0_C0_RP0_VM0 (vm-40): no annotation" in why
    assert "workflowID='other'" in why and "forcedShutdown=False" in why
    assert "annotated but not preempted: DC0_C0_RP0_VM2 (vm-46)" in why
    _, why = _one_failure(replace(obs, annotations={**obs.annotations, SELECTED[0]: "not json"}))
    assert "does not parse" in why


def test_a_missing_or_misnamed_event_fails() -> None:
    obs = good_observations()
    scheduled, preempted = obs.events
    claim, why = _one_failure(replace(obs, events=[scheduled]))
    assert claim == f"the sink received the {PREEMPTED_EVENT_TYPE}, with the plan"
    assert "nothing of that type arrived" in why
    wrong = replace(preempted, attributes={**preempted.attributes, "id": "x-1"})
    _, why = _one_failure(replace(obs, events=[scheduled, wrong]))
    assert f"expected '{ALARM}-4242'" in why
    fewer = replace(preempted, data={**preempted.data, "virtualMachines": []})
    _, why = _one_failure(replace(obs, events=[scheduled, fewer]))
    assert "virtualMachines none (expected DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0" in why


def test_replies_state_and_completion_are_checked() -> None:
    obs = good_observations()
    found = failures(
        replace(
            obs,
            raising_reply=(503, {"error": "failed to run preemption"}),
            state=None,
            lowering_reply=(200, {"decision": "ignore"}),
            final_status="running",
        )
    )
    assert set(found) == {
        "the function accepted the raising alarm event",
        PLAN_CLAIM,
        "the workflow's current_state names the preempted VMs, in the plan's order",
        "the function accepted the lowering alarm event",
        "the workflow completed after the lowering event",
    }
    assert found["the workflow completed after the lowering event"] == ("its status is running",)


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


def test_the_notice_must_come_first_name_the_victims_and_precede_the_stop() -> None:
    obs = good_observations()
    scheduled, preempted = obs.events
    claim, why = _one_failure(replace(obs, events=[preempted]))
    assert claim == SCHEDULED and "nothing of that type arrived" in why
    claim, why = _one_failure(replace(obs, events=[preempted, scheduled]))
    assert claim == SCHEDULED and why == f"it arrived after the {PREEMPTED_EVENT_TYPE}"
    early = replace(
        preempted, attributes={**preempted.attributes, "time": NOW + timedelta(seconds=3)}
    )
    _, why = _one_failure(replace(obs, events=[scheduled, early]))
    assert (
        why.startswith("the VMs were reported stopped at 2026-03-01 12:00:03")
        and "before notBefore" in why
    )
    data = {**scheduled.data, "virtualMachines": [], "action": "shutdown"}
    _, why = _one_failure(replace(obs, events=[replace(scheduled, data=data), preempted]))
    assert "virtualMachines none (expected DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0 (vm-40))" in why
    assert "action 'shutdown', noticeSeconds 5.0" in why
    short = {**scheduled.data, "notBefore": format_time(NOW + timedelta(seconds=1))}
    found = failures(replace(obs, events=[replace(scheduled, data=short), preempted]))
    assert "notBefore is 0.9s after the event's time" in found[SCHEDULED]
    # The guests' notice names another notBefore than the event's, which the read did not precede.
    assert found[DURING][0].endswith("proves nothing")
    assert found[DURING][1:] == tuple(
        f"{NAMES[ref]} ({ref.value}): notBefore {format_time(NOT_BEFORE)!r}" for ref in SELECTED
    )


def test_during_the_notice_the_victims_must_be_on_and_told_and_no_other_vm() -> None:
    obs = good_observations()
    assert obs.notice is not None
    claim, why = _one_failure(replace(obs, notice=None))
    assert claim == DURING and why.startswith("the demo saw no notice")
    states = {**obs.notice.states, SELECTED[0]: replace(ON[1], power_state="poweredOff")}
    guest = {SELECTED[1]: "", ON[3].ref: GUEST}
    claim, why = _one_failure(replace(obs, notice=NoticeSeen(obs.notice.at, states, guest)))
    assert claim == DURING
    assert why.split(" | ") == [
        "DC0_C0_RP0_VM1 (vm-43): poweredOff",
        "DC0_C0_RP0_VM1 (vm-43): guestinfo None",
        "DC0_C0_RP0_VM0 (vm-40): guestinfo ''",
        "a notice on VMs that are no victims: DC0_C0_RP0_VM3 (vm-49)",
    ]
    late = replace(obs.notice, at=NOT_BEFORE + timedelta(seconds=0.1))
    _, why = _one_failure(replace(obs, notice=late))
    assert why.endswith("proves nothing")


def test_without_resume_the_preempted_vms_must_stay_off() -> None:
    obs = good_observations()
    claim, why = _one_failure(replace(obs, after_lowering={**obs.after, SELECTED[0]: ON[1]}))
    assert claim == STAYED_OFF and why == "DC0_C0_RP0_VM1 (vm-43): poweredOn"


def test_a_resume_must_bring_all_back_highest_priority_first_in_the_batches_configured() -> None:
    obs = resumed_observations()
    claim, why = _one_failure(replace(obs, after_lowering=obs.after), RESUMING)
    assert claim == RESUMED
    assert why == "DC0_C0_RP0_VM1 (vm-43): poweredOff | DC0_C0_RP0_VM0 (vm-40): poweredOff"
    other = {**obs.after_lowering, ON[3].ref: replace(ON[3], power_state="poweredOff")}
    _, why = _one_failure(replace(obs, after_lowering=other), RESUMING)
    assert why == "changed but not preempted: DC0_C0_RP0_VM3 (vm-49)"

    *first, one, two = obs.events
    swapped = [
        replace(one, data={**one.data, "virtualMachines": two.data["virtualMachines"]}),
        replace(two, data={**two.data, "virtualMachines": one.data["virtualMachines"]}),
    ]
    claim, why = _one_failure(replace(obs, events=[*first, *swapped]), RESUMING)
    assert claim == BATCHES
    assert why == (
        "powered on DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0 (vm-40) "
        "(expected DC0_C0_RP0_VM0 (vm-40), DC0_C0_RP0_VM1 (vm-43))"
    )
    hasty = replace(
        two, attributes={**two.attributes, "time": one.attributes["time"] + timedelta(seconds=1)}
    )
    _, why = _one_failure(replace(obs, events=[*first, one, hasty]), RESUMING)
    assert why == "batch 2 came 1.0s after the one before"
    together = replace(
        one,
        data={
            **one.data,
            "virtualMachines": one.data["virtualMachines"] + two.data["virtualMachines"],
        },
    )
    _, why = _one_failure(replace(obs, events=[*first, together]), RESUMING)
    assert why == "batch sizes [2]"
    _, why = _one_failure(replace(obs, events=first), RESUMING)
    assert why.startswith("nothing of that type arrived")


def test_a_resumed_vm_must_say_so_in_its_annotation_and_lose_its_guest_notice() -> None:
    obs = resumed_observations()
    notes = {**obs.annotations_after_lowering, SELECTED[0]: annotation().to_json()}
    claim, why = _one_failure(
        replace(obs, annotations_after_lowering=notes, guest_after_lowering={SELECTED[1]: GUEST}),
        RESUMING,
    )
    assert claim == RESUMED_NOTES
    assert why.split(" | ") == [
        "DC0_C0_RP0_VM1 (vm-43): resumed=None",
        f"DC0_C0_RP0_VM0 (vm-40): guestinfo still {GUEST!r}",
    ]


# -- the sink -----------------------------------------------------------------------------


def test_the_sink_records_binary_and_structured_events_and_refuses_the_rest() -> None:
    event = CloudEvent(
        attributes={
            "id": "a-1",
            "source": "here",
            "type": PREEMPTED_EVENT_TYPE,
            "time": NOW,
            "datacontenttype": "application/json",
        },
        data={"virtualMachines": [{"Type": "VirtualMachine", "Value": "vm-1"}]},
    )
    with EventSink() as sink:
        assert sink.wait_for(PREEMPTED_EVENT_TYPE, timeout=0.05) is None
        for message in (to_binary(event, JSONFormat()), to_structured(event, JSONFormat())):
            answer = httpx.post(sink.url, headers=message.headers, content=message.body)
            assert answer.status_code == 202
        refused = httpx.post(sink.url, content=b"hello", headers={"content-type": "text/plain"})
        assert refused.status_code == 400 and "not a CloudEvent" in refused.json()["error"]
        got = sink.wait_for(PREEMPTED_EVENT_TYPE, timeout=5)
        assert got is not None and got.id == "a-1" and got.source == "here"
        assert [e.mode for e in sink.events] == ["binary", "structured"]
        assert all(e.data == event.get_data() for e in sink.events)
        assert len(sink.rejected) == 1
        url = sink.url
    with pytest.raises(httpx.TransportError):
        httpx.post(url, content=b"{}", timeout=2)


# -- the story told from a history ---------------------------------------------------------


def history_event(event_id: int, kind: EventType.ValueType, seconds: float, **attrs: Any) -> Any:
    event = HistoryEvent(event_id=event_id, event_type=kind, **attrs)
    event.event_time.FromDatetime(NOW + timedelta(seconds=seconds))
    return event


def json_payloads(value: Any) -> Payloads:
    return Payloads(payloads=[Payload(data=json.dumps(value).encode())])


E = EventType


def test_the_narrator_tells_each_event_once_with_what_the_worker_answered() -> None:
    signal = history_event(
        1,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        0,
        workflow_execution_signaled_event_attributes=WorkflowExecutionSignaledEventAttributes(
            signal_name="PreemptVMsChan",
            input=json_payloads(
                {"tag": "preemptible", "criticality": "HIGH", "event": {"id": "7"}}
            ),
        ),
    )
    scheduled = history_event(
        2,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        0.5,
        activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
            activity_type=ActivityType(name="GetPreemptibleVMs")
        ),
    )
    retried = history_event(
        3,
        E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
        2.5,
        activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(attempt=2),
    )
    selection = {
        "selected": [{"value": "vm-40", "type": "VirtualMachine"}],
        "left_out": [{"vm": {"value": "host-1", "type": "HostSystem"}, "reason": "not a VM"}],
    }
    completed = history_event(
        4,
        E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        3,
        activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
            scheduled_event_id=2, result=json_payloads(selection)
        ),
    )
    task_done = history_event(5, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 3.1)
    narrator = HistoryNarrator({VmRef("vm-40"): "web-1"})
    first = narrator.lines([signal, scheduled])
    assert first == [
        "[  0.0s] signal PreemptVMsChan received: tag 'preemptible', criticality HIGH, event '7'",
        "[  0.5s] activity GetPreemptibleVMs: find the powered-on VMs carrying the tag",
    ]
    assert not run_finished([signal, scheduled])
    rest = narrator.lines([signal, scheduled, retried, completed, task_done])
    assert rest == [
        "[  2.5s]   retrying (attempt 2)",
        "[  3.0s]   picked 1: web-1 (vm-40)",
        "[  3.0s]   left out HostSystem host-1: not a VM",
    ]
    assert run_finished([signal, scheduled, retried, completed, task_done])
    assert narrator.lines([signal, scheduled, retried, completed, task_done]) == []


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


def test_the_notice_and_the_resume_are_told_and_the_run_is_not_over_during_the_notice() -> None:
    vm40 = {"value": "vm-40", "type": "VirtualMachine"}
    signal = history_event(
        1,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        0,
        workflow_execution_signaled_event_attributes=WorkflowExecutionSignaledEventAttributes(
            signal_name="PreemptVMsChan"
        ),
    )
    notice = [
        signal,
        activity(2, "SetGuestNotice", 0.1, {"vms": [vm40], "value": '{"action":"poweroff"}'}),
        done(3, 2, 0.2, {"written": [vm40], "failed": []}),
        activity(4, "SendPreemptedEvent", 0.3, {"event_type": SCHEDULED_EVENT_TYPE}),
        done(5, 4, 0.4, None),
        history_event(6, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 0.5),
        timer(7, 0.5, 5),
    ]
    narrator = HistoryNarrator({VmRef("vm-40"): "web-1"})
    assert narrator.lines(notice)[1:] == [
        "[  0.1s] activity SetGuestNotice: write the notice into each victim's guestinfo",
        "[  0.2s]   done on 1 VMs",
        "[  0.3s] activity SendPreemptedEvent: send the VmPreemptionScheduledEvent to K_SINK",
        "[  0.4s]   the sink acknowledged it",
        "[  0.5s] notice: a durable timer of 5s; nothing is stopped before it fires",
    ]
    # Waiting out the notice: every activity closed, but a timer open: not finished.
    assert notice_started(notice) and not run_finished(notice)
    acted = [
        *notice,
        fired(8, 7, 5.5),
        activity(9, "SendPreemptedEvent", 5.6),
        done(10, 9, 5.7, None),
        history_event(11, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 5.8),
    ]
    assert narrator.lines(acted) == [
        "[  5.5s]   notice over: acting now",
        "[  5.6s] activity SendPreemptedEvent: send the VmPreemptedEvent to K_SINK",
        "[  5.7s]   the sink acknowledged it",
    ]
    assert run_finished(acted) and not notice_started(acted)
    resumed = [
        *acted,
        history_event(12, E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED, 6),
        activity(13, "ResumeVMs", 6.1),
        done(14, 13, 6.2, {"resumed": [vm40], "skipped": [], "failed": []}),
        activity(15, "SetGuestNotice", 6.3, {"vms": [vm40], "value": ""}),
        timer(16, 6.4, 2),
        fired(17, 16, 8.4),
    ]
    assert narrator.lines(resumed) == [
        "[  6.0s] cancel requested: the workflow stops waiting for signals",
        "[  6.1s] activity ResumeVMs: power them on again, those nobody changed since",
        "[  6.2s]   powered on: web-1 (vm-40)",
        "[  6.3s] activity SetGuestNotice: clear the notice from their guestinfo",
        "[  6.4s] timer: 2s before the next batch (a durable timer)",
        "[  8.4s]   timer fired",
    ]


def test_the_policy_is_read_from_the_local_activity_marker() -> None:
    policy = {
        "cooldown_seconds": 5.0,
        "max_vms": 5,
        "soft_shutdown_grace_seconds": 120,
        "selection": DEMO_POLICY.to_wire(),
    }
    marker = history_event(
        1,
        E.EVENT_TYPE_MARKER_RECORDED,
        0,
        marker_recorded_event_attributes=MarkerRecordedEventAttributes(
            marker_name="core_local_activity",
            details={
                "data": json_payloads({"activity_type": "x"}),
                "result": json_payloads(policy),
            },
        ),
    )
    assert HistoryNarrator({}).lines([marker]) == [
        "[  0.0s] worker policy: at most 5 VMs per run, cooldown 5s, soft-shutdown grace 120s",
        "[  0.0s]   choice: scope entity, priority from tags of 'preemption-priority' (low 1, "
        "normal 5, high 9; default 5), protection tag preemption-protection/never",
        "[  0.0s]   notice: LOW 2m then shutdown, MEDIUM 30s then poweroff, HIGH 5s then "
        "poweroff (also in the guest's guestinfo); no resume on clear",
    ]


def test_an_unreadable_result_loses_only_its_detail() -> None:
    scheduled = history_event(
        1,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        0,
        activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
            activity_type=ActivityType(name="PowerOffVMs")
        ),
    )
    completed = history_event(
        2,
        E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        1,
        activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
            scheduled_event_id=1, result=Payloads(payloads=[Payload(data=b"\xff not json")])
        ),
    )
    assert HistoryNarrator({}).lines([scheduled, completed])[-1] == "[  1.0s]   done"


def test_pretty_json_keeps_lists_on_one_line() -> None:
    lines = pretty({"a": [1, 2], "b": {"c": "d"}, "e": {}}, indent="")
    assert lines == ["{", '  "a": [1, 2],', '  "b": {', '    "c": "d"', "  },", '  "e": {}', "}"]
    assert json.loads("\n".join(lines)) == {"a": [1, 2], "b": {"c": "d"}, "e": {}}


def test_the_plan_activity_is_told_with_its_victims_in_order_and_why_the_rest_stay() -> None:
    scheduled = history_event(
        1,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        0,
        activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
            activity_type=ActivityType(name="PlanPreemption")
        ),
    )
    output: dict[str, Any] = {"plan": the_plan(), "usage": None, "scope_vms": 14, "notes": []}
    completed = history_event(
        2,
        E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        1,
        activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
            scheduled_event_id=1, result=json_payloads(output)
        ),
    )
    assert HistoryNarrator(NAMES).lines([scheduled, completed]) == [
        "[  0.0s] activity PlanPreemption: read the tagged VMs' facts from vCenter, "
        "choose the victims",
        "[  1.0s]   plan: 2 victims, in order: DC0_C0_RP0_VM1 (priority 1), "
        "DC0_C0_RP0_VM0 (priority 5)",
        "[  1.0s]   left out: 1 over the cap, 1 protected, 1 not running, 1 out of scope",
        "[  1.0s]   (the alarmed entity holds 14 VMs, tagged or not)",
    ]


def test_the_plan_is_rendered_from_the_query_answer() -> None:
    lines = plan_lines(extras(), indent="")
    assert lines == [
        "victims, in the order they go:",
        "  1. DC0_C0_RP0_VM1 (vm-43): priority 1",
        "  2. DC0_C0_RP0_VM0 (vm-40): priority 5",
        "left out:",
        "  DC0_C0_RP0_VM3 (vm-49)   over the cap  over_cap",
        "  DC0_C0_RP0_VM2 (vm-46)   protected     protected",
        "  DC0_C0_RP0_VM4 (vm-52)   not running   not_running",
        "  DC0_C1_RP0_VM0 (vm-140)  out of scope  out_of_scope",
    ]
    assert plan_lines({"plan": {"error": "no vCenter", "notes": []}}) == [
        "    planning failed: no vCenter"
    ]
    assert plan_lines({})[0].startswith("    (no readable plan")


# -- preempt until relieved (--loop) --------------------------------------------------------

LOOP_TARGET = 1.43
# vcsim's alarmed cluster once the demo prepared it: 11 VMs of 32 MB on, 12 GB of memory.
CAPACITY = Resources(cpu_mhz=6882.0, memory_mb=12286.46)


def usage_with(memory_mb: float) -> EntityUsage:
    return EntityUsage(CLUSTER, CAPACITY, Resources(memory_mb=memory_mb))


def test_round_two_takes_the_newest_remaining_vm_and_the_target_needs_both_rounds() -> None:
    demo = plan_demo(VCSIM)
    boot = {s.ref: NOW + timedelta(seconds=i) for i, s in enumerate(VCSIM)}
    first = expect(demo, boot)
    second = expect_next_round(demo, boot, first)
    # The highs are left: VM6 booted after VM2, so it goes; VM2 is then not needed.
    assert [NAMES[r] for r in second.victims] == ["DC0_C0_RP0_VM6"]
    reasons = {NAMES.get(r, r.value): why for r, why in second.left_out.items()}
    assert reasons["DC0_C0_RP0_VM2"] == LeaveReason.NOT_NEEDED
    assert {reasons[NAMES[r]] for r in first.victims} == {LeaveReason.NOT_RUNNING}
    assert len(reasons) == len(first.left_out) + len(first.victims) - len(second.victims)
    sizes = {s.ref: 32.0 for s in VCSIM}
    target = loop_memory_target(usage_with(11 * 32.0), sizes, (first, second))
    assert target == LOOP_TARGET  # (352 - 5 x 32 - 16) MB of 12286 MB
    policy = demo_policy(loop_target=target)
    # The worker's plans agree: round 1 takes maxVMs and falls short of the target ...
    facts = as_vcenter_has_it(demo, boot)
    one = plan(facts, usage_with(11 * 32.0), policy, Criticality.HIGH, non_vms=[demo.host])
    assert tuple(one.refs) == first.victims
    assert one.target is not None and not one.target.reached
    # ... round 2, with those off and the use read anew, takes one more and reaches it.
    off = [replace(f, power_state="poweredOff") if f.ref in first.victims else f for f in facts]
    two = plan(off, usage_with(6 * 32.0), policy, Criticality.HIGH, non_vms=[demo.host])
    assert tuple(two.refs) == second.victims
    assert {o.ref: o.reason for o in two.left_out} == second.left_out
    assert two.target is not None and two.target.reached


def test_a_loop_needs_a_second_round_to_plan_and_the_clusters_memory_figures() -> None:
    demo = plan_demo(VCSIM)
    boot = {s.ref: NOW + timedelta(seconds=i) for i, s in enumerate(VCSIM)}
    everyone = Expected(tuple(s.ref for s in demo.running), {})
    with pytest.raises(InventoryTooSmall, match="more than 5 candidates"):
        expect_next_round(demo, boot, everyone)
    rounds = (expect(demo, boot), expect_next_round(demo, boot, expect(demo, boot)))
    sizes = {s.ref: 32.0 for s in VCSIM}
    with pytest.raises(InventoryTooSmall, match="memory capacity and use"):
        loop_memory_target(None, sizes, rounds)
    with pytest.raises(InventoryTooSmall, match="the memory size of vm-"):
        loop_memory_target(usage_with(352.0), {}, rounds)


def test_the_loop_policy_file_has_the_target_on_the_allocation_basis_and_the_loop() -> None:
    import yaml

    text = policy_yaml(loop_target=LOOP_TARGET)
    assert "targets: {memory: 1.43, basis: allocation}" in text
    assert "loop: {settle: 2s, maxRounds: 3}" in text
    looping = demo_policy(loop_target=LOOP_TARGET)
    assert policy_from_mapping(yaml.safe_load(text)) == looping
    assert looping.loop == LOOP and looping.loop.enabled
    assert demo_policy(resume=True, loop_target=LOOP_TARGET).resume == RESUME
    assert "loop" not in policy_yaml()  # without --loop: one round, as before


ROUND_2 = ON[3]  # over the cap in round 1
LEFT_IN_ROUND_2 = {
    PROTECTED.ref: LeaveReason.PROTECTED,
    OFF_BEFORE.ref: LeaveReason.NOT_RUNNING,
    ELSEWHERE_VM.ref: LeaveReason.OUT_OF_SCOPE,
    **dict.fromkeys(SELECTED, LeaveReason.NOT_RUNNING),
}
ALL_STOPPED = [*SELECTED, ROUND_2.ref]
ROUND_1_EXTRAS = {"round": 1, "maxRounds": 3, "achieved": {"reached": False}}
ROUND_2_EXTRAS = {
    "round": 2,
    "maxRounds": 3,
    "loopStopped": "target met",
    "achieved": {"reached": True},
}


def loop_expectations() -> Expectations:
    return replace(
        expectations(),
        later=(Expected((ROUND_2.ref,), LEFT_IN_ROUND_2),),
        max_rounds=3,
        loop_stopped="target met",
    )


def loop_record(**changes: Any) -> dict[str, Any]:
    return {
        "outcome": "acted",
        "loop": {"rounds": 2, "maxRounds": 3, "stopped": "target met"},
        "rounds": [
            {"round": 1, "stopped": [r.value for r in SELECTED], "achieved": {"reached": False}},
            {"round": 2, "stopped": [ROUND_2.ref.value], "achieved": {"reached": True}},
        ],
        **changes,
    }


def loop_observations(
    round_2: dict[str, Any] = ROUND_2_EXTRAS, record: dict[str, Any] | None = None
) -> Observations:
    """As good_observations, then round 2: ROUND_2 announced, stopped, reported."""
    obs = good_observations()
    scheduled, first = obs.events
    note = annotation()
    plan_2 = extras(plan=the_plan([ROUND_2.ref], (9,), LEFT_IN_ROUND_2))
    second_notice = ReceivedEvent(
        {**scheduled.attributes, "id": f"{ALARM}-4242-round-2-scheduled"},
        {**scheduled.data, "virtualMachines": [vm_ref_to_wire(ROUND_2.ref)]},
        "binary",
    )
    second = ReceivedEvent(
        {**first.attributes, "id": f"{ALARM}-4242-round-2"},
        {**preempted_event_data(note, [ROUND_2.ref]), **plan_2, **round_2},
        "binary",
    )
    first = replace(first, data={**first.data, **ROUND_1_EXTRAS})
    after = {**obs.after, ROUND_2.ref: replace(ROUND_2, power_state="poweredOff")}
    assert obs.state is not None
    return replace(
        obs,
        after=after,
        state=replace(obs.state, virtual_machines=tuple(ALL_STOPPED), extra=plan_2),
        annotations={ref: note.to_json() for ref in ALL_STOPPED},
        events=[scheduled, first, second_notice, second],
        after_lowering=after,
        runs=[loop_record() if record is None else record],
    )


ROUNDS_CLAIM = (
    "the run's record: 2 rounds, each with the VMs it stopped and what it achieved; "
    "the loop stopped: target met"
)
EVENT_PER_ROUND = (
    f"the sink received a {PREEMPTED_EVENT_TYPE} per round (2), each with its round's VMs "
    "and plan, the last saying why the loop stopped"
)


def loop_failures(obs: Observations) -> dict[str, str]:
    checks = verify(loop_expectations(), obs)
    return {c.claim: " | ".join(c.problems) for c in checks if not c.ok}


def test_two_rounds_that_met_the_target_pass_every_check_of_a_loop() -> None:
    checks = verify(loop_expectations(), loop_observations())
    assert len(checks) == 13 and all(c.ok for c in checks), checks
    assert ROUNDS_CLAIM in [c.claim for c in checks]
    # A single round is not what a loop that needs two rounds did.
    found = loop_failures(good_observations())
    assert {ROUNDS_CLAIM, EVENT_PER_ROUND} <= set(found)
    assert "no run record was read" in found[ROUNDS_CLAIM]
    assert "round 2: none with id" in found[EVENT_PER_ROUND]


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (
            loop_record(loop={"rounds": 2, "maxRounds": 3, "stopped": "maxRounds"}),
            "'stopped': 'maxRounds'",
        ),
        (loop_record(rounds=loop_record()["rounds"][:1]), "rounds [1]"),
        (
            loop_record(
                rounds=[
                    loop_record()["rounds"][0],
                    {"round": 2, "stopped": [ROUND_2.ref.value], "achieved": {"reached": False}},
                ]
            ),
            "round 2: achieved.reached False",
        ),
        (
            loop_record(
                rounds=[
                    {"round": 1, "stopped": [SELECTED[0].value], "achieved": {"reached": False}},
                    loop_record()["rounds"][1],
                ]
            ),
            f"round 1 stopped [{SELECTED[0].value!r}]",
        ),
    ],
)
def test_a_record_that_does_not_show_both_rounds_and_the_target_met_fails(
    record: dict[str, Any], problem: str
) -> None:
    found = loop_failures(loop_observations(record=record))
    assert set(found) == {ROUNDS_CLAIM} and problem in found[ROUNDS_CLAIM], found


def test_the_last_rounds_event_must_say_the_loop_stopped_and_the_target_met() -> None:
    silent = {k: v for k, v in ROUND_2_EXTRAS.items() if k != "loopStopped"}
    found = loop_failures(loop_observations(round_2=silent))
    assert set(found) == {EVENT_PER_ROUND}
    assert "round 2: round, maxRounds, loopStopped: (2, 3, None)" in found[EVENT_PER_ROUND]
    unmet = {**ROUND_2_EXTRAS, "achieved": {"reached": False}}
    found = loop_failures(loop_observations(round_2=unmet))
    assert found[EVENT_PER_ROUND] == "round 2: achieved.reached False"


def test_the_rounds_are_shown_with_what_each_stopped_achieved_and_why_the_loop_stopped() -> None:
    achieved = {
        "memory": {"achievedAfterPercent": 1.56, "targetPercent": 1.43, "reached": False},
        "reached": False,
    }
    record = loop_record()
    record["rounds"][0]["achieved"] = achieved
    record["rounds"][1]["achieved"] = {
        "memory": {"achievedAfterPercent": 1.3, "targetPercent": 1.43, "reached": True},
        "reached": True,
    }
    obs = loop_observations()
    events = [e for e in obs.events if e.type == PREEMPTED_EVENT_TYPE]
    assert round_lines(record, events, obs.before) == [
        "  the rounds (the run's record, as `preemptctl history` reads it, and the sink):",
        "    round 1: stopped DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0 (vm-40); "
        "memory after it 1.56% (target 1.43%): not met",
        f"      event {ALARM}-4242: round 1 of at most 3, 2 VM(s)",
        "    round 2: stopped DC0_C0_RP0_VM3 (vm-49); memory after it 1.3% (target 1.43%): met",
        f"      event {ALARM}-4242-round-2: round 2 of at most 3, 1 VM(s), "
        "loopStopped 'target met'",
        "  the loop stopped after 2 round(s) of at most 3: target met",
    ]
    assert round_lines(None, events, obs.before)[-1] == "    (no run record was read)"


def test_a_timer_after_a_rounds_report_is_told_as_the_settle_and_its_event_as_the_round() -> None:
    round_1 = json.dumps({"round": 1, "maxRounds": 3, "achieved": {"reached": False}})
    use = {
        "entity": vm_ref_to_wire(CLUSTER),
        "capacity": {"cpu_mhz": None, "memory_mb": 12286.0},
        "used": {"cpu_mhz": None, "memory_mb": 192.0},
    }
    history = [
        activity(1, "ReadEntityUse", 0.0, {"entity": vm_ref_to_wire(CLUSTER)}),
        done(2, 1, 0.1, use),
        activity(3, "SendPreemptedEvent", 0.2, {"data_json": round_1}),
        done(4, 3, 0.3, None),
        timer(5, 0.4, 2),
        fired(6, 5, 2.4),
        activity(7, "SendPreemptedEvent", 2.5, {"event_type": SCHEDULED_EVENT_TYPE}),
        timer(8, 2.6, 5),
        fired(9, 8, 7.6),
    ]
    assert HistoryNarrator(NAMES).lines(history) == [
        "[  0.0s] activity ReadEntityUse: read the alarmed entity's use again, on the policy's "
        "basis",
        "[  0.1s]   in use now: 192 of 12286 MB (1.56%)",
        "[  0.2s] activity SendPreemptedEvent: send the VmPreemptedEvent of round 1 (of at most "
        "3; target not met) to K_SINK",
        "[  0.3s]   the sink acknowledged it",
        "[  0.4s] settle: a durable timer of 2s; then the use is read again and the plan made anew",
        "[  2.4s]   settled: the next round plans again",
        "[  2.5s] activity SendPreemptedEvent: send the VmPreemptionScheduledEvent to K_SINK",
        "[  2.6s] notice: a durable timer of 5s; nothing is stopped before it fires",
        "[  7.6s]   notice over: acting now",
    ]
