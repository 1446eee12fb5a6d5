"""`preemptctl worker` as its own process: killed mid-run, signalled by the `temporal`
CLI with the exact bytes the Go function sends, stopped with SIGTERM, misconfigured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from tests.conftest import FIXTURES
from tests.temporal.helpers import (
    SIGNAL_FIXTURE,
    eventually,
    has_run,
    refs,
    signal_payload,
    signal_with_start,
    unique,
)
from tests.temporal.rig import (
    SECRET,
    Observer,
    Rigs,
    powered_off,
    read_annotations,
    worker_and_successor,
)
from vsphere_preemption.devtools.devservers import TemporalDevServer, temporal_binary
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.wire import QUERY_NAME, SIGNAL_NAME, WORKFLOW_TYPE, WorkflowResponse

GO_RESPONSE_KEYS = {
    "workflowID", "workflowRunID", "workflowName", "lastPreemptionTime", "virtualMachines",
    "tag", "criticality", "event", "replyTo",
}  # fmt: skip


def activity_attempts(events: list[Any], name: str) -> list[int]:
    """The attempt number of every started task of activity `name` (one per scheduling)."""
    scheduled = {
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == name
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def test_a_worker_killed_mid_run_and_restarted_misses_no_vm_and_repeats_none(
    temporal_client: Client, worker_rig: Rigs, tmp_path: Path
) -> None:
    # Each power-off takes 2 s in vcsim, one at a time: the kill lands mid-activity.
    sim, vcenter, scene, task_queue, env = worker_rig(
        "kill", on=4, off=1, vcsim=("-method-delay", "PowerOffVM_Task:2000"),
        PREEMPTION_MAX_CONCURRENCY="1",
    )  # fmt: skip
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent", "VmGuestShutdownEvent")
    with worker_and_successor(env, tmp_path) as (first, second):
        handle = await signal_with_start(
            temporal_client, unique("alarm"), task_queue, signal_payload(replyTo="")
        )

        async def off_now() -> set[VmRef]:
            return powered_off(vcenter, scene.on)

        off_at_kill = await eventually(off_now, bool, what="the first VM off")
        first.kill()
        assert len(off_at_kill) < len(scene.on), "the kill came too late to be mid-run"

        second.start()
        state = await has_run(handle, timeout=180)
        history = await handle.fetch_history()
        await handle.terminate("test over")
        assert second.terminate() == 0

    # No VM missed, none acted on twice, nothing else touched.
    assert refs(state) == set(scene.on)
    assert powered_off(vcenter, scene.all_vms) == set(scene.on) | set(scene.off)
    events = observer.events("VmPoweredOffEvent", "VmGuestShutdownEvent")
    observer.close()
    assert events == {("VmPoweredOffEvent", r.value): 1 for r in scene.on}
    assert set(read_annotations(vcenter, scene.all_vms)) == set(scene.on)
    vcenter.close()
    # One scheduled power-off, finished by a later attempt on the second worker.
    attempts = activity_attempts(list(history.events), "PowerOffVMs")
    assert len(attempts) == 1 and attempts[0] >= 2


def temporal_cli(server: TemporalDevServer, *args: str) -> str:
    done = subprocess.run(
        [str(temporal_binary()), *args, "--address", server.address,
         "--namespace", "vsphere-preemption"],
        capture_output=True, check=False, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_temporal_cli_with_the_go_functions_exact_bytes_and_sigterm(
    temporal_server: TemporalDevServer, temporal_client: Client, worker_rig: Rigs, tmp_path: Path
) -> None:
    _, vcenter, scene, task_queue, env = worker_rig("cli", on=3, off=1)
    workflow_id = "cluster-cpu-above-80"  # the alarm name, as the Go function names it
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        # The exact bytes: its replyTo is a cluster-internal broker this machine cannot
        # reach, so sending the event fails all 3 attempts; the run must not fail.
        temporal_cli(
            temporal_server, "workflow", "signal-with-start",
            "--type", WORKFLOW_TYPE, "--workflow-id", workflow_id, "--task-queue", task_queue,
            "--execution-timeout", "24h", "--signal-name", SIGNAL_NAME,
            "--signal-input-file", str(FIXTURES / SIGNAL_FIXTURE),
        )  # fmt: skip
        handle = temporal_client.get_workflow_handle(workflow_id)
        state = await has_run(handle, timeout=180)

        async def send_failed() -> bool:
            events = (await handle.fetch_history()).events
            return any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED for e in events)

        await eventually(send_failed, bool, what="the event send to give up")
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING

        # `temporal workflow query`: a JSON string with the Go worker's field names.
        out = temporal_cli(
            temporal_server, "workflow", "query", "--workflow-id", workflow_id,
            "--type", QUERY_NAME, "--output", "json",
        )  # fmt: skip
        answer = json.loads(out)["queryResult"][0]
        assert isinstance(answer, str)
        # Go's field names first, then ours (which a Go reader ignores).
        fields = list(json.loads(answer))
        assert set(fields[: len(GO_RESPONSE_KEYS)]) == GO_RESPONSE_KEYS
        assert fields[len(GO_RESPONSE_KEYS) :] == ["entity", "scope", "dryRun", "plan", "lastRun"]
        response = WorkflowResponse.from_wire(answer)
        assert response.workflow_id == workflow_id
        assert response.workflow_name == WORKFLOW_TYPE
        assert set(response.virtual_machines or ()) == set(scene.on)
        assert response.event["id"] == "d65a8ad1-7d3c-4f72-ace4-e3f2883c4475"

        await handle.terminate("test over")
        assert worker.terminate() == 0  # SIGTERM: graceful
    finally:
        worker.stop()

    assert refs(state) == set(scene.on)
    assert powered_off(vcenter, scene.all_vms) == set(scene.on) | set(scene.off)
    assert set(read_annotations(vcenter, scene.all_vms)) == set(scene.on)
    vcenter.close()

    history = (await handle.fetch_history()).events
    assert activity_attempts(list(history), "SendPreemptedEvent") == [3]

    # JSON lines, the session logged out on the way down, the password nowhere.
    log = worker.log()
    assert SECRET not in log
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # all JSON
    names = [r.get("event") for r in records]
    assert "worker stopped" in names
    assert "vcenter.logout" in names
    # Logged in at start, before any run: the first alarm does not wait for it.
    assert names.index("vcenter session open") < names.index("worker stopped")


def test_bad_settings_name_every_bad_variable_and_exit_non_zero(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "VCENTER_URL": "https://vcenter.example.com/sdk",
        "PREEMPTION_MAX_VMS": "0",
        "PREEMPTION_COOLDOWN": "soon",
        "VCENTER_INSECURE": "maybe",
    }
    done = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "worker"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    message = done.stderr.strip()
    assert "Traceback" not in message and done.stdout == ""
    assert message.count("\n") == 0
    for var in ("TEMPORAL_URL", "PREEMPTION_MAX_VMS", "PREEMPTION_COOLDOWN", "VCENTER_INSECURE"):
        assert var in message


def test_missing_secret_files_are_named_without_a_traceback(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "TEMPORAL_URL": "127.0.0.1:7233",
        "VCENTER_URL": "https://vcenter.example.com/sdk",
        "VCENTER_SECRET_PATH": str(tmp_path / "nowhere"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "worker"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert str(tmp_path / "nowhere" / "username") in done.stderr


def test_an_unknown_namespace_stops_the_worker_at_once_with_one_line(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    secret = tmp_path / "vsphere"
    secret.mkdir()
    (secret / "username").write_text("u")
    (secret / "password").write_text("p")
    env = {
        "PATH": os.environ["PATH"],
        "TEMPORAL_URL": temporal_server.address,
        "TEMPORAL_NAMESPACE": "no-such-namespace",
        "VCENTER_URL": "https://vcenter.example.com/sdk",
        "VCENTER_SECRET_PATH": str(secret),
    }
    done = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "worker"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"preemptctl worker: namespace 'no-such-namespace' on Temporal at "
        f"{temporal_server.address}: Namespace no-such-namespace is not found."
    ]
