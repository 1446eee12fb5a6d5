"""Acting with care, end to end: Temporal, the worker, vcsim, an event sink.

The notice before acting (events, a durable timer, the guest's variable), a lowering alarm
during it, each stop action, resume on clear, the bounded run history across continue-as-new,
a flood of signals, and a worker killed mid-notice and mid-resume. The worker runs in this
process from its settings and a policy file, as `preemptctl worker` builds it (or as its own
process, to be killed); the workflow is signalled and cancelled the way the Go function does.
What is checked is what vCenter says afterwards (power states, annotations, guestinfo, its
event log with times), what reached the sink, and what the workflow answers. Durations are
seconds so that the whole file runs in well under a minute or two.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from tests.e2e.world import (
    LEVELS,
    POWERED_OFF,
    POWERED_ON,
    PRIORITY,
    SUSPENDED,
    TAG,
    Clock,
    World,
    alarm_on,
    counted,
    history_when,
    last_is,
    outcomes,
    run_history,
    start,
    until,
    worker_as_process,
)
from tests.temporal.helpers import (
    eventually,
    query_state,
    signal_payload,
    signal_with_start,
    unique,
)
from tests.temporal.rig import (
    Observer,
    Rigs,
    powered_off,
    read_annotations,
    running_worker,
    worker_and_successor,
)
from vsphere_preemption.domain.workflow_ids import IdMode
from vsphere_preemption.temporal.client import PreemptionClient, execution_timeout_for
from vsphere_preemption.temporal.workflow import STORM_MAX_HISTORY_EVENTS
from vsphere_preemption.wire import (
    ANNOTATION_KEY,
    CANCELLED_EVENT_TYPE,
    EXPIRED_EVENT_TYPE,
    PREEMPTED_EVENT_TYPE,
    RESUMED_EVENT_TYPE,
    SCHEDULED_EVENT_TYPE,
    SIGNAL_NAME,
    WorkflowRequest,
    parse_time,
)

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]


# -- the notice -----------------------------------------------------------------------------


async def test_a_notice_is_announced_and_written_in_the_guest_then_the_victims_go_off(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    low, high = world.vm("DC0_C0_RP1_VM0"), world.vm("DC0_C0_RP1_VM1")
    bystander = world.vm("DC0_C0_RP1_VM2")  # untagged
    world.tags.tag(TAG, [low, high])
    world.tags.tag("low", [low], category=PRIORITY)
    world.tags.tag("high", [high], category=PRIORITY)
    env = world.with_policy(
        {"priority": LEVELS, "notice": {"MEDIUM": "2s", "guest": True}},
    )
    clock = Clock(world.sim)
    async with running_worker(env):
        handle = await start(
            world,
            handles,
            f"cpu/{cluster.value}",
            alarm_on(cluster, criticality="MEDIUM", replyTo=world.sink.url),
        )
        scheduled = await until(
            lambda: world.events(SCHEDULED_EVENT_TYPE), bool, "the scheduled event"
        )
        # During the notice: nothing is stopped yet, and the guests have been told.
        power, guest = world.power([low, high, bystander]), world.guest([low, high, bystander])
        data = scheduled[0].data
        not_before = parse_time(data["notBefore"])
        assert datetime.now(not_before.tzinfo) < not_before, "read too late to be in the notice"
        assert set(power.values()) == {POWERED_ON}
        assert set(guest) == {low, high}
        for text in guest.values():
            assert json.loads(text) == {
                "action": "poweroff",
                "notBefore": data["notBefore"],
                "workflowID": handle.id,
            }
        await until(lambda: world.events(PREEMPTED_EVENT_TYPE), bool, "the preempted event")
        runs = await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")

    # The scheduled event names the victims (lowest priority first), the action, the time.
    assert [v["Value"] for v in data["virtualMachines"]] == [low.value, high.value]
    assert (data["action"], data["noticeSeconds"], data["criticality"]) == ("poweroff", 2, "MEDIUM")
    assert data["workflowID"] == handle.id
    assert scheduled[0].id == f"{handle.id}-{data['event']['id']}-scheduled"
    # Then stopped, no sooner than announced, by vCenter's own clock.
    assert world.power([low, high, bystander]) == {
        low: POWERED_OFF,
        high: POWERED_OFF,
        bystander: POWERED_ON,
    }
    off = clock.times("VmPoweredOffEvent")
    clock.close()
    assert set(off) == {low.value, high.value}
    assert all(t >= not_before for times in off.values() for t in times)
    notes = world.notes([low, high, bystander])
    assert set(notes) == {low, high}
    assert {n["action"] for n in notes.values()} == {"poweroff"}
    assert runs[0]["notice"] == {"seconds": 2, "notBefore": data["notBefore"]}
    assert [e.type for e in world.sink.events] == [SCHEDULED_EVENT_TYPE, PREEMPTED_EVENT_TYPE]


async def test_a_lowered_alarm_during_the_notice_acts_on_nothing_and_says_so(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C1")
    vms = [world.vm(f"DC0_C1_RP1_VM{i}") for i in range(2)]
    world.tags.tag(TAG, vms)
    # A long notice: the alarm lowers long before it ends, and the test never waits it out.
    env = world.with_policy({"notice": {"LOW": "10m", "guest": True}})
    observer = Observer(world.sim)
    observer.mark("VmPoweredOffEvent", "VmGuestShutdownEvent", "VmSuspendedEvent")
    async with running_worker(env):
        handle = await start(
            world,
            handles,
            f"cpu/{cluster.value}",
            alarm_on(cluster, criticality="LOW", replyTo=world.sink.url),
        )
        await until(lambda: world.events(SCHEDULED_EVENT_TYPE), bool, "the scheduled event")
        assert set(world.guest(vms)) == set(vms)
        await handle.cancel()  # what the Go function does when the alarm lowers
        result = await handle.result()

    # Nothing was acted on; the guests' notice is cleared; the cancel is announced.
    assert set(world.power(vms).values()) == {POWERED_ON}
    assert observer.events("VmPoweredOffEvent", "VmGuestShutdownEvent", "VmSuspendedEvent") == {}
    observer.close()
    assert set(world.guest(vms).values()) <= {""}
    assert world.notes(vms) == {}
    assert [e.type for e in world.sink.events] == [SCHEDULED_EVENT_TYPE, CANCELLED_EVENT_TYPE]
    cancelled = world.events(CANCELLED_EVENT_TYPE)[0].data
    assert cancelled["reason"] == "the alarm lowered during the notice: nothing was acted on"
    assert {v["Value"] for v in cancelled["virtualMachines"]} == {v.value for v in vms}
    assert cancelled["action"] == "shutdown"
    # The workflow completed, its run recorded as cancelled; no VM in its answer.
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert result["virtualMachines"] is None
    assert outcomes(result["history"]) == ["cancelled"]


# -- the stop actions -----------------------------------------------------------------------


async def test_each_criticality_stops_its_victims_as_its_action_says(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    by_shutdown, by_suspend, by_poweroff = (world.vm(f"DC0_C0_APP0_VM{i}") for i in range(3))
    world.tags.tag(TAG, [by_shutdown, by_suspend, by_poweroff])
    world.tags.tag("low", [by_shutdown], category=PRIORITY)
    world.tags.tag("mid", [by_suspend], category=PRIORITY)
    world.tags.tag("high", [by_poweroff], category=PRIORITY)
    env = world.with_policy(
        {
            "priority": LEVELS,
            "maxVMs": 1,
            "notice": {"LOW": 0, "MEDIUM": 0, "HIGH": 0},
            "actions": {
                "LOW": {"action": "shutdown", "grace": "20s"},
                "MEDIUM": "suspend",
                "HIGH": "poweroff",
            },
        }
    )
    observer = Observer(world.sim)
    kinds = ("VmGuestShutdownEvent", "VmSuspendedEvent", "VmPoweredOffEvent")
    observer.mark(*kinds)
    async with running_worker(env):
        handle = None
        # One run per criticality, each on the next victim (the earlier ones are stopped).
        for number, criticality in enumerate(("LOW", "MEDIUM", "HIGH"), 1):
            signal = alarm_on(cluster, criticality=criticality, replyTo="")
            signal["event"]["id"] = f"alarm-{criticality}"
            if handle is None:
                handle = await start(world, handles, f"cpu/{cluster.value}", signal)
            else:
                await handle.signal(SIGNAL_NAME, signal)
            runs = await history_when(handle, counted(number), f"run {number}")
    assert outcomes(runs) == ["acted", "acted", "acted"]
    assert [r["action"] for r in runs] == ["shutdown", "suspend", "poweroff"]
    assert [r["stopped"] for r in runs] == [[by_shutdown.value], [by_suspend.value],
                                            [by_poweroff.value]]  # fmt: skip

    # vCenter agrees: one guest shut down (and so off, not forced), one suspended, one powered
    # off; none stopped twice.
    assert world.power([by_shutdown, by_suspend, by_poweroff]) == {
        by_shutdown: POWERED_OFF,
        by_suspend: SUSPENDED,
        by_poweroff: POWERED_OFF,
    }
    assert observer.events(*kinds) == {
        ("VmGuestShutdownEvent", by_shutdown.value): 1,
        ("VmPoweredOffEvent", by_shutdown.value): 1,  # what its guest did
        ("VmSuspendedEvent", by_suspend.value): 1,
        ("VmPoweredOffEvent", by_poweroff.value): 1,
    }
    observer.close()
    notes = world.notes([by_shutdown, by_suspend, by_poweroff])
    said = {ref: (n["action"], n["forcedShutdown"], n["criticality"]) for ref, n in notes.items()}
    assert said == {
        by_shutdown: ("shutdown", False, "LOW"),
        by_suspend: ("suspend", True, "MEDIUM"),
        by_poweroff: ("poweroff", True, "HIGH"),
    }


# -- resume on clear ------------------------------------------------------------------------


def resume_policy(batch: int, interval: str) -> dict[str, Any]:
    return {
        "priority": LEVELS,
        "notice": {"LOW": 0, "MEDIUM": 0, "HIGH": 0},
        "resume": {"enabled": True, "batchSize": batch, "interval": interval},
    }


async def test_a_cleared_alarm_resumes_the_untouched_vms_by_priority_in_batches(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    high, mid, low = (world.vm(f"DC0_C0_RP1_VM{i}") for i in range(3))
    by_hand, reconfigured, unannotated = (world.vm(f"DC0_C0_APP0_VM{i}") for i in range(3))
    everyone = [high, mid, low, by_hand, reconfigured, unannotated]
    world.tags.tag(TAG, everyone)
    world.tags.tag("high", [high, by_hand], category=PRIORITY)
    world.tags.tag("mid", [mid, reconfigured], category=PRIORITY)
    world.tags.tag("low", [low, unannotated], category=PRIORITY)
    env = world.with_policy(resume_policy(2, "1s"))
    clock = Clock(world.sim)
    async with running_worker(env):
        handle = await start(
            world,
            handles,
            f"cpu/{cluster.value}",
            alarm_on(cluster, criticality="HIGH", replyTo=world.sink.url),
        )
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        assert set(world.power(everyone).values()) == {POWERED_OFF}
        # People step in: one powered on again, one reconfigured, one's annotation removed.
        await asyncio.to_thread(world.tags.power_on, [by_hand])
        world.client.set_extra_config([reconfigured], "guestinfo.by-hand", "resized")
        world.client.annotate([unannotated], ANNOTATION_KEY, "")
        await handle.cancel()
        result = await handle.result()

    # Resumed: exactly the untouched ones, highest priority first, one batch at a time.
    assert world.power(everyone) == {
        high: POWERED_ON,
        mid: POWERED_ON,
        low: POWERED_ON,
        by_hand: POWERED_ON,
        reconfigured: POWERED_OFF,
        unannotated: POWERED_OFF,
    }
    on = clock.times("VmPoweredOnEvent")
    clock.close()
    assert all(len(on[vm.value]) == 1 for vm in (high, mid, low, by_hand))  # by hand: ours none
    assert on[high.value][0] + timedelta(seconds=1) <= on[mid.value][0]
    assert on[mid.value][0] + timedelta(seconds=1) <= on[low.value][0]
    notes = world.notes(everyone)
    for vm in (high, mid, low):
        assert notes[vm]["resumed"] is True and notes[vm]["workflowID"] == handle.id
        assert notes[vm]["action"] == "poweroff"
        assert list(notes[vm])[-2:] == ["resumed", "resumedAt"]
    assert "resumed" not in notes[reconfigured] and unannotated not in notes
    # One VmResumedEvent per batch: [by_hand, high], [reconfigured, mid], [unannotated, low].
    resumed = world.events(RESUMED_EVENT_TYPE)
    said = [
        (
            e.data["batch"],
            [v["Value"] for v in e.data["virtualMachines"]],
            {s["vm"]: s["reason"].split(":")[0] for s in e.data["skipped"]},
        )
        for e in resumed
    ]
    assert said == [
        (1, [high.value], {by_hand.value: "powered on by hand"}),
        (2, [mid.value], {reconfigured.value: "reconfigured since it was preempted"}),
        (3, [low.value], {unannotated.value: "annotation removed or replaced"}),
    ]
    assert len({e.id for e in resumed}) == 3
    record = result["history"][-1]
    assert (record["kind"], record["outcome"]) == ("resume", "resumed")
    assert record["resumed"] == [high.value, mid.value, low.value]
    assert len(record["skipped"]) == 3 and record["failed"] == []


async def test_a_raising_alarm_during_the_resume_stops_it_and_the_next_run_serves_it(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C1")
    first, second, third = (world.vm(f"DC0_C1_APP0_VM{i}") for i in range(3))
    vms = [first, second, third]
    world.tags.tag(TAG, vms)
    world.tags.tag("high", [first], category=PRIORITY)
    world.tags.tag("mid", [second], category=PRIORITY)
    world.tags.tag("low", [third], category=PRIORITY)
    # A long interval between batches: the raise comes while the resume waits for the next.
    # The administrator lets a request speed the resume up (a request alone may only slow it).
    env = world.with_policy({**resume_policy(1, "10m"), "allowOverrides": ["resume"]})
    observer = Observer(world.sim)
    observer.mark("VmPoweredOnEvent", "VmPoweredOffEvent")
    workflow_id = f"cpu/{cluster.value}"
    async with running_worker(env):
        handle = await start(
            world,
            handles,
            workflow_id,
            alarm_on(cluster, criticality="HIGH", replyTo=world.sink.url),
        )
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        first_run = (await handle.describe()).run_id
        await handle.cancel()
        await until(lambda: world.events(RESUMED_EVENT_TYPE), bool, "the first batch")
        # The alarm raises again, as the Go function signals it; this time the resume that
        # follows its clear goes quicker (the request's policy override).
        again = alarm_on(
            cluster,
            criticality="HIGH",
            replyTo=world.sink.url,
            policy={"resume": {"batchSize": 5, "interval": "1s"}},
        )
        again["event"]["id"] = "raised-again"
        await signal_with_start(world.temporal, workflow_id, world.queue, again)
        runs = await history_when(
            handle, lambda r: outcomes(r) == ["acted", "interrupted", "acted"], "the new run"
        )
        described = await handle.describe()
        # Continued as new: the first run ended so, the new one serves the raise.
        assert described.run_id != first_run
        old = await world.temporal.get_workflow_handle(workflow_id, run_id=first_run).describe()
        assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        assert runs[1]["resumed"] == [first.value]
        assert runs[2]["eventID"] == "raised-again" and runs[2]["stopped"] == [first.value]
        assert set(world.power(vms).values()) == {POWERED_OFF}
        # The alarm clears again: all three come back, the two never resumed included.
        await handle.cancel()
        result = await handle.result()

    assert set(world.power(vms).values()) == {POWERED_ON}
    assert observer.events("VmPoweredOnEvent", "VmPoweredOffEvent") == {
        ("VmPoweredOffEvent", first.value): 2,
        ("VmPoweredOnEvent", first.value): 2,
        ("VmPoweredOffEvent", second.value): 1,
        ("VmPoweredOnEvent", second.value): 1,
        ("VmPoweredOffEvent", third.value): 1,
        ("VmPoweredOnEvent", third.value): 1,
    }
    observer.close()
    assert outcomes(result["history"]) == ["acted", "interrupted", "acted", "resumed"]
    assert result["history"][-1]["resumed"] == [first.value, second.value, third.value]
    batches = [len(e.data["virtualMachines"]) for e in world.events(RESUMED_EVENT_TYPE)]
    assert batches == [1, 3]


# -- a long-lived workflow ------------------------------------------------------------------


async def run_lengths(client: Client, workflow_id: str, first_run: str) -> list[int]:
    """The history length of every run of the workflow, first to latest (continue-as-new)."""
    lengths: list[int] = []
    run_id: str | None = first_run
    while run_id is not None:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        last = history.events[-1]
        run_id = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return lengths


async def flood(
    handle: WorkflowHandle[Any, Any], signal: dict[str, Any], count: int, name: str
) -> None:
    """`count` raising signals as fast as Temporal takes them, each with its own event id."""
    limit = asyncio.Semaphore(64)

    async def one(number: int) -> None:
        payload = copy.deepcopy(signal)
        payload["event"]["id"] = f"{name}-{number}"
        async with limit:
            await handle.signal(SIGNAL_NAME, payload)

    await asyncio.gather(*(one(n) for n in range(count)))


async def test_thousands_of_signals_keep_every_run_short_and_the_run_history_across_runs(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    victim = world.vm("DC0_C0_RP1_VM0")
    world.tags.tag(TAG, [victim])
    # A long cooldown: after the first run, every raise is answered (skipped) at once.
    env = world.with_policy({"history": 3, "notice": {"HIGH": 0}}, PREEMPTION_COOLDOWN="1h")
    workflow_id = f"cpu/{cluster.value}"
    signal = alarm_on(cluster, criticality="HIGH", replyTo="")
    # The worker in a process of its own, as it runs in production: in the test process, the
    # collection of pytest's large heap (which hypothesis times on every collection) once
    # fell inside an activation of 500 signals on a loaded machine and outlasted the SDK's
    # 2 s deadlock bound (TMPRL1101), a cost no real worker carries.
    with worker_as_process(env, world.directory / "worker.log") as worker_process:
        handle = await start(world, handles, workflow_id, signal)
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the first run")
        first_run = (await handle.describe()).run_id
        assert first_run is not None
        # Across runs: one record each, the newest last, only the last three kept.
        for number in range(2, 5):
            one = copy.deepcopy(signal)
            one["event"]["id"] = f"alarm-{number}"
            await handle.signal(SIGNAL_NAME, one)
            await history_when(handle, last_is("run", number), f"run {number}")
        runs = await run_history(handle)
        assert [(r["run"], r["outcome"], r["eventID"]) for r in runs] == [
            (2, "skipped", "alarm-2"),
            (3, "skipped", "alarm-3"),
            (4, "skipped", "alarm-4"),
        ]
        # A flood, in bursts as fast as Temporal takes them: the raises that wait together make
        # one run; the workflow continues as new once its history passes STORM_MAX_HISTORY_EVENTS.
        # (Bursts, each one served before the next: while signals never stop arriving, the
        # server refuses every continue-as-new, temporalio/temporal#1289.)
        for burst in range(6):
            await flood(handle, signal, 500, f"burst-{burst}")
            last = copy.deepcopy(signal)
            last["event"]["id"] = f"end-of-burst-{burst}"
            await handle.signal(SIGNAL_NAME, last)
            runs = await history_when(handle, last_is("eventID", f"end-of-burst-{burst}"), "served")
        state = await query_state(handle)
        lengths = await run_lengths(world.temporal, workflow_id, first_run)
        await handle.cancel()
        result = await handle.result()

    assert "TMPRL1101" not in worker_process.log()
    assert len(lengths) >= 2, f"never continued as new: {lengths}"
    assert max(lengths) < 2_500, lengths
    assert all(n > STORM_MAX_HISTORY_EVENTS for n in lengths[:-1]), lengths  # none continued early
    # The query answers in the latest run, with what the first run did.
    assert [v["Value"] for v in state["virtualMachines"]] == [victim.value]
    assert state["event"]["id"] == signal["event"]["id"]
    # The run history went on across continue-as-new: numbered on, still the last three.
    numbers = [r["run"] for r in runs]
    assert len(runs) == 3 and numbers == list(range(numbers[0], numbers[0] + 3))
    assert numbers[0] > 4 and outcomes(runs) == ["skipped"] * 3
    assert result["history"] == runs
    assert world.power([victim]) == {victim: POWERED_OFF}


async def test_a_workflow_past_its_max_lifetime_ends_naming_the_vms_it_leaves_off(
    world: World, handles: list[WorkflowHandle[Any, Any]]
) -> None:
    cluster = world.cluster("DC0_C0")
    victims = [world.vm(f"DC0_C0_RP1_VM{i}") for i in range(2)]
    world.tags.tag(TAG, victims)
    resume = {"enabled": True, "batchSize": 5, "interval": "1s"}
    env = world.with_policy({"resume": resume, "maxLifetime": "6s"})
    async with running_worker(env):
        # Started as the function starts it in its per-entity form: no execution timeout.
        client = PreemptionClient(world.temporal, task_queue=world.queue)
        signal = alarm_on(cluster, criticality="HIGH", replyTo=world.sink.url)
        started = await client.signal_with_start(
            f"cpu/{cluster.value}",
            WorkflowRequest.from_wire(signal),
            execution_timeout=execution_timeout_for(IdMode.ENTITY),
        )
        handle = world.temporal.get_workflow_handle(started.workflow_id)
        handles.append(handle)
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        # The alarm stays raised and never lowers: the workflow ends on its own, when its
        # lifetime is over, not on a timeout of Temporal's (it has none).
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert not description.raw_description.execution_config.HasField(
            "workflow_execution_timeout"
        )
        result = await asyncio.wait_for(handle.result(), timeout=60)
        state = json.loads(await handle.query("current_state", result_type=str))

    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    born = parse_time(result["ended"]["startedAt"])
    ended = parse_time(result["ended"]["at"])
    assert timedelta(seconds=6) <= ended - born < timedelta(seconds=30)
    left_off = sorted(v.value for v in victims)
    assert result["ended"]["reason"] == "maxLifetime"
    assert result["ended"]["maxLifetime"] == "6s"
    assert sorted(v["Value"] for v in result["ended"]["notResumed"]) == left_off
    assert result["lastRun"]["kind"] == "expire" and result["lastRun"]["outcome"] == "expired"
    assert "maxLifetime 6s reached" in result["lastRun"]["reason"]
    assert state["ended"] == result["ended"]  # the query answers the same final state
    # Its last word, to the sink: what it will no longer resume. They stay off.
    (expired,) = world.events(EXPIRED_EVENT_TYPE)
    assert expired.id == f"{handle.id}-expired-{description.run_id}"
    assert sorted(v["Value"] for v in expired.data["virtualMachines"]) == left_off
    assert expired.data["workflowID"] == handle.id and expired.data["maxLifetime"] == "6s"
    assert set(world.power(victims).values()) == {POWERED_OFF}
    assert world.events(RESUMED_EVENT_TYPE) == []


# -- a worker killed and restarted ----------------------------------------------------------


async def history_has(handle: WorkflowHandle[Any, Any], kind: int, what: str) -> None:
    async def events() -> list[Any]:
        return list((await handle.fetch_history()).events)

    await eventually(events, lambda es: any(e.event_type == kind for e in es), what=what)


async def resuming(handle: WorkflowHandle[Any, Any]) -> None:
    """Until a ResumeVMs attempt is running (started, not ended)."""

    async def started() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return any(
            p.activity_type.name == "ResumeVMs"
            and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for p in pending
        )

    await eventually(started, bool, what="a ResumeVMs attempt running")


def scheduled_count(events: list[Any], activity: str) -> int:
    return sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    )


async def test_a_worker_killed_during_the_notice_acts_once_after_its_restart(
    temporal_client: Client, worker_rig: Rigs, tmp_path: Path
) -> None:
    sim, vcenter, scene, queue, env = worker_rig(
        "kill-notice", on=3, off=0, PREEMPTION_NOTICE_MEDIUM="3s", PREEMPTION_COOLDOWN="0"
    )
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent")
    with worker_and_successor(env, tmp_path) as (first, second):
        workflow_id = unique("alarm")
        await signal_with_start(
            temporal_client, workflow_id, queue, signal_payload(criticality="MEDIUM", replyTo="")
        )
        handle = temporal_client.get_workflow_handle(workflow_id)
        await history_has(handle, EventType.EVENT_TYPE_TIMER_STARTED, "the notice timer")
        first.kill()
        assert set(powered_off(vcenter, scene.on)) == set(), "acted before the notice ended"
        second.start()
        runs = await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        await handle.cancel()
        await handle.result()
        events = list((await handle.fetch_history()).events)
        assert second.terminate() == 0
    assert powered_off(vcenter, scene.on) == set(scene.on)
    assert observer.events("VmPoweredOffEvent") == {
        ("VmPoweredOffEvent", r.value): 1 for r in scene.on
    }
    observer.close()
    vcenter.close()
    assert set(runs[0]["stopped"]) == {r.value for r in scene.on}
    timers = [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert len(timers) == 1 and scheduled_count(events, "PowerOffVMs") == 1


@pytest.mark.parametrize(
    "moment",
    [
        "between two batches",
        # The claim (the resumed annotation, written before each power-on) tells the retry
        # which VMs are its own, whether or not the dead attempt's heartbeat went out.
        "while a batch powers on",
    ],
)
async def test_a_worker_killed_during_the_resume_resumes_each_vm_once_after_its_restart(
    moment: str, temporal_client: Client, worker_rig: Rigs, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"resume": {"enabled": True, "batchSize": 2, "interval": 1}}))
    # Each power-on takes 2 s in vcsim: the kill lands while the first batch powers on.
    sim, vcenter, scene, queue, env = worker_rig(
        "kill-resume", on=4, off=0, vcsim=("-method-delay", "PowerOnVM_Task:2000"),
        PREEMPTION_NOTICE_HIGH="0", PREEMPTION_POLICY_FILE=str(policy),
        PREEMPTION_MAX_CONCURRENCY="1",
    )  # fmt: skip
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent")
    with worker_and_successor(env, tmp_path) as (first, second):
        workflow_id = unique("alarm")
        await signal_with_start(
            temporal_client, workflow_id, queue, signal_payload(criticality="HIGH", replyTo="")
        )
        handle = temporal_client.get_workflow_handle(workflow_id)
        await history_when(handle, lambda r: outcomes(r) == ["acted"], "the run")
        await handle.cancel()

        if moment == "between two batches":
            await until(lambda: len(powered_off(vcenter, scene.on)) == 2, bool, "batch 1 on")
        else:
            await resuming(handle)
        first.kill()
        assert powered_off(vcenter, scene.on), "the kill came too late to be mid-resume"
        second.start()
        result = await handle.result()
        events = list((await handle.fetch_history()).events)
        assert second.terminate() == 0

    # Every VM on again, each once (a second power-on would fail on a VM that is on, and the
    # VM would be reported skipped or failed); each annotated resumed; none taken for a VM
    # powered on by hand.
    assert powered_off(vcenter, scene.on) == set()
    counts = observer.events("VmPoweredOffEvent")
    observer.close()
    assert counts == {("VmPoweredOffEvent", r.value): 1 for r in scene.on}
    notes = read_annotations(vcenter, scene.on)
    vcenter.close()
    assert all(json.loads(n).get("resumed") is True for n in notes.values()) and len(notes) == 4
    record = result["history"][-1]
    assert (record["kind"], record["outcome"]) == ("resume", "resumed")
    assert sorted(record["resumed"]) == sorted(r.value for r in scene.on)
    assert record["skipped"] == [] and record["failed"] == []
    assert scheduled_count(events, "ResumeVMs") == 2  # one per batch, retried not rescheduled
