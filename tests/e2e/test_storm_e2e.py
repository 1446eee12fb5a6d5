"""A storm of raising events, as users scale out: two function replicas, two workers, one
Temporal, one vCenter.

1,000 raising events for one alarm on one cluster, sent in about a second, spread over two
`preemptctl function` processes; two `preemptctl worker` processes on the same task queue;
the real Temporal dev server and vcsim. Half are one CloudEvent redelivered (the same source
and id), half are distinct events for the same alarm and entity; 32 keep-alive connections
send them (in 1.5 to 2 s here, bound by the signals Temporal writes to the one workflow).
Each replica drops the redeliveries it has seen (function/recent.py, per process); across
replicas the workflow coalesces raising signals, so the storm must come to one preemption
run: every tagged VM powered off once, annotated once, one VmPreemptedEvent at the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tests.function.conftest import alarm_event, as_binary, on
from tests.function.process import FunctionProcess, http_request
from tests.temporal.helpers import eventually, unique, wait_for, workflow_task_failures
from tests.temporal.rig import (
    Observer,
    Rigs,
    powered_off,
    read_annotations,
)
from vsphere_preemption.devtools.devservers import TemporalDevServer
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.temporal.contracts import ANNOTATE_VMS, PLAN_PREEMPTION, POWER_OFF_VMS
from vsphere_preemption.wire import DEFAULT_NAMESPACE, PREEMPTED_EVENT_TYPE, SIGNAL_NAME

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]

EVENTS = 1000
CONCURRENCY = 32  # connections, half to each replica


def two_replicas(
    temporal: TemporalDevServer, queue: str, alarm: str, sink: EventSink, logs: Path
) -> list[FunctionProcess]:
    """Two `preemptctl function` processes for one alarm, signalling `queue`, replying to
    `sink` (not started)."""
    env = {
        "TEMPORAL_URL": temporal.address,
        "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "TEMPORAL_TASKQUEUE": queue,
        "VSPHERE_PREEMPTION_TAG": "preemptible",
        "VSPHERE_ALARM_NAME": alarm,
        "K_SINK": sink.url,
    }
    return [FunctionProcess(env, logs / f"function-{n}.log") for n in (1, 2)]


async def storm(ports: list[int], requests: list[tuple[dict[str, str], bytes]]) -> list[Any]:
    """Every request POSTed over CONCURRENCY keep-alive connections spread over the replicas;
    (status, JSON reply) of each, in order.

    Plain asyncio streams, not httpx: on this machine httpx's own cost (about 6 ms a request
    at this concurrency) held 1,000 requests to 6 s, where these connections send them in
    well under one when the function answers at once (a redelivery).
    """
    pending = list(range(len(requests)))[::-1]
    replies: list[Any] = [None] * len(requests)

    async def connection(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while pending:
                number = pending.pop()
                headers, body = requests[number]
                writer.write(http_request("POST", "/", list(headers.items()), body))
                status = int((await reader.readline()).split()[1])
                length = None
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                assert length is not None, "an answer without Content-Length"
                replies[number] = (status, json.loads(await reader.readexactly(length)))
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(connection(ports[n % len(ports)]) for n in range(CONCURRENCY)))
    return replies


async def test_1000_raising_events_over_two_replicas_and_two_workers_make_one_run(
    temporal_server: TemporalDevServer, temporal_client: Client, worker_rig: Rigs, tmp_path: Path
) -> None:
    sim, vcenter, scene, queue, env = worker_rig("storm", on=5, off=1)
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent", "VmGuestShutdownEvent")
    alarm = unique("storm-alarm")
    workflow_id = on(alarm)
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    with EventSink() as sink:
        replicas = two_replicas(temporal_server, queue, alarm, sink, tmp_path)
        try:
            for worker in workers:
                worker.start()
            for replica in replicas:
                replica.start()
            # Half one event redelivered, half distinct events: the alarm and cluster of all.
            redelivered = as_binary(alarm_event(alarm, "green", "red", event_id="storm-once"))
            requests = [
                redelivered if n % 2 == 0 else as_binary(alarm_event(alarm, "yellow", "red"))
                for n in range(EVENTS)
            ]
            started = time.monotonic()
            replies = await storm([replica.port for replica in replicas], requests)
            seconds = time.monotonic() - started
            print(f"\n{EVENTS} raising events over 2 replicas in {seconds:.2f} s")

            handle = temporal_client.get_workflow_handle(workflow_id)
            await wait_for(
                lambda: sink.wait_for(PREEMPTED_EVENT_TYPE, 0) is not None,
                timeout=120,
                what="the VmPreemptedEvent",
            )

            # Every signal the storm sent has been taken in (none left for a second run).
            async def runs() -> list[dict[str, Any]]:
                history: list[dict[str, Any]] = json.loads(await handle.query("history"))
                return history

            signalled = signals_sent(replies)
            await eventually(
                lambda: received(temporal_client, workflow_id),
                lambda n: n == signalled,
                timeout=60,
                what="every signal in the history",
            )
            final = await eventually(
                runs, lambda rs: all("outcome" in r for r in rs), timeout=60, what="runs ended"
            )
            history = (await handle.fetch_history()).events
            description = await handle.describe()
            await handle.terminate("test over")
        finally:
            for replica in replicas:
                replica.stop()
            for worker in workers:
                worker.stop()
            for replica in replicas:
                assert "Traceback" not in replica.log()

    # Every request answered 200: signalled, or a redelivery dropped by the replica that
    # had signalled it already.
    assert Counter(status for status, _ in replies) == {200: EVENTS}
    decisions = Counter(reply["decision"] for _, reply in replies)
    assert set(decisions) <= {"preempt", "duplicate"}
    once = [reply for n, (_, reply) in enumerate(replies) if n % 2 == 0]
    # The redelivered event: signalled at most once by each replica, the rest duplicates.
    assert 1 <= sum(reply["decision"] == "preempt" for reply in once) <= len(replicas)
    assert sum(reply["decision"] == "duplicate" for reply in once) >= len(once) - len(replicas)
    assert len({reply["workflowID"] for _, reply in replies}) == 1

    # One run acted. The raising signals that came after it are each answered by a run
    # record "skipped" (within the cooldown; it acts on nothing): no second plan, power-off
    # or event. (The query keeps only the last runs: the acted one may have scrolled out.)
    assert description.status == WorkflowExecutionStatus.RUNNING
    print(f"{final[-1]['run']} run records for {signalled} signals")
    assert [r["outcome"] for r in final if r["outcome"] != "skipped"] in ([], ["acted"]), final
    assert all(r["reason"] == "within the cooldown" for r in final if r["outcome"] == "skipped")
    if final[0]["run"] == 1:
        assert final[0]["outcome"] == "acted"
    assert activities(history, PLAN_PREEMPTION) == 1
    assert activities(history, POWER_OFF_VMS) == 1
    assert activities(history, ANNOTATE_VMS) == 1
    assert workflow_task_failures(history) == []
    # The policy was read once, by the run that acted: the runs skipped after it went on the
    # cooldown it gave (workflow.py, known-cooldown), not on a read each.
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in history
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert markers.count("core_local_activity") == 1, markers

    # Every tagged, running VM off once, annotated once; one event naming them all.
    assert powered_off(vcenter, scene.all_vms) == set(scene.on) | set(scene.off)
    events = observer.events("VmPoweredOffEvent", "VmGuestShutdownEvent")
    observer.close()
    assert events == {("VmPoweredOffEvent", vm.value): 1 for vm in scene.on}
    assert set(read_annotations(vcenter, scene.all_vms)) == set(scene.on)
    vcenter.close()
    preempted = [e for e in sink.events if e.type == PREEMPTED_EVENT_TYPE]
    assert len(preempted) == 1 and len(sink.received) == 1
    data = preempted[0].data
    assert isinstance(data, dict)
    assert {VmRef(v["Value"], v["Type"]) for v in data["virtualMachines"]} == set(scene.on)


def signals_sent(replies: list[Any]) -> int:
    """How many signals the replicas sent for these answers: a raise that rode a signal with
    others (function/signal_lines.py) names that signal's event; one signal per carrier."""
    return sum(
        1
        for _, reply in replies
        if reply["decision"] == "preempt"
        and reply.get("signalEventID", reply["eventID"]) == reply["eventID"]
    )


