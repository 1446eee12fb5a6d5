"""The `status` table: what a person reads about the last preemption run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.conftest import fixture_json
from vsphere_preemption.cli.workflow_render import (
    describe_event,
    describe_trigger,
    format_when,
    render_status,
)
from vsphere_preemption.domain.model import Criticality, VmRef
from vsphere_preemption.temporal.client import WorkflowSummary
from vsphere_preemption.wire import GO_ZERO_TIME, WorkflowRequest, WorkflowResponse

NOW = datetime(2021, 11, 5, 13, 10, 0, tzinfo=UTC)
SUMMARY = WorkflowSummary(
    workflow_id="cluster-cpu-above-80",
    run_id="5d438391-281c-47d3-9e04-562c128195db",
    workflow_type="PreemptVMsWorkflow",
    task_queue="vsphere-preemption",
    status="running",
    start_time=datetime(2021, 11, 5, 13, 2, 34, tzinfo=UTC),
    timeout_at=datetime(2021, 11, 6, 13, 2, 34, tzinfo=UTC),
)
ALARM_REQUEST = WorkflowRequest.from_wire(
    fixture_json("02_old-router_PreemptVMsChan-signal-WorkflowRequest.json")
)


def _response(**changes: object) -> WorkflowResponse:
    values: dict[str, object] = {
        "workflow_id": SUMMARY.workflow_id,
        "run_id": SUMMARY.run_id,
        "last_preemption": datetime(2021, 11, 5, 13, 7, 0, tzinfo=UTC),
        "virtual_machines": (VmRef("vm-58"), VmRef("vm-1021")),
        "tag": ALARM_REQUEST.tag,
        "criticality": ALARM_REQUEST.criticality,
        "event": ALARM_REQUEST.event,
        "reply_to": ALARM_REQUEST.reply_to,
    } | changes
    return WorkflowResponse(**values)  # type: ignore[arg-type]


def test_table_of_an_alarm_run() -> None:
    text = render_status(SUMMARY, _response(), NOW)
    lines = text.splitlines()
    assert lines[0] == "Workflow     cluster-cpu-above-80 (PreemptVMsWorkflow)"
    assert lines[1] == "Run          5d438391-281c-47d3-9e04-562c128195db"
    assert lines[2] == "Task queue   vsphere-preemption"
    assert lines[3] == (
        "Status       running, started 2021-11-05 13:02:34 UTC (7m ago), "
        "times out 2021-11-06 13:02:34 UTC (in 23h52m)"
    )
    assert "Last run     2021-11-05 13:07:00 UTC (3m ago)" in lines
    assert "Tag          preemptible" in lines
    assert "Criticality  HIGH (forced power-off)" in lines
    assert 'Why          alarm "cluster-cpu-above-80" on 10.161.166.252 green -> red' in lines
    assert "Reply to     http://default-broker-ingress.vmware-functions.svc.cluster.local" in lines
    event_line = next(line for line in lines if line.startswith("Event"))
    assert "com.vmware.event.router/event (AlarmStatusChangedEvent)" in event_line
    assert "id d65a8ad1-7d3c-4f72-ace4-e3f2883c4475" in event_line
    assert "from https://10.161.164.224/sdk" in event_line
    table = lines[lines.index("") + 1 :]
    assert table == [
        "VM       TYPE            SHUTDOWN",
        "vm-58    VirtualMachine  forced power-off",
        "vm-1021  VirtualMachine  forced power-off",
        "2 VM(s) preempted in the last run.",
    ]


def test_low_criticality_is_a_guest_shutdown() -> None:
    text = render_status(SUMMARY, _response(criticality=Criticality.LOW), NOW)
    assert "Criticality  LOW (guest shutdown)" in text
    assert "vm-58    VirtualMachine  guest shutdown" in text


def test_run_that_found_no_vms_says_so() -> None:
    for vms in (None, ()):
        text = render_status(SUMMARY, _response(virtual_machines=vms), NOW)
        assert text.endswith("No VMs preempted in the last run.")
        assert "VM " not in text


def test_workflow_that_never_ran_shows_no_run_details() -> None:
    never = WorkflowResponse(workflow_id=SUMMARY.workflow_id, run_id=SUMMARY.run_id)
    text = render_status(SUMMARY, never, NOW)
    assert text.splitlines()[-1] == "Last run     none yet (no PreemptVMsChan signal handled)"
    assert len(text.splitlines()) == 5  # the execution, then only that line
    assert "\nTag " not in text and "\nVM " not in text


def test_closed_workflow_shows_when_it_closed_instead_of_its_timeout() -> None:
    closed = WorkflowSummary(
        **{**SUMMARY.__dict__, "status": "timed_out", "close_time": NOW - timedelta(seconds=30)}
    )
    status = render_status(closed, _response(), NOW).splitlines()[3]
    assert status == (
        "Status       timed out, started 2021-11-05 13:02:34 UTC (7m ago), "
        "closed 2021-11-05 13:09:30 UTC (30s ago)"
    )


def test_trigger_of_a_manual_run() -> None:
    event = {
        "specversion": "1.0",
        "id": "x",
        "source": "preempctl-run",
        "type": "PreempctlRunEvent",
    }
    assert describe_trigger(event) == "manual run (preemptctl workflow run)"


def test_trigger_reads_lower_camel_alarm_data_too() -> None:
    event = {
        "type": "com.vmware.vsphere.AlarmStatusChangedEvent.v0",
        "data": {"alarm": {"name": "gpu-pressure"}, "entity": {"name": "esx-07"}, "to": "yellow"},
    }
    assert describe_trigger(event) == 'alarm "gpu-pressure" on esx-07 ? -> yellow'


def test_trigger_of_another_event_uses_its_message_or_type() -> None:
    message_event = {"type": "T", "data": {"FullFormattedMessage": "Host esx-1 is overloaded"}}
    assert describe_trigger(message_event) == "Host esx-1 is overloaded"
    assert describe_trigger({"type": "ThresholdExceededEvent", "subject": "cpu"}) == (
        "event ThresholdExceededEvent (cpu)"
    )
    assert describe_trigger({"specversion": "1.0", "id": "", "source": "", "type": ""}) == (
        "unknown (no event)"
    )


def test_event_line_keeps_an_unreadable_time_as_is() -> None:
    line = describe_event({"type": "T", "id": "1", "time": "someday"}, NOW)
    assert line == "T, id 1, at someday"
    assert describe_event({"type": ""}, NOW) == "none"


def test_format_when_in_the_past_and_future() -> None:
    assert format_when(NOW - timedelta(days=2, hours=3), NOW).endswith("(2d3h ago)")
    assert format_when(NOW + timedelta(seconds=42), NOW).endswith("(in 42s)")


def test_a_newer_run_that_failed_is_shown_above_the_last_one_that_acted() -> None:
    failed = {
        "run": 3,
        "kind": "preempt",
        "outcome": "failed",
        "endedAt": "2021-11-05T13:09:00Z",
        "reason": "VSphereError: vCenter gone",
    }
    text = render_status(SUMMARY, _response(extra={"lastRun": failed}), NOW)
    assert "Latest run   #3 failed at 2021-11-05T13:09:00Z: VSphereError: vCenter gone" in text
    assert "Last run     2021-11-05 13:07:00 UTC (3m ago)" in text
    never = _response(last_preemption=GO_ZERO_TIME, extra={"lastRun": failed})
    assert "Last run     none yet (no run acted)" in render_status(SUMMARY, never, NOW)
    acted = _response(extra={"lastRun": failed | {"outcome": "acted"}})
    assert "Latest run" not in render_status(SUMMARY, acted, NOW)


def test_a_held_run_says_what_holds_it_and_since_when_and_a_received_answer_keeps_it() -> None:
    held = {
        "until": None,
        "reason": "vSphere upgrade (paused: everything by ops)",
        "source": "pause",
        "status": "paused until unpaused: vSphere upgrade (paused: everything by ops)",
        "heldAt": "2021-11-05T13:08:00Z",
    }
    answer = json.loads(_response().to_json()) | {"paused": held}
    received = WorkflowResponse.from_wire(json.dumps(answer))  # as `status` reads it
    lines = render_status(SUMMARY, received, NOW).splitlines()
    assert lines[4] == (
        "Paused       paused until unpaused: vSphere upgrade (paused: everything by ops) "
        "(since 2021-11-05T13:08:00Z)"
    )
    assert "Paused" not in render_status(SUMMARY, _response(), NOW)
