"""`preemptctl history` against the real Temporal dev server and our real PreemptVMsWorkflow.

The workflow runs on a worker with stand-in activities (tests/temporal/test_workflow.py's
`StandIns`: no vCenter, no notice, a 60 s cooldown); the CLI runs in-process through
`main([...])`, in a thread, as the `workflow` tests run it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from tests.cli.workflow_helpers import one_line
from tests.temporal.helpers import eventually, signal_payload, signal_with_start, unique
from tests.temporal.test_workflow import StandIns
from vsphere_preemption.cli.main import main
from vsphere_preemption.temporal.workflow import PreemptVMsWorkflow
from vsphere_preemption.wire import HISTORY_QUERY, SIGNAL_NAME, WORKFLOW_TYPE


async def history_cli(*argv: str) -> int:
    # main() runs asyncio.run(): keep it off the test's event loop.
    return await asyncio.to_thread(main, ["history", *argv])


async def remembered(handle: WorkflowHandle[Any, Any], count: int) -> list[dict[str, Any]]:
    """Poll the workflow's `history` query until it holds `count` runs."""

    async def probe() -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = json.loads(
            await handle.query(HISTORY_QUERY, result_type=str)
        )
        return answer

    return await eventually(probe, lambda runs: len(runs) >= count, what=f"{count} run(s)")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("  ") if cell.strip()]


@pytest.fixture
async def worker(temporal_client: Client) -> AsyncIterator[str]:
    """Our real workflow with stand-in activities on a queue of its own; yields the queue."""
    queue = unique("cli-history")
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[PreemptVMsWorkflow],
        activities=StandIns().activities(),
    ):
        yield queue


async def two_runs(client: Client, workflow_id: str, queue: str) -> WorkflowHandle[Any, Any]:
    """Run 1 acts (HIGH); run 2, within the 60 s cooldown, is skipped."""
    handle = await signal_with_start(client, workflow_id, queue, signal_payload(replyTo=""))
    await remembered(handle, 1)
    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo=""))
    await remembered(handle, 2)
    return handle


async def test_one_workflow_running_then_completed(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("cpu")
    workflow_id = f"{alarm}/domain-c7"
    queue = unique("cli-history")
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[PreemptVMsWorkflow],
        activities=StandIns().activities(),
    ):
        handle = await two_runs(temporal_client, workflow_id, queue)
        run_id = (await handle.describe()).run_id

        # Running: the `history` query, addressed as `workflow status` addresses it.
        assert await history_cli(*server, "--alarm", alarm, "--entity", "domain-c7") == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"Workflow {workflow_id} (run {run_id}), running, started ")
        assert cells(lines[1]) == [
            "WHEN (UTC)", "RUN", "KIND", "CRITICALITY", "ACTION", "VMS", "OUTCOME", "REASON",
        ]  # fmt: skip
        acted, skipped = cells(lines[2]), cells(lines[3])
        assert acted[1:4] == ["1", "preempt", "HIGH"]
        assert acted[5:] == ["2 stopped", "acted", "-"]
        assert skipped[1:] == ["2", "preempt", "LOW", "-", "-", "skipped", "within the cooldown"]
        assert lines[4:] == ["2 run(s)."]

        assert await history_cli(*server, "--workflow-id", workflow_id, "--json") == 0
        running = json.loads(one_line(capsys.readouterr().out))
        records = await remembered(handle, 2)
        assert running == [{"workflowID": workflow_id, "runID": run_id, **r} for r in records]
        assert [(r["run"], r["outcome"], r.get("stopped")) for r in running] == [
            (1, "acted", ["vm-1", "vm-2"]),
            (2, "skipped", None),
        ]

        await handle.cancel()
        result = await handle.result()
    # Completed, and no worker polls its queue any more: the runs come from its result.
    assert await history_cli(*server, "--workflow-id", workflow_id, "-r", run_id) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Workflow {workflow_id} (run {run_id}), completed, started ")
    assert [cells(line)[6] for line in lines[2:4]] == ["acted", "skipped"]
    assert await history_cli(*server, "--workflow-id", workflow_id, "--json") == 0
    closed = json.loads(one_line(capsys.readouterr().out))
    assert closed == running
    assert closed == [{"workflowID": workflow_id, "runID": run_id, **r} for r in result["history"]]


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class BeforeHistory:
    """Completes as a PreemptVMsWorkflow did before runs were recorded: no `history`."""

    @workflow.run
    async def run(self) -> dict[str, Any]:
        info = workflow.info()
        return {"workflowID": info.workflow_id, "workflowRunID": info.run_id, "tag": ""}


