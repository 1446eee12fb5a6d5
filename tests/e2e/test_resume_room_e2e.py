"""Resume without flapping, end to end: Temporal, the worker, vcsim, an event sink.

A run on the allocation basis stops three VMs of a cluster to reach a memory target. When the
alarm lowers, the resume brings back only the VMs that keep the cluster at or below the target
less the headroom: the test frees room by powering other VMs off by hand (the load going away),
and the waiting VMs come back as it appears; with no room, they stay off after maxWait, and the
record and a VmResumedEvent say which and why.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from tests.e2e.test_worker_loop_e2e import NO_NOTICE
from tests.e2e.world import (
    POWERED_OFF,
    POWERED_ON,
    TAG,
    World,
    alarm_on,
    history_when,
    outcomes,
    start,
    until,
)
from tests.temporal.helpers import eventually, signal_with_start
from tests.temporal.rig import running_worker
from vsphere_preemption.domain.model import MoRef, VmRef
from vsphere_preemption.domain.policy import UseBasis
from vsphere_preemption.temporal.contracts import READ_ENTITY_USE
from vsphere_preemption.wire import RESUMED_EVENT_TYPE

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]


FILLER = "filler"  # a tag on the VMs the test powers off by hand, to read their sizes


def percent_of(world: World, cluster: MoRef, vms: list[VmRef], tag: str) -> tuple[float, float]:
    """The cluster's memory use now (allocation basis, percent of capacity) and one VM's
    share of it, for `vms` (carrying `tag`), which must all be alike."""
    use = world.client.entity_usage(cluster, basis=UseBasis.ALLOCATION)
    assert use is not None and use.used.memory_mb and use.capacity.memory_mb
    facts = world.client.gather(tag, cluster, basis=UseBasis.ALLOCATION).facts
    sizes = {v.allocation.memory_mb for v in facts if v.ref in vms}
    assert len(sizes) == 1 and None not in sizes, sizes  # vcsim's VMs are all alike
    (size,) = sizes
    assert size is not None
    capacity = use.capacity.memory_mb
    return use.used.memory_mb / capacity * 100, size / capacity * 100


def room_policy(target: float, headroom: float, max_wait: str) -> dict[str, Any]:
    return {
        "notice": NO_NOTICE,
        "targets": {"memory": round(target, 4), "basis": "allocation"},
        "resume": {
            "enabled": True,
            "batchSize": 5,
            "interval": "1s",
            "headroom": round(headroom, 4),
            "maxWait": max_wait,
        },
    }


async def resume_checked(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the workflow read the entity's use after it was asked to cancel: its resume
    is measuring room."""
    history = await handle.fetch_history()
    cancelled = False
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            cancelled = True
        scheduled = event.activity_task_scheduled_event_attributes
        if cancelled and scheduled.activity_type.name == READ_ENTITY_USE:
            return True
    return False


def three_victims(world: World, cluster: str) -> tuple[MoRef, list[VmRef], list[VmRef]]:
    entity = world.cluster(cluster)
    victims = [world.vm(f"{cluster}_RP1_VM{i}") for i in range(3)]
    fillers = [world.vm(f"{cluster}_APP0_VM{i}") for i in range(3)]
    world.tags.tag(TAG, victims)
    world.tags.tag(FILLER, fillers)
    return entity, victims, fillers


def target_for_all_three(world: World, cluster: MoRef, victims: list[VmRef]) -> tuple[float, float]:
    """A target that only all three victims stopped reach (two leave it 0.9 VM short), and
    one VM's share, in percent."""
    now, share = percent_of(world, cluster, victims, TAG)
    return now - 2.9 * share, share


