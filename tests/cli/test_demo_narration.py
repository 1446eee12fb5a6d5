"""The story the demo tells from a workflow's history, and its plan as the query answers it."""

from __future__ import annotations

import json
from typing import Any

from temporalio.api.common.v1 import ActivityType, Payload, Payloads
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    MarkerRecordedEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
)

from tests.cli.demo_fixtures import (
    NAMES,
    E,
    activity,
    done,
    extras,
    fired,
    history_event,
    json_payloads,
    the_plan,
    timer,
)
from vsphere_preemption.devtools.demo.inventory import DEMO_POLICY
from vsphere_preemption.devtools.demo.progress import HistoryNarrator, notice_started, run_finished
from vsphere_preemption.devtools.demo.report import plan_lines, pretty
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.wire import SCHEDULED_EVENT_TYPE


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
