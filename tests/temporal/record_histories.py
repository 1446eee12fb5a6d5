"""Record the workflow histories that tests/temporal/test_replay.py replays.

    .venv/bin/python -m tests.temporal.record_histories [SCENARIO ...]

Runs the real worker (settings, vSphere activities) against vcsim and a Temporal
dev server of its own, drives one workflow per scenario to completion, and writes
each history to tests/fixtures/histories/<scenario>.json. Name scenarios to record only
those: keep the histories of older workflow code as they are (they are what open workflows
in production look like), add one for each new branch of the workflow.
"""

from __future__ import annotations

import asyncio
import functools
import json
import operator
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory

from tests.temporal.helpers import (
    eventually,
    query_state,
    signal_payload,
    signal_with_start,
    wait_for,
)
from tests.temporal.rig import (
    client_for,
    prepare,
    running_worker,
    vcsim_args,
    worker_env,
    write_secret,
)
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.temporal.client import PreemptionClient
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME

HISTORIES = Path(__file__).parent.parent / "fixtures" / "histories"

# (Temporal, task queue, the event sink, the moref of the inventory's first cluster)
Scenario = Callable[[Client, str, EventSink, str], Awaitable[WorkflowHandle[Any, Any]]]


async def _ran(handle: WorkflowHandle[Any, Any]) -> None:
    async def state() -> dict[str, Any]:
        return await query_state(handle)

    await eventually(state, lambda s: s["virtualMachines"] is not None, what="a run")


async def hard_run_skip_bad_signal_cancel(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """HIGH run with an event, a skipped signal, an undecodable one, then cancel."""
    handle = await signal_with_start(
        client, "cluster-cpu-above-80", task_queue, signal_payload(replyTo=sink.url)
    )
    await _ran(handle)
    await wait_for(lambda: len(sink.received) == 1, what="the event")
    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo=""))
    await handle.signal(SIGNAL_NAME, {"tag": "", "criticality": "HIGH"})
    await asyncio.sleep(2)  # let both be processed before the cancel
    await handle.cancel()
    await handle.result()
    return handle


async def soft_run_after_a_missing_tag(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """A tag that does not exist (non-retryable), then a LOW run, then cancel."""
    handle = await signal_with_start(
        client, "host-mem-above-90", task_queue, signal_payload(tag="no-such-tag", replyTo="")
    )
    await asyncio.sleep(2)
    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo=""))
    await _ran(handle)
    await handle.cancel()
    await handle.result()
    return handle


async def plan_run_on_a_cluster_then_dry_run_cancel(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """select-by-plan: a run on one cluster, an override refused, a dry run, then cancel."""
    cluster = {"Type": "ClusterComputeResource", "Value": cluster_id}
    handle = await signal_with_start(
        client,
        f"cluster-cpu-above-80/{cluster_id}",
        task_queue,
        signal_payload(entity=cluster, replyTo=sink.url),
    )
    await _ran(handle)
    await wait_for(lambda: len(sink.received) == 1, what="the event")
    await handle.signal(SIGNAL_NAME, signal_payload(entity=cluster, policy={"maxVMs": 0}))
    await handle.signal(SIGNAL_NAME, signal_payload(entity=cluster, dryRun=True, replyTo=sink.url))
    await wait_for(lambda: len(sink.received) == 2, what="the plan event")
    await handle.cancel()
    await handle.result()
    return handle


async def care_notice_suspend_cancel_then_resume(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """act-with-care: a MEDIUM run suspends after its notice (guest too), two raises within the
    cooldown are skipped, the cancel resumes the VMs in two batches (guest notices cleared)."""
    handle = await signal_with_start(
        client, "cluster-cpu-above-80-care", task_queue,
        signal_payload(criticality="MEDIUM", replyTo=sink.url),
    )  # fmt: skip
    await _ran(handle)
    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo=""))
    await handle.signal(SIGNAL_NAME, signal_payload(criticality="HIGH", replyTo=""))
    await asyncio.sleep(2)  # let both be processed before the cancel
    await handle.cancel()
    await handle.result()
    return handle