async def test_a_resume_brings_back_only_what_fits_then_the_rest_as_room_appears(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster, victims, fillers = three_victims(world, "DC0_C0")
    target, share = target_for_all_three(world, cluster, victims)
    assert percent_of(world, cluster, fillers, FILLER)[1] == share
    # After the run the cluster stands 0.1 VM under the target; a headroom of 0.05 VM means
    # one VM fits back for each VM of load that goes away.
    env = world.with_policy(room_policy(target, 0.05 * share, "5m"))
    async with running_worker(env):
        handle = await start(
            world, handles, f"mem/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
        )
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        assert set(world.power(victims).values()) == {POWERED_OFF}
        await asyncio.to_thread(world.tags.power_off, fillers[:1])  # one VM of load goes
        await handle.cancel()  # the alarm lowers
        first = victims[0]
        await until(lambda: world.power(victims)[first], lambda p: p == POWERED_ON, "room for 1")
        # Room for one VM only: the others wait, checked again every second.
        await until(
            lambda: world.events(RESUMED_EVENT_TYPE), lambda e: len(e) == 1, "batch 1's event"
        )
        assert [world.power(victims)[vm] for vm in victims[1:]] == [POWERED_OFF] * 2
        await asyncio.to_thread(world.tags.power_off, fillers[1:])  # two more go
        result = await handle.result()
    assert set(world.power(victims).values()) == {POWERED_ON}
    record = result["history"][-1]
    assert (record["kind"], record["outcome"]) == ("resume", "resumed")
    assert record["resumed"] == [vm.value for vm in victims]
    assert record["room"]["basis"] == "allocation" and record["room"]["checks"] >= 2
    assert record["room"]["targets"] == {"memory": round(target, 4)}
    assert "stayOff" not in record
    batches = [
        (e.data["batch"], [v["Value"] for v in e.data["virtualMachines"]])
        for e in world.events(RESUMED_EVENT_TYPE)
    ]
    assert batches == [(1, [victims[0].value]), (2, [victims[1].value, victims[2].value])]


async def test_with_no_room_within_max_wait_the_vms_stay_off_and_it_says_why(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster, victims, _ = three_victims(world, "DC0_C1")
    target, share = target_for_all_three(world, cluster, victims)
    env = world.with_policy(room_policy(target, 0.05 * share, "3s"))
    async with running_worker(env):
        handle = await start(
            world, handles, f"mem/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
        )
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        await handle.cancel()
        result = await handle.result()
    assert set(world.power(victims).values()) == {POWERED_OFF}
    record = result["history"][-1]
    assert (record["kind"], record["outcome"]) == ("resume", "resumed in part")
    assert record["resumed"] == [] and record["room"]["checks"] >= 3
    assert record["reason"] == "3 VM(s) stay off: no room for them within maxWait 3s"
    stay_off = {s["vm"]: s["reason"] for s in record["stayOff"]}
    assert list(stay_off) == [vm.value for vm in victims]
    assert stay_off[victims[0].value].startswith("would bring memory to ")
    assert "less the headroom of" in stay_off[victims[0].value]
    assert stay_off[victims[2].value] == "waits behind a VM of higher priority"
    (event,) = world.events(RESUMED_EVENT_TYPE)
    assert event.data["virtualMachines"] == [] and event.data["reason"] == record["reason"]
    assert [s["vm"]["Value"] for s in event.data["stayOff"]] == list(stay_off)


async def test_a_raise_while_vms_wait_for_room_stops_the_resume_and_the_room_outlives_it(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster, victims, fillers = three_victims(world, "DC0_C0")
    target, share = target_for_all_three(world, cluster, victims)
    env = world.with_policy(room_policy(target, 0.05 * share, "10m"))
    workflow_id = f"mem/{cluster.value}"
    async with running_worker(env):
        handle = await start(world, handles, workflow_id, alarm_on(cluster, replyTo=world.sink.url))
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        first_run = (await handle.describe()).run_id
        await handle.cancel()  # the alarm lowers; no room: every VM waits
        # Raised only once the resume reads the use: a raise that reaches the workflow in the
        # same workflow task as the lowering is taken first by the SDK (it applies signals
        # before a cancellation), which is the race README's guarantees name, not this test's.
        await eventually(
            lambda: resume_checked(handle), bool, what="the resume's first check", timeout=90
        )
        # The alarm raises again while they wait, as the Go function signals it.
        again = alarm_on(cluster, replyTo=world.sink.url)
        again["event"]["id"] = "raised-again"
        await signal_with_start(world.temporal, workflow_id, world.queue, again)
        runs = await history_when(
            handle,
            lambda r: outcomes(r)[:2] == ["acted", "interrupted"] and len(r) == 3,
            "the raise",
        )
        assert (await handle.describe()).run_id != first_run  # continued as new
        assert runs[1]["resumed"] == [] and runs[1]["room"]["checks"] >= 1
        assert runs[2]["eventID"] == "raised-again"
        assert set(world.power(victims).values()) == {POWERED_OFF}
        # The load goes away and the alarm lowers again: the new run still measures room
        # (carried across continue-as-new) and now finds it for all three.
        await asyncio.to_thread(world.tags.power_off, fillers)
        await handle.cancel()
        result = await handle.result()
    assert set(world.power(victims).values()) == {POWERED_ON}
    record = result["history"][-1]
    assert (record["kind"], record["outcome"]) == ("resume", "resumed")
    assert record["room"]["targets"] == {"memory": round(target, 4)}
    assert record["resumed"] == [vm.value for vm in victims]
