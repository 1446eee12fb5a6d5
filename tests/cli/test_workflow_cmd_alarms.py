"""`preemptctl workflow list`, and `status`/`cancel`/`run` by alarm and entity, against the
real Temporal dev server.

The workflows are started as the function starts them (signal-with-start, one per alarm and
entity, `<alarm>/<moref>`) and run by a STAND-IN registered as PreemptVMsWorkflow that speaks
the wire contract, our query extras included: these tests exercise the CLI, not the workflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from tests.cli.stand_in import StandInPreemptVMs
from tests.cli.workflow_helpers import cli, history, one_line, signals
from tests.temporal.helpers import eventually, signal_payload, signal_with_start, unique
from vsphere_preemption.domain.model import Resources, VmRef
from vsphere_preemption.domain.plan import Basis, Plan, Victim
from vsphere_preemption.wire import (
    CLI_WORKFLOW_ID,
    WORKFLOW_TYPE,
    WorkflowRequest,
    vm_ref_to_wire,
)


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class StandInWithExtras(StandInPreemptVMs):
    """Every signal 'preempts' VMS and reports the request's entity and a plan of them (in the
    plan's own shape: the CLI reads only what has it)."""

    VMS = (VmRef("vm-58"), VmRef("vm-61"))

    @workflow.run
    async def run(self) -> dict[str, Any]:
        # The SDK asks each workflow class to name its own run method.
        return await super().run()

    def changes(self, request: WorkflowRequest) -> dict[str, Any]:
        entity = request.alarmed_entity()
        victims = tuple(
            Victim(vm, vm.value, 0, "stand-in", Resources(), Basis.NONE) for vm in self.VMS
        )
        chosen = Plan(victims, (), None, (), (), request.criticality)
        return {
            "extra": {
                "entity": None if entity is None else vm_ref_to_wire(entity),
                "dryRun": request.dry_run,
                "plan": chosen.to_wire(),
            }
        }


@pytest.fixture
async def stand_in(temporal_client: Client) -> AsyncIterator[str]:
    queue = unique("cli-alarms")
    async with Worker(temporal_client, task_queue=queue, workflows=[StandInWithExtras]):
        yield queue


def alarm_payload(alarm: str, cluster: str, criticality: str = "HIGH") -> dict[str, Any]:
    """The Go function's signal (fixture 02) for `alarm` raised on cluster `cluster`."""
    payload = signal_payload(criticality=criticality)
    data = payload["event"]["data"]
    data["Alarm"]["Name"] = alarm
    data["Entity"]["Entity"] = {"Type": "ClusterComputeResource", "Value": cluster}
    return payload


async def start_alarm(client: Client, queue: str, alarm: str, cluster: str, **kw: str) -> None:
    await signal_with_start(
        client, f"{alarm}/{cluster}", queue, alarm_payload(alarm, cluster, **kw)
    )


async def listed(capsys: pytest.CaptureFixture[str], server: list[str], *argv: str) -> Any:
    assert await cli("list", *server, "--json", *argv) == 0
    return json.loads(capsys.readouterr().out)


async def status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id).describe()).status


