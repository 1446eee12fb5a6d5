"""`preemptctl workflow run | status | cancel` against the real Temporal dev server.

The CLI runs in-process through `main([...])` (in a thread: it runs its own event
loop) and, where the process itself matters (exit codes, stderr), as a real
subprocess. `status` and `cancel` talk to a STAND-IN workflow registered under the
type name PreemptVMsWorkflow: it answers `current_state` the way the wire contract
says, so these tests exercise the CLI, not the workflow; one test at the end runs
the CLI against our real PreemptVMsWorkflow (with stand-in activities: no vCenter).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from tests.cli.stand_in import StandInPreemptVMs
from tests.cli.workflow_helpers import cli, history, one_line, signals
from tests.conftest import fixture_json
from tests.temporal.helpers import unique
from vsphere_preemption.domain.model import AnnotateOutcome, PowerOffOutcome, VmFacts, VmRef
from vsphere_preemption.domain.plan import plan
from vsphere_preemption.domain.policy import Policy, policy_from_mapping
from vsphere_preemption.temporal.contracts import (
    ANNOTATE_VMS,
    GET_POLICY,
    PLAN_PREEMPTION,
    POWER_OFF_VMS,
    READ_PAUSES,
    AnnotateInput,
    PauseBook,
    PlanInput,
    PlanOutput,
    PowerOffInput,
    PreemptionPolicy,
    ReadPausesInput,
)
from vsphere_preemption.temporal.workflow import PreemptVMsWorkflow
from vsphere_preemption.wire import (
    CLI_WORKFLOW_ID,
    QUERY_NAME,
    SIGNAL_NAME,
    WORKFLOW_TYPE,
)

ALARM_SIGNAL = "02_old-router_PreemptVMsChan-signal-WorkflowRequest.json"


@pytest.fixture
async def stand_in(temporal_client: Client) -> AsyncIterator[str]:
    """A worker for the stand-in on its own task queue; yields the queue."""
    queue = unique("cli-stand-in")
    async with Worker(temporal_client, task_queue=queue, workflows=[StandInPreemptVMs]):
        yield queue


async def wait_until_ran(handle: WorkflowHandle[Any, Any], signals_seen: int = 1) -> dict[str, Any]:
    """Poll current_state until the workflow has handled a signal (bounded, never timed)."""
    deadline = time.monotonic() + 30
    while True:
        state: dict[str, Any] = json.loads(await handle.query(QUERY_NAME, result_type=str))
        if state["virtualMachines"] is not None:
            return state
        assert time.monotonic() < deadline, f"the workflow never ran: {state}"
        await asyncio.sleep(0.1)


async def latest_run(client: Client) -> tuple[str, WorkflowExecutionStatus | None, int] | None:
    """(run ID, status, history length) of preempctl-run's latest run, None if never started."""
    try:
        description = await client.get_workflow_handle(CLI_WORKFLOW_ID).describe()
    except RPCError:
        return None
    return description.run_id, description.status, description.history_length