async def known_cooldown_skips_without_a_policy_read(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """known-cooldown: a HIGH run, then three raises one by one within the cooldown, skipped
    on the cooldown the run read (no policy read each), a malformed one dropped, cancel."""
    handle = await signal_with_start(
        client, "cluster-cpu-above-80-storm", task_queue, signal_payload(replyTo=sink.url)
    )
    await _ran(handle)

    async def runs() -> int:
        return len(json.loads(await handle.query("history")))

    for number in range(2, 5):
        event = {**signal_payload()["event"], "id": f"storm-{number}"}
        await handle.signal(SIGNAL_NAME, signal_payload(event=event, replyTo=""))
        await eventually(runs, functools.partial(operator.eq, number), what=f"run {number}")
    await handle.signal(SIGNAL_NAME, signal_payload(replyTo="not a URL"))
    await handle.cancel()
    await handle.result()
    return handle


async def resume_interrupted_continues_as_new_then_expires(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """alarm-lifetime across continue-as-new: a HIGH run stops 3 VMs; the cancel resumes one
    batch, a raise during the pause stops the resume and the run continues as new; the next
    run takes the raise (skipped: the cooldown) and ends at the maxLifetime its first run
    started, naming the 2 VMs it leaves off (written as <name>.json and <name>.2.json)."""
    handle = await signal_with_start(
        client, "cluster-cpu-above-80-life", task_queue, signal_payload(replyTo=sink.url)
    )
    await _ran(handle)
    await handle.cancel()
    await wait_for(lambda: len(sink.received) == 2, what="the first resumed batch")
    await handle.signal(SIGNAL_NAME, signal_payload(replyTo=sink.url))
    latest = client.get_workflow_handle(handle.id)
    await latest.result()  # follows the runs: the one that expired
    return client.get_workflow_handle(handle.id, run_id=handle.result_run_id)


async def loop_rounds_until_no_candidate_then_cancel(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """until-relieved: a HIGH run on a cluster, one VM a round, a settle between rounds, the
    use read on the allocation basis after each; the loop ends (target met, no candidate left
    or maxRounds, whichever the inventory gives), then cancel."""
    cluster = {"Type": "ClusterComputeResource", "Value": cluster_id}
    handle = await signal_with_start(
        client,
        f"cluster-mem-above-80/{cluster_id}",
        task_queue,
        signal_payload(entity=cluster, replyTo=sink.url),
    )

    async def last_run() -> dict[str, Any]:
        runs: list[dict[str, Any]] = json.loads(await handle.query("history"))
        return runs[-1] if runs else {}

    await eventually(last_run, lambda run: "loop" in run, what="the loop's end")
    await handle.cancel()
    await handle.result()
    return handle


def _small_raise(event_id: str) -> dict[str, Any]:
    """A raise whose event is as small as a signal's may be: a storm's history stays small."""
    event = {"specversion": "1.0", "id": event_id, "source": "record", "type": "raise"}
    return signal_payload(event=event, replyTo="")


async def storm_proof_continues_as_new_while_idle(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """storm-proof: a run, then raises a few at a time, each skipped within the cooldown, until
    the history passes STORM_MAX_HISTORY_EVENTS and the workflow continues as new (the first
    run's history, which ends so); the next run is cancelled."""
    handle = await signal_with_start(
        client, "cluster-cpu-above-80-long", task_queue, signal_payload(replyTo="")
    )
    await _ran(handle)
    first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    number = 0
    while (await first.describe()).status != WorkflowExecutionStatus.CONTINUED_AS_NEW:
        for _ in range(5):
            number += 1
            await handle.signal(SIGNAL_NAME, _small_raise(f"raise-{number}"))
        await asyncio.sleep(0.1)
    latest = client.get_workflow_handle(handle.id)
    await latest.cancel()
    await latest.result()
    return first


async def storm_of_raises_taken_together(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """storm-proof: a run, then 300 raises at once (32 in flight), taken in few workflow tasks,
    coalesced and skipped within the cooldown, then cancel."""
    handle = await signal_with_start(
        client, "cluster-cpu-above-80-burst", task_queue, signal_payload(replyTo="")
    )
    await _ran(handle)
    limit = asyncio.Semaphore(32)

    async def one(number: int) -> None:
        async with limit:
            await handle.signal(SIGNAL_NAME, _small_raise(f"burst-{number}"))

    await asyncio.gather(*(one(n) for n in range(300)))
    await handle.signal(SIGNAL_NAME, _small_raise("last"))

    async def newest() -> str:
        runs = json.loads(await handle.query("history"))
        return str(runs[-1]["eventID"])

    await eventually(newest, functools.partial(operator.eq, "last"), what="the storm taken")
    await handle.cancel()
    await handle.result()
    return handle


async def pause_held_then_released(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """pause-switch: a pause taken before the alarm holds the run (its plan made, nothing
    acted on), the registry wakes it at the unpause, the run goes on; then cancel."""
    registry = PreemptionClient(client, task_queue=task_queue)
    await registry.pause({"reason": "upgrade", "by": "recorder", "replyTo": sink.url})
    handle = await signal_with_start(
        client, "cluster-cpu-above-80-pause", task_queue, signal_payload(replyTo=sink.url)
    )

    async def state() -> dict[str, Any]:
        return await query_state(handle)

    await eventually(state, lambda s: "paused" in s, what="the hold")
    await registry.unpause({"by": "recorder"})
    await _ran(handle)
    await handle.cancel()
    await handle.result()
    return handle


async def pause_in_round_two_then_resume_without_room(
    client: Client, task_queue: str, sink: EventSink, cluster_id: str
) -> WorkflowHandle[Any, Any]:
    """pause-rounds and resume-headroom: round 1 of a loop acts, a pause taken during the
    settle holds round 2 until the unpause; then the alarm lowers and the resume finds no room
    under its target (1%) less the headroom, so the VMs stay off after maxWait."""
    cluster = {"Type": "ClusterComputeResource", "Value": cluster_id}
    handle = await signal_with_start(
        client,
        f"cluster-mem-above-80/{cluster_id}",
        task_queue,
        signal_payload(entity=cluster, replyTo=sink.url),
    )
    await _ran(handle)
    registry = PreemptionClient(client, task_queue=task_queue)
    await registry.pause({"reason": "upgrade", "by": "recorder", "replyTo": sink.url})

    async def state() -> dict[str, Any]:
        return await query_state(handle)

    await eventually(state, lambda s: "paused" in s, what="round 2 held")
    await registry.unpause({"by": "recorder"})

    async def last_run() -> dict[str, Any]:
        runs: list[dict[str, Any]] = json.loads(await handle.query("history"))
        return runs[-1] if runs else {}

    await eventually(last_run, lambda run: "loop" in run, what="the loop's end")
    await handle.cancel()
    await handle.result()
    return handle


SCENARIOS: dict[str, Scenario] = {
    "hard_run_skip_bad_signal_cancel": hard_run_skip_bad_signal_cancel,
    "soft_run_after_a_missing_tag": soft_run_after_a_missing_tag,
    "plan_run_on_a_cluster_then_dry_run_cancel": plan_run_on_a_cluster_then_dry_run_cancel,
    "care_notice_suspend_cancel_then_resume": care_notice_suspend_cancel_then_resume,
    "known_cooldown_skips_without_a_policy_read": known_cooldown_skips_without_a_policy_read,
    "resume_interrupted_continues_as_new_then_expires": (
        resume_interrupted_continues_as_new_then_expires
    ),
    "storm_proof_continues_as_new_while_idle": storm_proof_continues_as_new_while_idle,
    "storm_of_raises_taken_together": storm_of_raises_taken_together,
    "loop_rounds_until_no_candidate_then_cancel": loop_rounds_until_no_candidate_then_cancel,
    "pause_held_then_released": pause_held_then_released,
    # The same, recorded with pauses-in-plan: each plan reads the pauses too.
    "pauses_read_in_plan_held_then_released": pause_held_then_released,
    "pause_in_round_two_then_resume_without_room": pause_in_round_two_then_resume_without_room,
    # Recorded with folded-patches: one patch marker in each run for all the patches above.
    "folded_patches_pause_in_round_two_then_resume": pause_in_round_two_then_resume_without_room,
    "folded_patches_resume_continues_as_new_then_expires": (
        resume_interrupted_continues_as_new_then_expires
    ),
    "folded_patches_care_notice_suspend_cancel_then_resume": (
        care_notice_suspend_cancel_then_resume
    ),
}
# A scenario recorded again under another name takes the first one's settings and policy.
SAME_AS = {
    "folded_patches_pause_in_round_two_then_resume": "pause_in_round_two_then_resume_without_room",
    "folded_patches_resume_continues_as_new_then_expires": (
        "resume_interrupted_continues_as_new_then_expires"
    ),
    "folded_patches_care_notice_suspend_cancel_then_resume": (
        "care_notice_suspend_cancel_then_resume"
    ),
}
# What each scenario's worker is configured with beyond the rig's defaults.
SETTINGS: dict[str, dict[str, str]] = {
    "plan_run_on_a_cluster_then_dry_run_cancel": {
        "PREEMPTION_SCOPE": "entity",
        "PREEMPTION_COOLDOWN": "0",
    },
    "care_notice_suspend_cancel_then_resume": {"PREEMPTION_NOTICE_MEDIUM": "1s"},
    "loop_rounds_until_no_candidate_then_cancel": {"PREEMPTION_SCOPE": "entity"},
    "pause_in_round_two_then_resume_without_room": {"PREEMPTION_SCOPE": "entity"},
}
# The policy file each scenario's worker reads (PREEMPTION_POLICY_FILE), if any.
POLICIES: dict[str, dict[str, Any]] = {
    "loop_rounds_until_no_candidate_then_cancel": {
        "maxVMs": 1,
        "targets": {"memory": 1, "basis": "allocation"},
        "loop": {"settle": "1s", "maxRounds": 4},
    },
    "pause_in_round_two_then_resume_without_room": {
        "maxVMs": 1,
        "notice": {"LOW": 0, "MEDIUM": 0, "HIGH": 0},
        "targets": {"memory": 1, "basis": "allocation"},
        "loop": {"settle": "5s", "maxRounds": 2},
        "resume": {"enabled": True, "interval": "1s", "maxWait": "2s"},
    },
    "resume_interrupted_continues_as_new_then_expires": {
        "resume": {"enabled": True, "batchSize": 1, "interval": "5s"},
        "maxLifetime": "25s",
    },
    "care_notice_suspend_cancel_then_resume": {
        "notice": {"guest": True},
        "actions": {"MEDIUM": "suspend"},
        "resume": {"enabled": True, "batchSize": 2, "interval": "1s"},
    },
}


async def record(names: list[str]) -> None:
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"no such scenario: {', '.join(sorted(unknown))}")
    HISTORIES.mkdir(parents=True, exist_ok=True)
    with TemporalDevServer() as server, tempfile.TemporaryDirectory() as tmp:
        client = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
        for name, scenario in SCENARIOS.items():
            if names and name not in names:
                continue
            with Vcsim(args=vcsim_args()) as sim, client_for(sim) as vcenter:
                inventory = Inventory(vcenter)
                prepare(inventory, on=3, off=1)
                cluster_id = inventory.objects("ClusterComputeResource")[0].value
                secret = write_secret(Path(tmp) / name, sim)
                like = SAME_AS.get(name, name)
                extra = dict(SETTINGS.get(like, {}))
                if like in POLICIES:
                    policy = Path(tmp) / f"{name}.yaml"
                    policy.write_text(json.dumps(POLICIES[like]))  # JSON is YAML
                    extra["PREEMPTION_POLICY_FILE"] = str(policy)
                env = worker_env(sim, secret, server.address, f"record-{name}", **extra)
                with EventSink() as sink:
                    async with running_worker(env):
                        handle = await scenario(client, f"record-{name}", sink, cluster_id)
                histories = await _runs(client, handle)
            for number, history in enumerate(histories, 1):
                # A workflow that continued as new: each run its own history, in order.
                target = HISTORIES / (f"{name}.json" if number == 1 else f"{name}.{number}.json")
                target.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
                print(f"wrote {target} ({len(history.events)} events)")


async def _runs(client: Client, handle: WorkflowHandle[Any, Any]) -> list[WorkflowHistory]:
    """The history of `handle`'s run and of each run it continued as new into."""
    found = [await handle.fetch_history()]
    while True:
        last = found[-1].events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return found
        attrs = last.workflow_execution_continued_as_new_event_attributes
        nxt = client.get_workflow_handle(handle.id, run_id=attrs.new_execution_run_id)
        found.append(await nxt.fetch_history())


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1:]))