async def test_list_shows_each_entity_of_an_alarm(
    server: list[str],
    stand_in: str,
    temporal_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alarm, other = unique("cpu-above-80"), unique("mem-above-90")
    await start_alarm(temporal_client, stand_in, alarm, "domain-c7")
    await start_alarm(temporal_client, stand_in, alarm, "domain-c8", criticality="MEDIUM")
    await start_alarm(temporal_client, stand_in, other, "domain-c7")

    # Visibility lags the start: poll the CLI's own answer until both are listed.
    rows = await eventually(
        lambda: listed(capsys, server, "--alarm", alarm),
        lambda rows: len(rows) == 2,
        what=f"both workflows of {alarm} listed",
    )
    assert [(r["workflowID"], r["alarm"], r["entity"]) for r in rows] == [
        (f"{alarm}/domain-c7", alarm, "domain-c7"),
        (f"{alarm}/domain-c8", alarm, "domain-c8"),
    ]
    assert {r["status"] for r in rows} == {"running"}
    assert [r["state"]["criticality"] for r in rows] == ["HIGH", "MEDIUM"]
    assert rows[0]["state"]["entity"] == {"Type": "ClusterComputeResource", "Value": "domain-c7"}
    assert rows[0]["state"]["workflowID"] == f"{alarm}/domain-c7"
    assert rows[0]["error"] is None

    # Without the filter both alarms are there (and whatever else other tests left open).
    everything = await eventually(
        lambda: listed(capsys, server),
        lambda rows: f"{other}/domain-c7" in {r["workflowID"] for r in rows},
        what=f"{other} listed",
    )
    assert {f"{alarm}/domain-c7", f"{alarm}/domain-c8"} <= {r["workflowID"] for r in everything}

    assert await cli("list", *server, "--alarm", alarm) == 0
    header, first, second, total = capsys.readouterr().out.strip().splitlines()
    assert header.split() == [
        "ALARM",
        "ENTITY",
        "LAST",
        "RUN",
        "VMS",
        "CRITICALITY",
        "PLAN",
        "STATE",
    ]
    assert first.split()[:2] == [alarm, "ClusterComputeResource:domain-c7"]
    assert "HIGH" in first.split() and "2 victim(s)" in first
    assert second.split()[:2] == [alarm, "ClusterComputeResource:domain-c8"]
    assert "MEDIUM" in second.split()
    assert total == "2 open preemption workflow(s)."


async def test_list_says_which_workflow_gave_no_answer(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("no-worker")
    queue = unique("nobody-polls")  # no worker: the query cannot be answered
    await start_alarm(temporal_client, queue, alarm, "domain-c7")
    rows = await eventually(
        lambda: listed(capsys, server, "--alarm", alarm),
        lambda rows: len(rows) == 1,
        what=f"{alarm} listed",
    )
    assert rows[0]["state"] is None
    assert "did not answer the 'current_state' query" in rows[0]["error"]
    assert queue in rows[0]["error"]
    await temporal_client.get_workflow_handle(f"{alarm}/domain-c7").terminate("test cleanup")


async def test_list_of_no_workflows(server: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("list", *server, "--alarm", unique("never-raised")) == 0
    assert capsys.readouterr().out.strip() == "No open preemption workflows."


async def test_status_and_cancel_by_alarm_and_entity_address_that_workflow_only(
    server: list[str],
    stand_in: str,
    temporal_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alarm = unique("cpu-above-80")
    await start_alarm(temporal_client, stand_in, alarm, "domain-c7", criticality="HIGH")
    await start_alarm(temporal_client, stand_in, alarm, "domain-c8", criticality="MEDIUM")

    assert await cli("status", *server, "--alarm", alarm, "--entity", "domain-c8", "--json") == 0
    state = json.loads(capsys.readouterr().out)
    assert (state["workflowID"], state["criticality"]) == (f"{alarm}/domain-c8", "MEDIUM")

    code = await cli(
        "cancel", *server, "--alarm", alarm, "--entity", "ClusterComputeResource:domain-c7"
    )
    assert code == 0
    assert f"'{alarm}/domain-c7'" in capsys.readouterr().out
    await eventually(
        lambda: status(temporal_client, f"{alarm}/domain-c7"),
        lambda s: s == WorkflowExecutionStatus.COMPLETED,  # the stand-in, like ours, completes
        what="the cancelled workflow to close",
    )
    assert await status(temporal_client, f"{alarm}/domain-c8") == WorkflowExecutionStatus.RUNNING

    # The Go form addresses the alarm's one workflow, which does not exist here.
    assert await cli("status", *server, "--alarm", alarm, "--go-id") == 1
    assert f"no workflow '{alarm}'" in one_line(capsys.readouterr().err)


async def test_run_entity_dry_run_and_policy_go_into_the_signal(
    fresh_cli_workflow: None,
    server: list[str],
    temporal_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await cli(
        "run", *server, "-q", unique("cli-run"), "--json", "--entity", "domain-c7",
        "--dry-run", "--policy-override", '{"maxVMs": 3}', "--set", "targets.cpu=70",
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr()
    assert "whole vCenter" not in out.err
    [signal] = signals(await history(temporal_client.get_workflow_handle(CLI_WORKFLOW_ID)))
    sent = json.loads(signal.input.payloads[0].data)
    assert list(sent) == ["tag", "criticality", "event", "replyTo", "entity", "dryRun", "policy"]
    assert sent["entity"] == {"Type": "ClusterComputeResource", "Value": "domain-c7"}
    assert sent["dryRun"] is True
    assert sent["policy"] == {"maxVMs": 3, "targets": {"cpu": 70}}
    assert json.loads(out.out)["request"] == sent


async def test_run_without_entity_says_it_acts_on_the_whole_vcenter(
    fresh_cli_workflow: None,
    server: list[str],
    temporal_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("run", *server, "-q", unique("cli-run")) == 0
    err = one_line(capsys.readouterr().err)
    assert "no --entity: this run acts on the whole vCenter" in err
    [signal] = signals(await history(temporal_client.get_workflow_handle(CLI_WORKFLOW_ID)))
    assert "entity" not in json.loads(signal.input.payloads[0].data)


async def test_run_with_an_alarm_event_says_whose_entity_it_takes(
    fresh_cli_workflow: None, server: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    event = alarm_payload("cpu", "domain-c9")["event"]
    assert await cli("run", *server, "-q", unique("cli-run"), "-e", json.dumps(event)) == 0
    err = one_line(capsys.readouterr().err)
    assert "the worker takes the alarm event's entity, ClusterComputeResource:domain-c9" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("run", "--entity", "Network:network-7"), "type 'Network' holds no VMs"),
        (("run", "--entity", "cluster one"), "is not a managed object"),
        (("run", "--policy-override", "{maxVMs: 3}"), "--policy-override is not valid JSON"),
        (("run", "--set", "maxVMs=0"), "maxVMs must be at least 1"),
        (("status", "--workflow-id", "x", "--alarm", "cpu"), "either --workflow-id or --alarm"),
        (("cancel", "--entity", "domain-c7"), "--entity needs --alarm"),
        (("cancel", "--alarm", "cpu", "--entity", "domain-c7", "--go-id"), "drop --entity"),
    ],
)
def test_invalid_flags_exit_2_before_anything_is_sent(
    closed_port: str, argv: tuple[str, ...], says: str
) -> None:
    # A port nobody listens on: exit 2 (not 1) shows the refusal came first.
    proc = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "workflow", *argv, "-s", closed_port],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert says in one_line(proc.stderr)
    assert proc.stdout == ""
