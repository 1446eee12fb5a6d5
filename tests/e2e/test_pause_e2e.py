"""The pause switch and quiet windows, end to end: Temporal, the worker, vcsim, an event sink.

A pause is taken the way `preemptctl pause` takes it (PreemptionClient.pause, the registry
workflow signalled-with-start); the alarm comes as the Go function's signal. What is checked:
vCenter's power states, the workflow's state (`paused`), its run record (`holds`), and the
CloudEvents at the sink. Durations are seconds. One test restarts the worker (a process of its
own, killed) and Temporal (a dev server of its own, on a SQLite file and a fixed port) while a
pause holds a run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from tests.e2e.world import (
    TAG,
    World,
    alarm_on,
    history_when,
    outcomes,
    run_history,
    start,
    until,
    world_on,
)
from tests.temporal.helpers import eventually, query_state
from tests.temporal.rig import running_worker
from tests.vsphere.usage_inventory import UsageInventory
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim, free_port
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.temporal.client import PreemptionClient
from vsphere_preemption.wire import (
    DEFAULT_NAMESPACE,
    HELD_EVENT_TYPE,
    PAUSED_EVENT_TYPE,
    PREEMPTED_EVENT_TYPE,
    RELEASED_EVENT_TYPE,
    UNPAUSED_EVENT_TYPE,
    pauses_workflow_id,
)

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]
ON, OFF = "poweredOn", "poweredOff"


@pytest.fixture
def worker_settings() -> dict[str, str]:
    return {"PREEMPTION_NOTICE_HIGH": "0"}


@pytest.fixture
async def handles(
    temporal_client: Client, world: World
) -> AsyncIterator[list[WorkflowHandle[Any, Any]]]:
    started: list[WorkflowHandle[Any, Any]] = []
    yield started
    registry = temporal_client.get_workflow_handle(pauses_workflow_id(world.queue))
    for handle in [*started, registry]:
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")
        except Exception:  # noqa: BLE001, S110 (never started: nothing to end)
            pass


def pauses(world: World) -> PreemptionClient:
    return PreemptionClient(world.temporal, task_queue=world.queue)


async def paused_state(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    return await eventually(
        lambda: query_state(handle), lambda s: "paused" in s, what="the paused state", timeout=90
    )


async def test_a_pause_before_the_alarm_holds_the_run_until_unpaused(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    vms = [world.vm(f"DC0_C0_RP1_VM{i}") for i in range(2)]
    world.tags.tag(TAG, vms)
    async with running_worker(world.env):
        await pauses(world).pause(
            {"reason": "vSphere upgrade", "by": "ops", "replyTo": world.sink.url}
        )
        await until(lambda: world.events(PAUSED_EVENT_TYPE), bool, "the paused event")
        handle = await start(
            world, handles, f"cpu/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
        )
        state = await paused_state(handle)
        # Planned and shown, nothing acted on.
        assert state["paused"]["until"] is None and state["paused"]["source"] == "pause"
        assert "vSphere upgrade (paused: everything by ops)" in state["paused"]["reason"]
        assert state["plan"]["notes"][-1].startswith("paused until unpaused: vSphere upgrade")
        assert {v["ref"]["Value"] for v in state["plan"]["victims"]} == {v.value for v in vms}
        await asyncio.sleep(1)
        assert set(world.power(vms).values()) == {ON}
        await pauses(world).unpause({"by": "ops"})
        runs = await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        after = await query_state(handle)
        # The run's record says `acted` before its event is sent: wait for the event too (a
        # loaded machine showed the record without it).
        await until(lambda: world.events(PREEMPTED_EVENT_TYPE), bool, "the preempted event")

    assert set(world.power(vms).values()) == {OFF}
    assert "paused" not in after
    hold = runs[0]["holds"][0]
    assert hold["released"] == "pause ended" and hold["until"] is None
    assert [e.type for e in world.sink.events] == [
        PAUSED_EVENT_TYPE,
        HELD_EVENT_TYPE,
        UNPAUSED_EVENT_TYPE,
        RELEASED_EVENT_TYPE,
        PREEMPTED_EVENT_TYPE,
    ]
    released = world.events(RELEASED_EVENT_TYPE)[0].data
    assert released["proceeds"] is True
    unpaused = world.events(UNPAUSED_EVENT_TYPE)[0].data
    assert (unpaused["what"], unpaused["scope"]) == ("unpaused by ops", "everything")


async def test_a_pause_on_one_entity_expires_by_itself_and_leaves_another_alone(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    c0, c1 = world.cluster("DC0_C0"), world.cluster("DC0_C1")
    held = [world.vm("DC0_C0_RP1_VM2")]
    free = [world.vm("DC0_C1_RP1_VM2")]
    world.tags.tag(TAG, [*held, *free])
    async with running_worker(world.env):
        await pauses(world).pause(
            {"reason": "migration", "alarm": "cpu", "entity": c0.value, "forSeconds": 4}
        )
        a = await start(world, handles, f"cpu/{c0.value}", alarm_on(c0, replyTo=world.sink.url))
        b = await start(world, handles, f"cpu/{c1.value}", alarm_on(c1, replyTo=world.sink.url))
        state = await paused_state(a)
        until_text = state["paused"]["until"]
        # The other entity's run was not held.
        other = await history_when(b, lambda r: outcomes(r) == ["acted"], "the other's run")
        assert world.power(held) == {held[0]: ON}
        runs = await history_when(a, lambda r: outcomes(r) == ["acted"], "the held run")

    assert world.power([*held, *free]) == {held[0]: OFF, free[0]: OFF}
    ended = datetime.fromisoformat(runs[0]["holds"][0]["releasedAt"].replace("Z", "+00:00"))
    assert ended >= datetime.fromisoformat(until_text.replace("Z", "+00:00"))
    assert "holds" not in other[0]


async def test_a_quiet_window_holds_the_run_and_a_lowering_meanwhile_acts_on_nothing(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    vms = [world.vm("DC0_C0_APP0_VM0")]
    world.tags.tag(TAG, vms)
    now = datetime.now(UTC)
    start_at, end_at = now - timedelta(hours=1), now + timedelta(hours=1)
    window = {
        "start": start_at.strftime("%H:%M"),
        "end": end_at.strftime("%H:%M"),
        "timeZone": "UTC",
        "days": [start_at.strftime("%a").lower()],
    }
    async with running_worker(world.with_policy({"quiet": [window]}, PREEMPTION_NOTICE_HIGH="0")):
        handle = await start(
            world, handles, f"cpu/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
        )
        state = await paused_state(handle)
        assert state["paused"]["source"] == "quiet"
        assert state["paused"]["reason"].startswith("quiet window")
        await handle.cancel()  # the alarm lowered during the window
        result = await handle.result()

    assert world.power(vms) == {vms[0]: ON}
    assert outcomes(result["history"]) == ["cancelled"]
    assert result["history"][0]["holds"][0]["released"] == "alarm lowered"
    assert [e.type for e in world.sink.events] == [HELD_EVENT_TYPE, RELEASED_EVENT_TYPE]
    assert world.events(RELEASED_EVENT_TYPE)[0].data["proceeds"] is False


async def state_once_served(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """The state as soon as a worker answers for the workflow: none while Temporal or the new
    worker cannot serve the query yet."""
    try:
        return await query_state(handle)
    except RPCError:
        return {}


def pause_list(address: str, queue: str) -> subprocess.CompletedProcess[str]:
    """`preemptctl pause --list`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "pause", "--list", "-s", address, "-q", queue],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_a_pause_outlives_a_restart_of_the_worker_and_of_temporal_then_unpause_acts(
    usage_vcsim: Vcsim, usage_inventory: UsageInventory, tmp_path: Path
) -> None:
    # Temporal of this test's own: the same SQLite file and port when it comes back.
    server = TemporalDevServer(
        port=free_port(), db_file=tmp_path / "temporal.db", log_file=tmp_path / "temporal.log"
    )
    with server:
        temporal = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
        with world_on(
            usage_vcsim, usage_inventory, server, temporal, tmp_path, "pause-restart",
            PREEMPTION_NOTICE_HIGH="0",
        ) as world:  # fmt: skip
            cluster = world.cluster("DC0_C0")
            vms = [world.vm(f"DC0_C0_RP1_VM{i}") for i in range(2)]
            world.tags.tag(TAG, vms)
            first = WorkerProcess(world.env, tmp_path / "worker-1.log").start()
            second = WorkerProcess(world.env, tmp_path / "worker-2.log")
            try:
                await pauses(world).pause(
                    {"reason": "vSphere upgrade", "by": "ops", "replyTo": world.sink.url}
                )
                handle = await start(
                    world, [], f"cpu/{cluster.value}", alarm_on(cluster, replyTo=world.sink.url)
                )
                await paused_state(handle)
                await until(lambda: world.events(HELD_EVENT_TYPE), bool, "the held event")

                # Everything but vCenter goes down: the worker as a crash would take it, then
                # Temporal; Temporal comes back on its database, then a new worker.
                first.kill()
                server.stop()
                server.start()
                second.start()

                state = await eventually(
                    lambda: state_once_served(handle), lambda s: "paused" in s,
                    what="the state, answered by the new worker", timeout=90,
                )  # fmt: skip
                # The registry too is served by the new worker once it has replayed it: right
                # after the crash its query may wait out the dead worker's sticky queue past
                # the CLI's 5 s, and the CLI says so ("did not answer"); the operator, as
                # here, asks again.
                listed = await eventually(
                    lambda: asyncio.to_thread(pause_list, server.address, world.queue),
                    lambda done: "did not answer" not in done.stderr,
                    what="the registry, answered by the new worker", timeout=90,
                )  # fmt: skip
                await asyncio.sleep(1)  # time enough to act, were the hold lost
                held_on = world.power(vms)
                runs_while_held = await run_history(handle)

                await pauses(world).unpause({"by": "ops"})
                runs = await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
                await until(lambda: world.events(PREEMPTED_EVENT_TYPE), bool, "the event")
                after = world.power(vms)
                received = list(world.sink.events)
            finally:
                first.stop()
                second.stop()
    # (The workflows left running end with this test's server and its database.)

    # While held after the restarts: the state says paused, the operator's list still shows
    # the pause, the VMs stayed on, and no run has ended.
    assert state["paused"]["until"] is None and state["paused"]["source"] == "pause"
    assert "vSphere upgrade (paused: everything by ops)" in state["paused"]["reason"]
    assert {v["ref"]["Value"] for v in state["plan"]["victims"]} == {v.value for v in vms}
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "everything until unpaused by ops: vSphere upgrade\n"
    assert set(held_on.values()) == {ON}
    assert runs_while_held == []  # a held run is recorded once it ends
    # Unpaused: the run went on and acted, once; its record says the pause ended it.
    assert set(after.values()) == {OFF}
    hold = runs[0]["holds"][0]
    assert hold["released"] == "pause ended" and hold["until"] is None
    # Each announcement once (a redelivery would repeat its id, never add one), in order.
    sent = list(dict.fromkeys((e.type, e.id) for e in received))
    assert [kind for kind, _ in sent] == [
        PAUSED_EVENT_TYPE,
        HELD_EVENT_TYPE,
        UNPAUSED_EVENT_TYPE,
        RELEASED_EVENT_TYPE,
        PREEMPTED_EVENT_TYPE,
    ]