async def test_a_run_completed_before_history_existed_says_so(
    server: list[str], temporal_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, workflow_id = unique("cli-history-old"), unique("old")
    async with Worker(temporal_client, task_queue=queue, workflows=[BeforeHistory]):
        handle = await temporal_client.start_workflow(
            WORKFLOW_TYPE, id=workflow_id, task_queue=queue
        )
        assert "history" not in await handle.result()
    assert await history_cli(*server, "--workflow-id", workflow_id) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err) == (
        f"preemptctl history: error: workflow {workflow_id!r} (run {handle.result_run_id}) "
        "completed before runs were recorded: its result has no history"
    )


async def test_all_merges_running_and_closed_workflows_in_time_order(
    server: list[str], temporal_client: Client, worker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    alarm = unique("mem")
    closed_id, running_id, ended_id = (f"{alarm}/domain-c{n}" for n in (7, 8, 9))
    closed = await two_runs(temporal_client, closed_id, worker)
    await closed.cancel()
    await closed.result()
    running = await signal_with_start(temporal_client, running_id, worker, signal_payload())
    await remembered(running, 1)
    ended = await signal_with_start(temporal_client, ended_id, worker, signal_payload())
    await remembered(ended, 1)
    await ended.terminate("test: a run that leaves no result")
    ended_run = (await ended.describe()).run_id

    # Visibility lags a start and a close: ask until all three are listed as they are now.
    note = (
        f"workflow {ended_id!r} (run {ended_run}) is terminated: "
        "it left no result to read its runs from"
    )
    deadline = time.monotonic() + 60
    while True:
        assert await history_cli(*server, "--all", "--alarm", alarm, "--json") == 0
        captured = capsys.readouterr()
        rows = json.loads(captured.out)
        if [r["workflowID"] for r in rows] == [closed_id, closed_id, running_id] and note in (
            captured.err
        ):
            break
        assert time.monotonic() < deadline, f"never listed: {rows} {captured.err}"
        await asyncio.sleep(0.2)
    assert [(r["run"], r["outcome"]) for r in rows] == [(1, "acted"), (2, "skipped"), (1, "acted")]
    assert rows[2]["runID"] == (await running.describe()).run_id

    assert await history_cli(*server, "--all", "--alarm", alarm, "--since", "1h") == 0
    lines = capsys.readouterr().out.splitlines()
    assert cells(lines[0])[:3] == ["WHEN (UTC)", "WORKFLOW", "RUN"]
    assert [cells(line)[1:3] for line in lines[1:4]] == [
        [closed_id, "1"], [closed_id, "2"], [running_id, "1"],
    ]  # fmt: skip
    assert lines[4:] == ["3 run(s).", note]

    assert await history_cli(*server, "--all", "--alarm", alarm, "--limit", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert cells(lines[1])[1:4] == [running_id, "1", "preempt"]
    assert lines[2:] == ["1 run(s).", "the newest 1 of 3 runs (--limit)", note]

    # Addressed alone, the terminated run is replayed by the worker, which answers its query.
    assert await history_cli(*server, "--workflow-id", ended_id, "--json") == 0
    [replayed] = json.loads(one_line(capsys.readouterr().out))
    assert (replayed["runID"], replayed["outcome"]) == (ended_run, "acted")
    await running.terminate("test over")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--all", "--workflow-id", "x"], "--workflow-id addresses one, not with --all"),
        (["--all", "--entity", "domain-c7"], "--entity addresses one, not with --all"),
        (["--all", "-r", "run-1"], "--run-id names a run of one workflow"),
        (["--all", "--since", "3 days"], "--since: not a duration: '3 days'"),
        (["--all", "--since", "0s"], "--since must be longer than zero"),
        (["--all", "--limit", "0"], "--limit must be at least 1, got 0"),
        (["--all", "--alarm", " "], "alarm"),
        (["--since", "1h"], "--since is for --all"),
        (["--workflow-id", "x", "--alarm", "cpu"], "give either --workflow-id or --alarm"),
        (["--entity", "domain-c7"], "--entity needs --alarm"),
        (["--alarm", "cpu", "--go-id", "--entity", "domain-c7"], "drop --entity"),
    ],
)
async def test_invalid_flags_exit_2_before_anything_is_sent(
    closed_port: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server flag names a port where nothing listens: exit 2, not 1, proves no try.
    assert await history_cli("-s", closed_port, *argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("preemptctl history: error: ")
    assert message in line


@pytest.mark.parametrize("argv", [["--limit", "many"], ["--go-id", "--id-mode", "entity"]])
def test_flags_argparse_refuses_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["history", *argv])
    assert exited.value.code == 2


async def test_an_unreachable_server_is_one_line_and_exit_1(
    closed_port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await history_cli("-s", closed_port, "--all") == 1
    assert one_line(capsys.readouterr().err) == (
        f"preemptctl history: error: cannot reach the Temporal server at {closed_port}: "
        "Connection refused"
    )
