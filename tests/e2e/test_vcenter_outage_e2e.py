"""vCenter unreachable for longer than the activities' retry window, mid-run, then back;
vCenter restarted.

Real parts: Temporal's dev server, vcsim, `python -m vsphere_preemption worker` as its own
process (its log is what an operator reads), an event sink. The outage is a network one: the
worker reaches vcsim through a TCP forwarder (devtools/tcp_cut.py) that the test cuts (every
connection reset, new ones refused) and restores on the same port, so vcsim keeps its state
and the test reads the truth from vcsim directly, around the cut.

The retry window: every vCenter activity has 3 attempts, 1 s then 2 s apart
(workflow.RETRY_POLICY); a refused connection fails an attempt at once, so the outage outlasts
the window within seconds and no setting has to be shortened for the test.

Then vCenter restarted (vcsim on the same port, its inventory new, the tag re-created with a
new id): the worker, its tag-name cache warm, finds the tagged VMs at the next run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.e2e.world import run_history
from tests.temporal.helpers import (
    eventually,
    query_state,
    signal_payload,
    signal_with_start,
    unique,
    wait_for,
)
from tests.temporal.rig import (
    Rigs,
    client_for,
    powered_off,
    read_annotations,
    running_worker,
)
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.devtools.tcp_cut import TcpCut
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]


def error_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "error":
            lines.append(record)
    return lines


async def test_vcenter_unreachable_mid_run_fails_the_run_loudly_and_the_next_signal_acts(
    temporal_client: Client, worker_rig: Rigs, tmp_path: Path
) -> None:
    # Each power-off takes 1.5 s, one at a time: the cut lands after the first VM is off.
    # The rig's vcenter is the test's own view, straight to vcsim.
    sim, vcenter, scene, queue, env = worker_rig(
        "outage", on=3, off=0, vcsim=("-method-delay", "PowerOffVM_Task:1500"),
        PREEMPTION_NOTICE_HIGH="0", PREEMPTION_COOLDOWN="0", PREEMPTION_MAX_CONCURRENCY="1",
    )  # fmt: skip
    with TcpCut(sim.port) as link, EventSink() as sink:
        env = {**env, "VCENTER_URL": f"https://{link.address}/sdk"}  # the worker, through the cut
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            workflow_id = unique("alarm")
            first = signal_payload(criticality="HIGH", replyTo=sink.url)
            first["event"]["id"] = "during-the-outage"
            await signal_with_start(temporal_client, workflow_id, queue, first)
            handle = temporal_client.get_workflow_handle(workflow_id)

            async def some_off() -> set[Any]:
                return powered_off(vcenter, scene.on)

            await eventually(some_off, bool, what="the first VM off", timeout=60)
            link.cut()
            runs = await eventually(
                lambda: run_history(handle), lambda r: bool(r) and "outcome" in r[-1],
                what="the run's end", timeout=90,
            )  # fmt: skip
            failed_run = runs[-1]
            state_at_failure = await query_state(handle)
            off_at_failure = powered_off(vcenter, scene.on)
            notes_at_failure = read_annotations(vcenter, scene.on)
            events_at_failure = list(sink.events)
            status = (await handle.describe()).status
            log_at_failure = worker.log()

            link.restore()
            second = signal_payload(criticality="HIGH", replyTo=sink.url)
            second["event"]["id"] = "after-the-outage"
            await signal_with_start(temporal_client, workflow_id, queue, second)
            runs = await eventually(
                lambda: run_history(handle), lambda r: len(r) == 2 and "outcome" in r[-1],
                what="the second run", timeout=90,
            )  # fmt: skip
            await wait_for(lambda: bool(sink.events), what="the event", timeout=30)
            state = await query_state(handle)
            assert worker.proc is not None and worker.proc.poll() is None  # never restarted
            await handle.terminate("test over")
        finally:
            worker.stop()

    # The failed run: said so in its record, with why; the workflow lives on.
    assert failed_run["outcome"] == "failed", failed_run
    where = f"on vCenter {link.address}"
    assert failed_run["reason"].startswith("VSphereError: cannot stop virtual machines (poweroff)")
    assert where in failed_run["reason"], failed_run["reason"]
    assert status == WorkflowExecutionStatus.RUNNING
    # ... and in its state: the newest run, above the last one that acted (none here).
    assert state_at_failure["lastRun"]["outcome"] == "failed"
    assert state_at_failure["lastRun"]["reason"] == failed_run["reason"]
    # Nothing half-done that is not said: no annotation written, no event sent; the VMs
    # vCenter stopped before the link went are off, and the record names none as stopped.
    assert off_at_failure and notes_at_failure == {} and events_at_failure == []
    assert failed_run.get("stopped") in (None, [])
    # The worker's log says it at error level, naming the failed step.
    errors = [str(e.get("event", "")) for e in error_lines(log_at_failure)]
    assert any(e.startswith("powering VMs off failed") and where in e for e in errors), errors
    # vCenter back: the next signal acts on the VMs still on, without a worker restart.
    assert runs[-1]["outcome"] == "acted", runs[-1]
    rest = {r.value for r in scene.on} - {r.value for r in off_at_failure}
    assert set(runs[-1]["stopped"]) == rest and rest
    assert powered_off(vcenter, scene.on) == set(scene.on)
    notes = read_annotations(vcenter, scene.on)
    assert {v for r, v in notes.items() if r.value in rest} and all(
        json.loads(v)["event"]["id"] == "after-the-outage" for v in notes.values()
    )
    assert [e.type for e in sink.events] == [PREEMPTED_EVENT_TYPE]
    assert state["event"]["id"] == "after-the-outage"
    assert state["lastRun"]["outcome"] == "acted"
    vcenter.close()


async def test_vcenter_restarted_with_its_tags_re_created_the_next_run_finds_them(
    temporal_client: Client, worker_rig: Rigs
) -> None:
    # The worker's tag-name cache (5 min by default) is warm from the first run when vCenter
    # restarts; the tag is re-created there with a new id (vcsim forgets everything; a vCenter
    # restored or rebuilt does the same). The next run must find the VMs that carry it.
    sim, vcenter, scene, queue, env = worker_rig(
        "restart", on=2, off=0, PREEMPTION_NOTICE_HIGH="0", PREEMPTION_COOLDOWN="0"
    )
    workflow_id = unique("alarm")
    handle = temporal_client.get_workflow_handle(workflow_id)
    async with running_worker(env):
        first = signal_payload(criticality="HIGH", replyTo="")
        first["event"]["id"] = "before-the-restart"
        await signal_with_start(temporal_client, workflow_id, queue, first)
        await eventually(lambda: run_history(handle), lambda r: len(r) == 1 and "outcome" in r[0],
                         what="run 1", timeout=60)  # fmt: skip
        vcenter.close()
        sim.restart()  # the same port; every VM on again, no tag
        vcenter = client_for(sim)
        Inventory(vcenter).tag("preemptible", scene.on)
        second = signal_payload(criticality="HIGH", replyTo="")
        second["event"]["id"] = "after-the-restart"
        await signal_with_start(temporal_client, workflow_id, queue, second)
        runs = await eventually(
            lambda: run_history(handle), lambda r: len(r) == 2 and "outcome" in r[1],
            what="run 2", timeout=60,
        )  # fmt: skip
        await handle.terminate("test over")
    assert runs[0]["outcome"] == "acted"
    assert runs[1]["outcome"] == "acted", runs[1]
    assert sorted(runs[1]["stopped"]) == sorted(r.value for r in scene.on)
    assert powered_off(vcenter, scene.on) == set(scene.on)
    vcenter.close()
