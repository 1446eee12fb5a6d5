"""Preempt until relieved, end to end: Temporal, the worker, vcsim, an event sink.

On the allocation basis the entity's use falls as soon as a VM stops (vcsim keeps the quick stats
it was given, so the usage basis never moves there): a target out of one round's reach is met in
round 2; on the usage basis the loop runs out of rounds and says so; a lowering during the settle
ends it. Settles of a second or so keep each test short.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from tests.e2e.world import (
    POWERED_OFF,
    POWERED_ON,
    TAG,
    World,
    alarm_on,
    history_when,
    start,
    until,
)
from tests.temporal.helpers import eventually, query_state
from tests.temporal.rig import running_worker
from vsphere_preemption.domain.model import MoRef, VmRef
from vsphere_preemption.domain.policy import UseBasis
from vsphere_preemption.temporal.client import PreemptionClient
from vsphere_preemption.wire import (
    HELD_EVENT_TYPE,
    PREEMPTED_EVENT_TYPE,
    RELEASED_EVENT_TYPE,
    pauses_workflow_id,
)

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]

# The care tests' fixtures: a worker's world on the usage inventory, and the handles to end.


NO_NOTICE = {"LOW": 0, "MEDIUM": 0, "HIGH": 0}


def loop_policy(targets: dict[str, Any], settle: str = "1s", rounds: int = 3) -> dict[str, Any]:
    return {
        "maxVMs": 1,  # one VM a round: each round's effect is seen
        "notice": NO_NOTICE,
        "targets": targets,
        "loop": {"settle": settle, "maxRounds": rounds},
    }


def memory_target_needing(world: World, cluster: MoRef, vms: list[VmRef], off: float) -> float:
    """A memory target (percent, allocation basis) that `off` of `vms` stopped just reach."""
    use = world.client.entity_usage(cluster, basis=UseBasis.ALLOCATION)
    assert use is not None and use.used.memory_mb and use.capacity.memory_mb
    facts = world.client.gather(TAG, cluster, basis=UseBasis.ALLOCATION).facts
    sizes = {f.memory_mb for f in (v.allocation for v in facts if v.ref in vms)}
    assert len(sizes) == 1 and None not in sizes, sizes  # vcsim's VMs are all alike
    (size,) = sizes
    assert size is not None
    return round((use.used.memory_mb - off * size) / use.capacity.memory_mb * 100, 4)


async def test_on_the_allocation_basis_the_target_is_met_in_round_two(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    vms = [world.vm(f"DC0_C0_RP1_VM{i}") for i in range(3)]
    world.tags.tag(TAG, vms)
    # Two VMs off (and a half: no rounding lets one do) bring the cluster under the target.
    target = memory_target_needing(world, cluster, vms, 1.5)
    env = world.with_policy(loop_policy({"memory": target, "basis": "allocation"}))
    async with running_worker(env):
        handle = await start(
            world, handles, f"mem/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
        )
        runs = await history_when(handle, lambda r: bool(r) and "loop" in r[-1], "the loop's end")
        events = await until(
            lambda: world.events(PREEMPTED_EVENT_TYPE), lambda e: len(e) == 2, "two events"
        )
        # The state answers the whole run: both VMs, and how the loop ended.
        state = json.loads(await handle.query("current_state", result_type=str))
    run = runs[-1]
    assert run["outcome"] == "acted"
    assert run["loop"] == {"rounds": 2, "maxRounds": 3, "stopped": "target met"}
    assert [r["round"] for r in run["rounds"]] == [1, 2]
    assert [len(r["stopped"]) for r in run["rounds"]] == [1, 1]
    assert run["rounds"][0]["achieved"]["reached"] is False
    assert run["rounds"][1]["achieved"]["reached"] is True
    assert len(run["stopped"]) == 2
    power = world.power(vms)
    assert sorted(power.values()) == [POWERED_OFF, POWERED_OFF, POWERED_ON]
    first, second = (e.data for e in events)
    assert (first["round"], second["round"]) == (1, 2)
    assert "loopStopped" not in first and second["loopStopped"] == "target met"
    assert first["achieved"]["reached"] is False and second["achieved"]["reached"] is True
    assert events[1].id == f"{events[0].id}-round-2"
    assert state["lastRun"]["loop"]["stopped"] == "target met"
    assert {v["Value"] for v in state["virtualMachines"]} == set(run["stopped"])


async def test_on_the_usage_basis_vcsim_never_relieves_and_the_loop_says_so(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C1")
    vms = [world.vm(f"DC0_C1_RP1_VM{i}") for i in range(3)]
    world.tags.tag(TAG, vms)
    # vcsim's hosts report the same quick stats whatever runs: 1% is never reached.
    env = world.with_policy(loop_policy({"memory": 1}, rounds=2))
    async with running_worker(env):
        handle = await start(world, handles, f"mem/{cluster.value}", alarm_on(cluster))
        runs = await history_when(handle, lambda r: bool(r) and "loop" in r[-1], "the loop's end")
    run = runs[-1]
    assert run["loop"] == {
        "rounds": 2,
        "maxRounds": 2,
        "stopped": "maxRounds",
        "detail": "the target is still not met",
    }
    assert [r["achieved"]["reached"] for r in run["rounds"]] == [False, False]
    assert sorted(world.power(vms).values()) == [POWERED_OFF, POWERED_OFF, POWERED_ON]


async def test_a_lowering_during_the_settle_ends_the_loop(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    vms = [world.vm(f"DC0_C0_APP0_VM{i}") for i in range(3)]
    world.tags.tag(TAG, vms)
    # A settle long enough that only the lowering can end it within the test.
    env = world.with_policy(loop_policy({"memory": 1}, settle="10m"))
    async with running_worker(env):
        handle = await start(
            world, handles, f"mem/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
        )
        await until(lambda: world.events(PREEMPTED_EVENT_TYPE), bool, "round 1's event")
        await handle.cancel()  # the alarm lowered
        result = await handle.result()
    run = result["history"][-1]
    assert run["loop"]["stopped"] == "alarm lowered"
    assert run["loop"]["rounds"] == 1
    assert run["loop"]["detail"] == "during the settle after round 1"
    assert sorted(world.power(vms).values()) == [POWERED_OFF, POWERED_ON, POWERED_ON]
    assert len(world.events(PREEMPTED_EVENT_TYPE)) == 1


async def test_a_pause_during_the_settle_holds_round_two_until_unpaused(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C1")
    vms = [world.vm(f"DC0_C1_RP1_VM{i}") for i in range(3)]
    world.tags.tag(TAG, vms)
    target = memory_target_needing(world, cluster, vms, 1.5)
    # The pause is taken after round 1's event, well within the settle (taking it costs a
    # signal-with-start: under a second even on a busy machine).
    env = world.with_policy(loop_policy({"memory": target, "basis": "allocation"}, "10s"))
    operator = PreemptionClient(world.temporal, task_queue=world.queue)
    registry = world.temporal.get_workflow_handle(pauses_workflow_id(world.queue))
    async with running_worker(env):
        handle = await start(
            world, handles, f"mem/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
        )
        await until(lambda: world.events(PREEMPTED_EVENT_TYPE), bool, "round 1's event")
        await operator.pause({"reason": "vSphere upgrade", "by": "ops"})
        handles.append(registry)
        state = await eventually(
            lambda: query_state(handle), lambda s: "paused" in s, what="round 2 held", timeout=90
        )
        assert state["paused"]["source"] == "pause"
        assert sorted(world.power(vms).values()) == [POWERED_OFF, POWERED_ON, POWERED_ON]
        await operator.unpause({"by": "ops"})
        runs = await history_when(handle, lambda r: bool(r) and "loop" in r[-1], "the loop's end")
    run = runs[-1]
    assert run["loop"] == {"rounds": 2, "maxRounds": 3, "stopped": "target met"}
    (hold,) = run["holds"]
    assert hold["released"] == "pause ended"
    assert sorted(world.power(vms).values()) == [POWERED_OFF, POWERED_OFF, POWERED_ON]
    assert [e.type for e in world.sink.events if e.type != PREEMPTED_EVENT_TYPE] == [
        HELD_EVENT_TYPE,
        RELEASED_EVENT_TYPE,
    ]