async def received(client: Client, workflow_id: str) -> int:
    """How many PreemptVMsChan signals the workflow's history holds."""
    events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
    wanted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return sum(
        1
        for e in events
        if e.event_type == wanted
        and e.workflow_execution_signaled_event_attributes.signal_name == SIGNAL_NAME
    )


def activities(history: Any, name: str) -> int:
    """How many times activity `name` was scheduled."""
    wanted = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    return sum(
        1
        for e in history
        if e.event_type == wanted
        and e.activity_task_scheduled_event_attributes.activity_type.name == name
    )


STORM_EVENTS = 10_000
MAX_RUN_EVENTS = 2_500


def pin_to_first_cpu(pid: int) -> None:
    """Every thread of `pid` on CPU 0 only (as `taskset -a -p -c 0 PID`): threads made later
    inherit it from the thread that makes them."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {0})


@contextlib.contextmanager
def busy_loop_on_first_cpu() -> Iterator[None]:
    """A process that spins on CPU 0 for as long as the block runs: the pinned workers share
    their one CPU with it, as on a node whose other tenant is busy."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        pin_to_first_cpu(spinner.pid)
        yield
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("pinned", [False, True], ids=["free", "workers-on-one-busy-cpu"])
async def test_10000_distinct_raising_events_keep_every_run_short_and_a_lowering_still_ends_it(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    worker_rig: Rigs,
    tmp_path: Path,
    pinned: bool,
) -> None:
    """Issue 16's storm: 10,000 distinct raises for one alarm and cluster, 32 connections, two
    replicas, two workers. Each replica signals one at a time per alarm and entity, the raises
    meanwhile merged into its next signal; the workflow continues as new while they come.
    `pinned`: both workers on CPU 0 (taskset), which a busy loop shares with them."""
    sim, vcenter, scene, queue, env = worker_rig("storm", on=5, off=1)
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent", "VmGuestShutdownEvent")
    alarm = unique("storm-alarm")
    workflow_id = on(alarm)
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    handle = temporal_client.get_workflow_handle(workflow_id)
    query_seconds: list[float] = []
    storming = True

    async def ask() -> None:
        started = time.monotonic()
        await handle.query("current_state", rpc_timeout=timedelta(seconds=10))  # or raises
        query_seconds.append(time.monotonic() - started)

    unanswered: list[str] = []

    async def keep_asking() -> None:
        while storming:
            try:
                await ask()
            except RPCError as exc:  # not started yet; anything else is a query unanswered
                if exc.status != RPCStatusCode.NOT_FOUND:
                    unanswered.append(f"{exc.status.name}: {exc}")
            await asyncio.sleep(0.25)

    spinning = busy_loop_on_first_cpu() if pinned else contextlib.nullcontext()
    with EventSink() as sink, spinning:
        replicas = two_replicas(temporal_server, queue, alarm, sink, tmp_path)
        try:
            for worker in workers:
                worker.start()
                if pinned:
                    assert worker.proc is not None
                    pin_to_first_cpu(worker.proc.pid)
            for replica in replicas:
                replica.start()
            if pinned:  # and the threads the workers made meanwhile
                for worker in workers:
                    assert worker.proc is not None
                    pin_to_first_cpu(worker.proc.pid)
            requests = [as_binary(alarm_event(alarm, "yellow", "red")) for _ in range(STORM_EVENTS)]
            asking = asyncio.create_task(keep_asking())
            started = time.monotonic()
            replies = await storm([replica.port for replica in replicas], requests)
            seconds = time.monotonic() - started
            await wait_for(
                lambda: sink.wait_for(PREEMPTED_EVENT_TYPE, 0) is not None,
                timeout=60,
                what="the VmPreemptedEvent",
            )
            storming = False
            await asking
            for _ in range(4):  # and after
                await ask()
                await asyncio.sleep(0.25)
            # The alarm lowers: the workflow completes.
            lowering = as_binary(alarm_event(alarm, "red", "green"))
            ((status, reply),) = await storm([replicas[0].port], [lowering])
            assert (status, reply["decision"]) == (200, "cancel"), reply
            await asyncio.wait_for(handle.result(), timeout=60)
            runs = [
                execution.run_id
                async for execution in temporal_client.list_workflows(
                    f"WorkflowId = '{workflow_id}'"
                )
            ]
            histories = [
                (await temporal_client.get_workflow_handle(workflow_id, run_id=r).fetch_history())
                for r in runs
            ]
        finally:
            storming = False
            for replica in replicas:
                replica.stop()
            for worker in workers:
                worker.stop()
    print(
        f"\n{STORM_EVENTS} raising events over 2 replicas in {seconds:.1f} s: "
        f"{signals_sent(replies)} signals, {len(runs)} runs of "
        f"{sorted(len(h.events) for h in histories)} events, "
        f"queries up to {max(query_seconds):.3f} s"
    )

    # Every event answered 2xx once its signal was accepted; merged ones say so.
    assert Counter(status for status, _ in replies) == {200: STORM_EVENTS}
    assert {reply["decision"] for _, reply in replies} == {"preempt"}
    assert signals_sent(replies) < STORM_EVENTS / 4
    for replica in replicas:
        assert "Traceback" not in replica.log()
        assert '"signalCarried"' in replica.log()
    # No run's history too long to replay quickly; the workflow answered throughout.
    assert max(len(h.events) for h in histories) <= MAX_RUN_EVENTS
    # Every query during and after the storm was answered (a wedged workflow's queries time
    # out: "query timed out before a worker could process it"). How fast is a benchmark's
    # question, not this test's: the printed figure went to BENCHMARKS.md.
    assert unanswered == [] and len(query_seconds) >= 10, (unanswered, query_seconds)
    events = [e for h in histories for e in h.events]
    # No failure of our code. The one failure a storm may bring is the server's: a
    # continue-as-new turned back because a signal arrived while its task ran (cause
    # UNHANDLED_COMMAND, temporalio/temporal#1289); the next task takes the signal and
    # continues as new. With the workers on one busy CPU their tasks are slow enough for that
    # to happen now and then: what proves it harmless is that each run but the last did end
    # continued as new, within MAX_RUN_EVENTS (above), and the last completed.
    refused = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
    failures = workflow_task_failures(events)
    assert [e for e in failures if e.workflow_task_failed_event_attributes.cause != refused] == []
    ends = [h.events[-1].event_type for h in histories]
    continued = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert sorted(ends) == sorted(
        [continued] * (len(histories) - 1) + [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]
    ), ends
    print(f"continue-as-new turned back by an arriving signal: {len(failures)} times")
    for worker in workers:
        text = worker.log()
        assert "TMPRL1101" not in text and "Traceback" not in text, text[-3000:]
    # One run acted, across every run of the workflow.
    assert activities(events, PLAN_PREEMPTION) == 1
    assert activities(events, POWER_OFF_VMS) == 1
    assert powered_off(vcenter, scene.all_vms) == set(scene.on) | set(scene.off)
    assert observer.events("VmPoweredOffEvent", "VmGuestShutdownEvent") == {
        ("VmPoweredOffEvent", vm.value): 1 for vm in scene.on
    }
    observer.close()
    vcenter.close()
    assert len([e for e in sink.events if e.type == PREEMPTED_EVENT_TYPE]) == 1