# --- run ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_cli_workflow")
async def test_run_signal_starts_the_cli_workflow_as_the_go_cli_does(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = unique("cli-run")
    assert await cli("run", *server, "-q", queue, "--json") == 0
    out = json.loads(one_line(capsys.readouterr().out))
    assert out["workflowID"] == "preempctl-run"

    handle = temporal_client.get_workflow_handle(CLI_WORKFLOW_ID, run_id=out["workflowRunID"])
    events = await history(handle)
    started = events[0].workflow_execution_started_event_attributes
    assert started.workflow_type.name == "PreemptVMsWorkflow"
    assert started.task_queue.name == queue
    assert started.workflow_execution_timeout.ToTimedelta() == timedelta(minutes=5)
    assert not started.HasField("input") or not started.input.payloads  # no workflow arguments

    [signal] = signals(events)
    assert signal.signal_name == "PreemptVMsChan"
    [payload] = signal.input.payloads
    assert payload.metadata["encoding"] == b"json/plain"
    sent = json.loads(payload.data)
    assert sent == out["request"]
    assert list(sent) == ["tag", "criticality", "event", "replyTo"], "Go's field order, not sorted"
    assert list(sent["event"])[:4] == ["specversion", "id", "source", "type"]
    assert (sent["tag"], sent["criticality"], sent["replyTo"]) == ("preemptible", "LOW", "")
    event = sent["event"]
    assert set(event) == {"specversion", "id", "source", "type", "time"}
    assert (event["specversion"], event["source"], event["type"]) == (
        "1.0",
        "preempctl-run",
        "PreempctlRunEvent",
    )
    uuid.UUID(event["id"])  # a fresh UUID, as the Go CLI makes


@pytest.mark.usefixtures("fresh_cli_workflow")
async def test_run_with_event_reply_to_and_criticality(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm_event = fixture_json("01_old-router_AlarmStatusChangedEvent.json")["event"]
    code = await cli(
        "run", *server, "-q", unique("cli-run"),
        "-t", "gpu-batch", "-c", "medium",
        "-e", json.dumps(alarm_event), "--reply-to", "http://sink.local/events",
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Sent PreemptVMsChan to workflow 'preempctl-run' (run ")
    assert out[0].endswith("if it was not running.")
    assert out[1] == (
        "tag gpu-batch, criticality MEDIUM (forced power-off), event "
        "com.vmware.event.router/event 15c7f3f5-072d-4cc8-994b-773992b78979, "
        "reply to http://sink.local/events"
    )
    [signal] = signals(await history(temporal_client.get_workflow_handle(CLI_WORKFLOW_ID)))
    assert json.loads(signal.input.payloads[0].data) == {
        "tag": "gpu-batch",
        "criticality": "MEDIUM",
        "event": alarm_event,
        "replyTo": "http://sink.local/events",
    }


@pytest.mark.usefixtures("fresh_cli_workflow")
async def test_second_run_signals_the_running_workflow(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = unique("cli-run")
    assert await cli("run", *server, "-q", queue, "--json") == 0
    assert await cli("run", *server, "-q", queue, "--json", "-c", "HIGH") == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["workflowRunID"] == second["workflowRunID"]
    sent = signals(await history(temporal_client.get_workflow_handle(CLI_WORKFLOW_ID)))
    assert [json.loads(s.input.payloads[0].data)["criticality"] for s in sent] == ["LOW", "HIGH"]


@pytest.mark.usefixtures("fresh_cli_workflow")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-c", "urgent"), "--criticality 'urgent' is invalid (valid: LOW, MEDIUM, HIGH)"),
        (("-e", "{not json"), "--event is not valid JSON"),
        (
            ("-e", '{"specversion":"1.0","source":"me","type":"T"}'),
            "--event is not a CloudEvent: missing required attribute 'id'",
        ),
        (("-e", '{"id":"1","source":"me","type":"T"}'), "missing required attribute 'specversion'"),
        (("-t", ""), "--tag must not be empty"),
        (("--reply-to", "broker:8080"), "--reply-to must be an http:// or https:// URL"),
    ],
)
async def test_invalid_run_input_is_refused_before_anything_is_sent(
    server: list[str],
    temporal_client: Client,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    before = await latest_run(temporal_client)
    assert await cli("run", *server, "-q", unique("cli-run"), *argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in one_line(captured.err)
    assert one_line(captured.err).startswith("preemptctl workflow run: error: ")
    assert await latest_run(temporal_client) == before  # nothing started, nothing signalled
    assert before is None or before[1] != WorkflowExecutionStatus.RUNNING


async def test_invalid_input_is_refused_without_connecting(
    closed_port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # With nothing listening, a CLI that connected first would answer "cannot reach".
    assert await cli("run", "-s", closed_port, "-c", "SEVERE") == 2
    assert "--criticality 'SEVERE' is invalid" in one_line(capsys.readouterr().err)


# --- status ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_cli_workflow")
async def test_status_of_the_cli_workflow_as_a_table(
    server: list[str],
    temporal_client: Client,
    stand_in: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("run", *server, "-q", stand_in) == 0
    await wait_until_ran(temporal_client.get_workflow_handle(CLI_WORKFLOW_ID))
    capsys.readouterr()

    assert await cli("status", *server) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Workflow     preempctl-run (PreemptVMsWorkflow)"
    assert lines[2] == f"Task queue   {stand_in}"
    assert lines[3].startswith("Status       running, started ")
    assert "times out" in lines[3]
    assert "Tag          preemptible" in lines
    assert "Criticality  LOW (guest shutdown)" in lines
    assert "Why          manual run (preemptctl workflow run)" in lines
    assert any(line.startswith("Event        PreempctlRunEvent, id ") for line in lines)
    assert "Reply to     none" in lines
    assert lines[-4:] == [
        "VM       TYPE            SHUTDOWN",
        "vm-58    VirtualMachine  guest shutdown",
        "vm-1021  VirtualMachine  guest shutdown",
        "2 VM(s) preempted in the last run.",
    ]


async def test_status_json_is_the_current_state_answer_as_is(
    server: list[str], temporal_client: Client, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("cluster-cpu-above-80")
    handle = await temporal_client.start_workflow(
        WORKFLOW_TYPE, id=alarm, task_queue=stand_in,
        start_signal=SIGNAL_NAME, start_signal_args=[fixture_json(ALARM_SIGNAL)],
    )  # fmt: skip
    await wait_until_ran(handle)

    assert await cli("status", *server, "--workflow-id", alarm, "--json") == 0
    printed = one_line(capsys.readouterr().out)
    assert printed == await handle.query(QUERY_NAME, result_type=str)
    state = json.loads(printed)
    assert list(state) == [
        "workflowID", "workflowRunID", "workflowName", "lastPreemptionTime",
        "virtualMachines", "tag", "criticality", "event", "replyTo",
    ]  # fmt: skip
    assert state["virtualMachines"] == [
        {"Type": "VirtualMachine", "Value": "vm-58"},
        {"Type": "VirtualMachine", "Value": "vm-1021"},
    ]
    assert state["event"] == fixture_json(ALARM_SIGNAL)["event"]


async def test_status_of_an_alarm_workflow_says_why(
    server: list[str], temporal_client: Client, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("cluster-cpu-above-80")
    handle = await temporal_client.start_workflow(
        WORKFLOW_TYPE, id=alarm, task_queue=stand_in,
        start_signal=SIGNAL_NAME, start_signal_args=[fixture_json(ALARM_SIGNAL)],
    )  # fmt: skip
    await wait_until_ran(handle)

    assert await cli("status", *server, "--workflow-id", alarm) == 0
    out = capsys.readouterr().out
    assert f"Workflow     {alarm} (PreemptVMsWorkflow)" in out
    assert 'Why          alarm "cluster-cpu-above-80" on 10.161.166.252 green -> red' in out
    assert "Criticality  HIGH (forced power-off)" in out
    assert "vm-58    VirtualMachine  forced power-off" in out
    assert "Reply to     http://default-broker-ingress.vmware-functions.svc.cluster.local" in out


async def test_status_before_any_signal(
    server: list[str], temporal_client: Client, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("quiet-alarm")
    await temporal_client.start_workflow(WORKFLOW_TYPE, id=alarm, task_queue=stand_in)
    assert await cli("status", *server, "--workflow-id", alarm) == 0
    out = capsys.readouterr().out
    assert "Last run     none yet (no PreemptVMsChan signal handled)" in out


async def test_status_of_a_completed_run_reads_its_result_without_a_worker(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm, queue = unique("done-alarm"), unique("cli-stand-in")
    async with Worker(temporal_client, task_queue=queue, workflows=[StandInPreemptVMs]):
        handle = await temporal_client.start_workflow(
            WORKFLOW_TYPE, id=alarm, task_queue=queue,
            start_signal=SIGNAL_NAME, start_signal_args=[fixture_json(ALARM_SIGNAL)],
        )  # fmt: skip
        await wait_until_ran(handle)
        await handle.cancel()
        result = await handle.result()
    # The worker is gone: a query could not be answered, the history still can.
    assert await cli("status", *server, "--workflow-id", alarm) == 0
    out = capsys.readouterr().out
    assert "Status       completed, started " in out and ", closed " in out
    assert "vm-1021  VirtualMachine  forced power-off" in out

    assert await cli("status", *server, "--workflow-id", alarm, "--json") == 0
    assert json.loads(capsys.readouterr().out) == result


async def test_status_of_a_given_run_id(
    server: list[str], temporal_client: Client, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("twice-alarm")
    payload = fixture_json(ALARM_SIGNAL)
    first = await temporal_client.start_workflow(
        WORKFLOW_TYPE, id=alarm, task_queue=stand_in,
        start_signal=SIGNAL_NAME, start_signal_args=[payload],
    )  # fmt: skip
    await wait_until_ran(first)
    await first.cancel()
    await first.result()
    second = await temporal_client.start_workflow(
        WORKFLOW_TYPE, id=alarm, task_queue=stand_in,
        start_signal=SIGNAL_NAME, start_signal_args=[payload | {"criticality": "LOW"}],
    )  # fmt: skip
    await wait_until_ran(second)

    assert (
        await cli("status", *server, "--workflow-id", alarm, "-r", first.result_run_id or "") == 0
    )
    out = capsys.readouterr().out
    assert f"Run          {first.result_run_id}" in out
    assert "completed" in out and "Criticality  HIGH (forced power-off)" in out

    assert await cli("status", *server, "--workflow-id", alarm) == 0
    out = capsys.readouterr().out
    assert f"Run          {second.result_run_id}" in out
    assert "running" in out and "Criticality  LOW (guest shutdown)" in out


async def test_status_of_an_unknown_workflow(
    server: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("status", *server, "--workflow-id", "no-such-alarm") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err).startswith(
        "preemptctl workflow status: error: no workflow 'no-such-alarm' in namespace "
        "'vsphere-preemption'"
    )


async def test_status_of_an_unknown_namespace(
    server: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("status", *server, "-n", "no-such-namespace") == 1
    assert "Namespace no-such-namespace is not found" in one_line(capsys.readouterr().err)


async def test_status_when_no_worker_answers_names_the_task_queue(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm, queue = unique("orphan-alarm"), unique("nobody-polls")
    handle = await temporal_client.start_workflow(WORKFLOW_TYPE, id=alarm, task_queue=queue)
    try:
        assert await cli("status", *server, "--workflow-id", alarm) == 1
    finally:
        await handle.terminate("test over")
    err = one_line(capsys.readouterr().err)
    assert "is running but did not answer the 'current_state' query" in err
    assert f"is a worker polling task queue '{queue}'?" in err


# --- cancel ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_cli_workflow")
async def test_cancel_the_cli_workflow(
    server: list[str], temporal_client: Client, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("run", *server, "-q", stand_in, "--json") == 0
    run_id = json.loads(capsys.readouterr().out)["workflowRunID"]
    handle = temporal_client.get_workflow_handle(CLI_WORKFLOW_ID, run_id=run_id)
    await wait_until_ran(handle)

    assert await cli("cancel", *server) == 0
    assert one_line(capsys.readouterr().out) == (
        f"Cancellation requested for workflow 'preempctl-run' (run {run_id}); "
        "the worker ends it after its current step."
    )
    result = await handle.result()  # the stand-in completes with its last state, like ours
    assert result["virtualMachines"] == [
        {"Type": "VirtualMachine", "Value": "vm-58"},
        {"Type": "VirtualMachine", "Value": "vm-1021"},
    ]
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    # Nothing left to cancel: said plainly, non-zero.
    assert await cli("cancel", *server) == 1
    assert one_line(capsys.readouterr().err) == (
        f"preemptctl workflow cancel: error: workflow 'preempctl-run' (run {run_id}) is not "
        "running (completed): nothing to cancel"
    )


async def test_cancel_a_given_run_without_a_worker_records_the_request(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("cancel-me")
    handle = await temporal_client.start_workflow(
        WORKFLOW_TYPE, id=alarm, task_queue=unique("nobody-polls")
    )
    run_id = handle.result_run_id or ""
    try:
        code = await cli("cancel", *server, "--workflow-id", alarm, "--run-id", run_id, "--json")
        assert code == 0
        assert json.loads(capsys.readouterr().out) == {
            "workflowID": alarm,
            "workflowRunID": run_id,
            "cancelRequested": True,
        }
        kinds = [e.event_type for e in await history(handle)]
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED in kinds
    finally:
        await handle.terminate("test over")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--workflow-id", "no-such-alarm"), "no workflow 'no-such-alarm' in namespace"),
        (
            ("-r", "00000000-0000-0000-0000-000000000000"),
            "no workflow 'preempctl-run' (run 00000000-0000-0000-0000-000000000000)",
        ),
    ],
)
async def test_cancel_of_an_unknown_workflow_or_run(
    server: list[str], capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    assert await cli("cancel", *server, *argv) == 1
    err = one_line(capsys.readouterr().err)
    assert err.startswith("preemptctl workflow cancel: error: ") and message in err


# --- an unreachable server ---------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["run", "status", "cancel"])
async def test_unreachable_server_is_one_line_and_exit_1(
    closed_port: str, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    assert await cli(verb, "-s", closed_port) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err) == (
        f"preemptctl workflow {verb}: error: cannot reach the Temporal server at "
        f"{closed_port}: Connection refused"
    )


async def test_a_server_that_never_answers_does_not_hang_the_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Accepts the TCP connection, then says nothing: the CLI gives up after its timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        assert await cli("status", "-s", address) == 1
    assert one_line(capsys.readouterr().err).endswith(
        f"cannot reach the Temporal server at {address}: no answer within 5s"
    )


# --- as a real process ---------------------------------------------------------------------------

PREEMPTCTL = str(Path(sys.executable).parent / "preemptctl")


async def run_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, list(argv), capture_output=True, text=True, timeout=60, check=False
    )


async def test_console_script_unreachable_server(closed_port: str) -> None:
    done = await run_process(PREEMPTCTL, "workflow", "status", "-s", closed_port)
    assert done.returncode == 1
    assert done.stdout == ""
    assert one_line(done.stderr) == (
        f"preemptctl workflow status: error: cannot reach the Temporal server at "
        f"{closed_port}: Connection refused"
    )


@pytest.mark.usefixtures("fresh_cli_workflow")
async def test_console_script_run_then_status_then_cancel(
    server: list[str], temporal_client: Client, stand_in: str
) -> None:
    done = await run_process(PREEMPTCTL, "workflow", *server, "-q", stand_in, "run", "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["workflowRunID"]
    handle = temporal_client.get_workflow_handle(CLI_WORKFLOW_ID, run_id=run_id)
    await wait_until_ran(handle)

    done = await run_process(sys.executable, "-m", "vsphere_preemption", "workflow", "status",
                             *server, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["workflowRunID"] == run_id

    done = await run_process(PREEMPTCTL, "workflow", "cancel", *server, "-r", run_id)
    assert done.returncode == 0, done.stderr
    await handle.result()


COUNT_AFTER_A_COMMAND = """
import gc, sys
from temporalio.client import Client
from temporalio.runtime import Runtime
from vsphere_preemption.cli.main import main
code = main(sys.argv[1:])
live = sum(1 for o in gc.get_objects() if isinstance(o, Client | Runtime))
print(code, live)
"""


async def test_a_command_leaves_no_temporal_object_for_the_interpreter_to_free(
    server: list[str],
) -> None:
    # temporalio's objects, freed while the interpreter finalizes, abort it now and then
    # (sdk-python#300: exit 134/139 instead of 1). Whether a given run aborts is luck, so
    # the test checks the cause instead, in a fresh process: once the command returns, the
    # Temporal client and runtime it made are gone already, freed while the interpreter
    # was whole; none is left for finalization.
    done = await run_process(sys.executable, "-c", COUNT_AFTER_A_COMMAND, "workflow", "status",
                             *server, "--workflow-id", "no-such-alarm")  # fmt: skip
    assert done.stdout.split()[-2:] == ["1", "0"], done.stdout + done.stderr


# --- against our real workflow -------------------------------------------------------------------


def vcenter_stand_ins(calls: list[Any]) -> list[Any]:
    """The worker's activities under their real names, answering without a vCenter."""

    @activity.defn(name=GET_POLICY)
    async def policy() -> PreemptionPolicy:
        no_notice = policy_from_mapping({"notice": {"HIGH": 0}}).to_wire()
        return PreemptionPolicy(selection=no_notice)

    @activity.defn(name=PLAN_PREEMPTION)
    async def find(arg: PlanInput) -> PlanOutput:
        calls.append(arg)
        facts = [
            VmFacts(ref=VmRef(v), name=v, power_state="poweredOn", in_scope=True)
            for v in ("vm-201", "vm-202")
        ]
        chosen = plan(facts, None, Policy.from_wire(arg.policy), arg.criticality)
        return PlanOutput(plan=chosen.to_wire(), usage=None)

    @activity.defn(name=POWER_OFF_VMS)
    async def power_off(arg: PowerOffInput) -> PowerOffOutcome:
        calls.append(arg)
        return PowerOffOutcome(powered_off=list(arg.vms))

    @activity.defn(name=ANNOTATE_VMS)
    async def annotate(arg: AnnotateInput) -> AnnotateOutcome:
        return AnnotateOutcome(annotated=list(arg.vms))

    @activity.defn(name=READ_PAUSES)
    async def no_pauses(arg: ReadPausesInput) -> PauseBook:
        return PauseBook()  # nothing paused: the run acts at once

    return [policy, find, power_off, annotate, no_pauses]


@pytest.mark.usefixtures("fresh_cli_workflow")
async def test_run_status_cancel_against_our_real_workflow(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, calls = unique("cli-real"), list[Any]()
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[PreemptVMsWorkflow],
        activities=vcenter_stand_ins(calls),
    ):
        assert await cli("run", *server, "-q", queue, "-c", "high", "-t", "batch", "--json") == 0
        run_id = json.loads(capsys.readouterr().out)["workflowRunID"]
        handle = temporal_client.get_workflow_handle(CLI_WORKFLOW_ID, run_id=run_id)
        await wait_until_ran(handle)
        assert (calls[0].tag, calls[0].entity) == ("batch", None)  # the whole vCenter
        assert (calls[1].vms, calls[1].force) == ([VmRef("vm-201"), VmRef("vm-202")], True)

        assert await cli("status", *server) == 0
        table = capsys.readouterr().out
        assert "Status       running, started " in table
        assert "Tag          batch" in table
        assert "Criticality  HIGH (forced power-off)" in table
        assert "vm-202  VirtualMachine  forced power-off" in table

        assert await cli("status", *server, "--json") == 0
        printed = one_line(capsys.readouterr().out)
        assert printed == await handle.query(QUERY_NAME, result_type=str)
        assert json.loads(printed)["workflowRunID"] == run_id

        assert await cli("cancel", *server) == 0
        capsys.readouterr()
        result = await handle.result()
    assert result["virtualMachines"] == [
        {"Type": "VirtualMachine", "Value": "vm-201"},
        {"Type": "VirtualMachine", "Value": "vm-202"},
    ]
    # Completed, worker gone: status still shows the last run, from the history.
    assert await cli("status", *server) == 0
    table = capsys.readouterr().out
    assert "Status       completed, started " in table
    assert "vm-201  VirtualMachine  forced power-off" in table
