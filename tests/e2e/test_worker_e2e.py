"""The worker end to end: real Temporal dev server, real vcsim, real HTTP sink.

The worker runs in this process, built from its settings exactly as `preemptctl
worker` builds it (secret files, TLS setting, policy); the workflow is started the
way the Go function starts it (signal-with-start by type name, the wire JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from tests.conftest import FIXTURES, fixture_json
from tests.temporal.helpers import (
    ANNOTATION_FIXTURE,
    eventually,
    has_run,
    query_state,
    refs,
    signal_payload,
    signal_with_start,
    unique,
    wait_for,
)
from tests.temporal.rig import (
    SECRET,
    Observer,
    Rigs,
    client_for,
    powered_off,
    read_annotations,
    running_worker,
)
from vsphere_preemption.cli.workflow_input import build_request
from vsphere_preemption.devtools.devservers import TemporalDevServer
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.rawjson import RawJSON
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    SIGNAL_NAME,
    Annotation,
    WorkflowResponse,
    append_fields,
    go_json,
)


async def history_json(handle: WorkflowHandle[Any, Any]) -> str:
    return (await handle.fetch_history()).to_json()


async def test_preempts_exactly_the_powered_on_tagged_vms_annotates_and_reports(
    temporal_server: TemporalDevServer, temporal_client: Client, worker_rig: Rigs
) -> None:
    sim, vcenter, scene, task_queue, env = worker_rig("e2e", on=4, off=2)
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent", "VmGuestShutdownEvent")
    # The sink refuses the first delivery (503): the activity fails and is retried.
    with EventSink(statuses=[503]) as sink:
        async with running_worker(env):
            payload = signal_payload(replyTo=sink.url)  # the Go function's JSON, our sink
            handle = await signal_with_start(temporal_client, unique("alarm"), task_queue, payload)
            state = await has_run(handle)
            await wait_for(lambda: len(sink.received) == 2, what="the VmPreemptedEvent, twice")
            history = await history_json(handle)
            await handle.terminate("test over")

    # Exactly the powered-on tagged VMs went off, hard (HIGH), once each.
    assert refs(state) == set(scene.on)
    assert powered_off(vcenter, scene.all_vms) == set(scene.on) | set(scene.off)
    events = observer.events("VmPoweredOffEvent", "VmGuestShutdownEvent")
    observer.close()
    assert {vm for (_, vm) in events} == {r.value for r in scene.on}
    assert set(events.values()) == {1}
    assert {kind for (kind, _) in events} == {"VmPoweredOffEvent"}

    # Annotations: only on those VMs, in the reference shape.
    notes = read_annotations(vcenter, scene.all_vms)
    assert set(notes) == set(scene.on)
    # The reference fields, then ours: how the VM was stopped.
    reference_keys = [*fixture_json(ANNOTATION_FIXTURE), "action"]
    started = (await handle.describe()).start_time
    for text in notes.values():
        # The reference fields in the Go struct's order, and the event as the function sent it.
        assert list(json.loads(text)) == reference_keys
        assert list(json.loads(text)["event"]) == list(payload["event"])
        note = Annotation.from_wire(text)
        assert (note.preempted, note.forced_shutdown, note.tag) == (True, True, "preemptible")
        assert (note.workflow_id, note.workflow_started) == (handle.id, started)
        assert note.event == payload["event"]

    # The event: CloudEvents binary mode, the Go worker's type, id and source.
    refused, event = sink.events
    assert refused.id == event.id  # the same event again: a sink can dedupe
    assert event.type == PREEMPTED_EVENT_TYPE
    assert event.id == f"{handle.id}-{payload['event']['id']}"
    assert event.source == f"{temporal_server.address}/vsphere-preemption"
    assert event.datacontenttype == "application/json"
    data = event.data
    assert isinstance(data, dict)
    assert {VmRef(v["Value"], v["Type"]) for v in data.pop("virtualMachines")} == set(scene.on)
    # Our fields follow Go's: the run's scope and its plan.
    assert [data.pop(k) for k in ("entity", "scope")] == [None, "vcenter"]
    assert {VmRef(v["ref"]["Value"]) for v in data.pop("plan")["victims"]} == set(scene.on)
    assert data.pop("dryRun") is False
    assert data["action"] == "poweroff"
    assert data == json.loads(next(iter(notes.values())))
    assert "ce-id" in {k.lower() for k in sink.received[1].headers}  # binary content mode

    # The query answer parses as the Go worker's WorkflowResponse.
    response = WorkflowResponse.from_wire(json.dumps(state))
    assert (response.workflow_id, response.run_id) == (handle.id, handle.result_run_id)
    assert SECRET not in history


async def test_soft_shutdown_cooldown_query_and_cancel(
    temporal_client: Client, worker_rig: Rigs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    sim, vcenter, scene, task_queue, env = worker_rig("e2e-soft", on=3, off=1)
    inventory = Inventory(vcenter)
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent", "VmGuestShutdownEvent")
    async with running_worker(env):
        handle = await signal_with_start(
            temporal_client, unique("alarm"), task_queue,
            signal_payload(criticality="LOW", replyTo=""),
        )  # fmt: skip
        first = await has_run(handle)
        assert refs(first) == set(scene.on)
        assert first["criticality"] == "LOW"

        # Soft: a guest shutdown per VM, no hard power-off; annotated as not forced.
        events = observer.events("VmPoweredOffEvent", "VmGuestShutdownEvent")
        shutdowns = {vm for (kind, vm) in events if kind == "VmGuestShutdownEvent"}
        assert shutdowns == {r.value for r in scene.on}
        for text in read_annotations(vcenter, scene.on).values():
            assert Annotation.from_wire(text).forced_shutdown is False

        # Within the cooldown (1 min by default): a new signal is skipped, even for
        # newly tagged running VMs, and the query still answers the first run.
        more = scene.untagged[:2]
        inventory.tag("preemptible", more)
        await handle.signal(SIGNAL_NAME, signal_payload(criticality="HIGH", replyTo=""))
        await wait_for(
            lambda: any("skipping run" in r.getMessage() for r in caplog.records),
            what="the skip",
        )
        state = await query_state(handle)
        assert state.pop("lastRun")["outcome"] == "skipped"  # the newest run says so...
        assert state == {k: v for k, v in first.items() if k != "lastRun"}  # ...the rest stays
        assert powered_off(vcenter, more) == set()

        # Cancel: the workflow completes (not failed, not cancelled) with its state.
        await handle.cancel()
        result = await handle.result()
    observer.close()
    # Its last state, and the runs it remembers: the soft run, then the one in the cooldown.
    assert {k: v for k, v in result.items() if k not in ("history", "lastRun")} == {
        k: v for k, v in first.items() if k != "lastRun"
    }
    assert result["lastRun"]["outcome"] == "skipped"
    assert [r["outcome"] for r in result["history"]] == ["acted", "skipped"]
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_a_power_off_that_fails_mid_way_is_retried_and_completes(
    temporal_client: Client, worker_rig: Rigs
) -> None:
    # Each PowerOffVM_Task takes 1.5 s in vcsim and the worker makes one call at a
    # time, so the activity is still running when vcsim goes away under it. vcsim
    # restarted with the same flags builds the same inventory (same morefs, all VMs
    # on, no tags): the retry must power off the selection recorded in history,
    # since nothing could find it again.
    sim, vcenter, scene, task_queue, env = worker_rig(
        "e2e-retry", on=4, off=1, vcsim=("-method-delay", "PowerOffVM_Task:1500"),
        PREEMPTION_MAX_CONCURRENCY="1",
    )  # fmt: skip
    try:
        async with running_worker(env):
            handle = await signal_with_start(
                temporal_client, unique("alarm"), task_queue, signal_payload(replyTo="")
            )

            async def any_off() -> set[VmRef]:
                return powered_off(vcenter, scene.on)

            first_off = await eventually(any_off, bool, what="the first VM off")
            assert len(first_off) < len(scene.on)  # mid-way
            vcenter.close()
            sim.stop()

            async def attempt() -> int:
                pending = (await handle.describe()).raw_description.pending_activities
                return pending[0].attempt if pending else 0

            await eventually(attempt, lambda n: n >= 2, what="a retry")
            sim.start()  # same port, same inventory
            vcenter = client_for(sim)
            state = await has_run(handle)
            history = await handle.fetch_history()
            await handle.terminate("test over")
    finally:
        vcenter.close()

    assert refs(state) == set(scene.on)
    # In the fresh inventory every VM was on: only the recorded selection is off now.
    with client_for(sim) as fresh:
        assert powered_off(fresh, scene.all_vms) == set(scene.on)
        assert set(read_annotations(fresh, scene.all_vms)) == set(scene.on)
    # The server retried the one scheduled power-off; its final attempt succeeded.
    power_offs = [
        e for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and any(
            s.event_id == e.activity_task_started_event_attributes.scheduled_event_id
            and s.activity_task_scheduled_event_attributes.activity_type.name == "PowerOffVMs"
            for s in history.events
        )
    ]  # fmt: skip
    assert len(power_offs) == 1
    assert power_offs[0].activity_task_started_event_attributes.attempt >= 2
    assert SECRET not in history.to_json()


async def test_the_annotation_on_the_vm_holds_the_event_data_as_sent(
    temporal_client: Client, worker_rig: Rigs
) -> None:
    # Our CLI's signal for the event file the Go CLI was given (tests/fixtures/go/): the
    # annotation our worker writes on vcsim must be the Go worker's, byte for byte.
    go = FIXTURES / "go"
    go_annotation = (go / "worker-annotation.json").read_text()
    request = build_request(
        tag="preemptible", criticality="HIGH", reply_to="",
        event=(go / "cli-input-event.json").read_text(), now=datetime.now(UTC),
    )  # fmt: skip
    _, vcenter, scene, task_queue, env = worker_rig("e2e-bytes", on=1, off=0, not_vms=0)
    async with running_worker(env):
        payload = RawJSON(go_json(request.to_wire()).decode())
        handle = await signal_with_start(temporal_client, unique("alarm"), task_queue, payload)
        await has_run(handle)
        notes = await eventually(
            lambda: asyncio.to_thread(read_annotations, vcenter, scene.on),
            lambda n: bool(n), what="the annotation",
        )  # fmt: skip
        await handle.terminate("test over")

    (text,) = notes.values()
    ours = json.loads(text)
    go_values = json.loads(go_annotation)
    expected = go_annotation
    for name in ("workflowID", "workflowStarted"):
        expected = expected.replace(f'"{name}":"{go_values[name]}"', f'"{name}":"{ours[name]}"')
    # The Go worker's bytes, then our one field: how the VM was stopped.
    assert text == append_fields(expected, {"action": "poweroff"})
    assert '"name":"caf\\u00e9","price":1.50,"big":1e3' in text
