"""The demo's parts on their own: its alarm events, its plan, its checks, its sink, its story."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

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

from vsphere_preemption.devtools.demo.checks import Expectations, Observations, verify
from vsphere_preemption.devtools.demo.events import (
    ALARM_EVENT_TYPE,
    AlarmScene,
    Named,
    alarm_status_changed,
)
from vsphere_preemption.devtools.demo.inventory import (
    MAX_VMS,
    TAGGED_OFF,
    TAGGED_RUNNING,
    TAGGED_SUSPENDED,
    InventoryTooSmall,
    plan_demo,
)
from vsphere_preemption.devtools.demo.progress import HistoryNarrator, run_finished
from vsphere_preemption.devtools.demo.report import pretty
from vsphere_preemption.devtools.demo.run import write_secret
from vsphere_preemption.devtools.sink import EventSink, ReceivedEvent
from vsphere_preemption.domain.alarm_rules import Action, decide
from vsphere_preemption.domain.events import EventShape, data_from_body, decode
from vsphere_preemption.domain.model import Criticality, Selection, VmRef
from vsphere_preemption.domain.selection import VmState, select_preemptible
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    Annotation,
    WorkflowResponse,
    preempted_event_data,
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


# -- the plan -----------------------------------------------------------------------------


def vm(index: int, power: str = "poweredOn") -> VmState:
    return VmState(VmRef(f"vm-{40 + 3 * index}"), f"DC0_C0_RP0_VM{index}", power, "host-1", "C0")


def test_the_plan_shows_every_selection_rule_at_once() -> None:
    vms = [vm(i) for i in range(20)]
    hosts = [VmRef("host-34", "HostSystem"), VmRef("host-24", "HostSystem")]
    plan = plan_demo(list(reversed(vms)), hosts)
    # Natural order: VM2 comes before VM10.
    assert [s.name for s in plan.running] == [f"DC0_C0_RP0_VM{i}" for i in range(TAGGED_RUNNING)]
    assert len(plan.powered_off) == TAGGED_OFF and len(plan.suspended) == TAGGED_SUSPENDED
    assert plan.host == VmRef("host-24", "HostSystem")
    assert len(plan.untagged) == 20 - TAGGED_RUNNING - TAGGED_OFF - TAGGED_SUSPENDED
    assert set(plan.tagged).isdisjoint(s.ref for s in plan.untagged)
    # Once applied, the rules pick the first MAX_VMS running ones and say why not the rest.
    states = {s.ref: s for s in vms}
    for s in plan.powered_off:
        states[s.ref] = replace(s, power_state="poweredOff")
    for s in plan.suspended:
        states[s.ref] = replace(s, power_state="suspended")
    selection = select_preemptible(plan.tagged, states, MAX_VMS)
    assert selection.selected == [s.ref for s in plan.running[:MAX_VMS]]
    reasons = sorted({issue.reason.split(":")[0] for issue in selection.left_out})
    assert reasons == [
        "already powered off",
        "not a virtual machine (HostSystem)",
        f"over the cap of {MAX_VMS} VMs per run",
        "suspended",
    ]


def test_a_too_small_inventory_is_refused_with_the_reason() -> None:
    with pytest.raises(InventoryTooSmall, match="at least 11 VMs and a host; found 3 VMs"):
        plan_demo([vm(i) for i in range(3)], [VmRef("host-1", "HostSystem")])
    with pytest.raises(InventoryTooSmall, match="0 hosts"):
        plan_demo([vm(i) for i in range(20)], [])


def test_the_secret_is_private(tmp_path: Any) -> None:
    secret = write_secret(tmp_path / "secret", "user", "pass")
    assert secret.stat().st_mode & 0o777 == 0o700
    for name, value in (("username", "user"), ("password", "pass")):
        assert (secret / name).read_text() == value
        assert (secret / name).stat().st_mode & 0o777 == 0o600


# -- the checks ---------------------------------------------------------------------------

ON = [vm(i) for i in range(4)]
OFF_BEFORE = vm(4, "poweredOff")
SELECTED = [ON[0].ref, ON[1].ref]


def expectations() -> Expectations:
    return Expectations(
        workflow_id=ALARM,
        tag="preemptible",
        criticality=Criticality.HIGH,
        trigger_event_id="4242",
        event_source="127.0.0.1:7233/vsphere-preemption",
        selection=Selection(selected=list(SELECTED)),
    )


def annotation(**changes: Any) -> Annotation:
    base = Annotation(
        tag="preemptible",
        forced_shutdown=True,
        criticality=Criticality.HIGH,
        workflow_id=ALARM,
        workflow_started=NOW,
        event={"specversion": "1.0", "id": "4242", "source": "s", "type": ALARM_EVENT_TYPE},
    )
    return replace(base, **changes)


def good_observations() -> Observations:
    before = {s.ref: s for s in [*ON, OFF_BEFORE]}
    after = dict(before)
    for ref in SELECTED:
        after[ref] = replace(before[ref], power_state="poweredOff")
    note = annotation()
    event = ReceivedEvent(
        {
            "id": f"{ALARM}-4242",
            "type": PREEMPTED_EVENT_TYPE,
            "source": "127.0.0.1:7233/vsphere-preemption",
        },
        preempted_event_data(note, SELECTED),
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
        ),
        annotations={ref: note.to_json() for ref in SELECTED},
        events=[event],
        lowering_reply=(200, {"decision": "cancel"}),
        final_status="completed",
    )


def failures(obs: Observations) -> dict[str, tuple[str, ...]]:
    return {c.claim: c.problems for c in verify(expectations(), obs) if not c.ok}


def test_everything_as_expected_passes_every_check() -> None:
    checks = verify(expectations(), good_observations())
    assert len(checks) == 7 and all(c.ok for c in checks)


def _one_failure(obs: Observations) -> tuple[str, str]:
    found = failures(obs)
    assert len(found) == 1, found
    ((claim, problems),) = found.items()
    return claim, " | ".join(problems)


def test_a_vm_left_on_or_an_extra_vm_off_fails() -> None:
    obs = good_observations()
    after = dict(obs.after)
    after[SELECTED[1]] = obs.before[SELECTED[1]]  # still on
    after[ON[3].ref] = replace(ON[3], power_state="poweredOff")  # not expected
    claim, why = _one_failure(replace(obs, after=after))
    assert claim == "exactly the 2 expected VMs were powered off"
    assert "still not off: DC0_C0_RP0_VM1 (vm-43)" in why
    assert "changed but not expected: DC0_C0_RP0_VM3 (vm-49)" in why


def test_a_missing_or_wrong_annotation_fails() -> None:
    obs = good_observations()
    bad = annotation(forced_shutdown=False, workflow_id="other").to_json()
    claim, why = _one_failure(replace(obs, annotations={SELECTED[0]: bad, ON[2].ref: "{}"}))
    assert claim.startswith("each preempted VM carries a valid annotation")
    assert "DC0_C0_RP0_VM1 (vm-43): no annotation" in why
    assert "workflowID='other'" in why and "forcedShutdown=False" in why
    assert "annotated but not preempted: DC0_C0_RP0_VM2 (vm-46)" in why
    _, why = _one_failure(replace(obs, annotations={**obs.annotations, SELECTED[0]: "not json"}))
    assert "does not parse" in why


def test_a_missing_or_misnamed_event_fails() -> None:
    obs = good_observations()
    claim, why = _one_failure(replace(obs, events=[]))
    assert claim == f"the sink received the {PREEMPTED_EVENT_TYPE}"
    assert "nothing of that type arrived" in why
    wrong = replace(obs.events[0], attributes={**obs.events[0].attributes, "id": "x-1"})
    _, why = _one_failure(replace(obs, events=[wrong]))
    assert f"expected '{ALARM}-4242'" in why
    fewer = replace(obs.events[0], data={**obs.events[0].data, "virtualMachines": []})
    _, why = _one_failure(replace(obs, events=[fewer]))
    assert "virtualMachines none" in why


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
        "the workflow's current_state names the preempted VMs",
        "the function accepted the lowering alarm event",
        "the workflow completed after the lowering event",
    }
    assert found["the workflow completed after the lowering event"] == ("its status is running",)


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


def test_the_policy_is_read_from_the_local_activity_marker() -> None:
    policy = {"cooldown_seconds": 5.0, "max_vms": 5, "soft_shutdown_grace_seconds": 120}
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
        "[  0.0s] worker policy: at most 5 VMs per run, cooldown 5s, soft-shutdown grace 120s"
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
