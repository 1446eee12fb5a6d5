"""Many vCenters, many alarms, end to end: one function, vcsim vCenters, real workers.

Unlike the rest of this package, workers run here (tests/temporal/rig.py: in this process
from their settings, or as `python -m vsphere_preemption worker` processes), each against its
own vcsim; the function routes every alarm event by its source (the vCenter's SDK URL, as
VEBA names it) through VCENTER_TASKQUEUES to that vCenter's task queue. What is checked is what
each vCenter says afterwards: power states, annotations, and its event log of power-offs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.client import Client

from tests.function.conftest import Serve, alarm_event, as_binary, function_settings, post
from tests.temporal.helpers import eventually, pollers_of, unique
from tests.temporal.rig import (
    SECRET,
    TAG,
    Observer,
    client_for,
    powered_off,
    read_annotations,
    running_worker,
    worker_env,
    write_secret,
)
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.vcenters import vcenter_host
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.wire import Annotation

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]

POWER_OFF = "VmPoweredOffEvent"


def small_vcenter(clusters: int) -> tuple[str, ...]:
    """`clusters` clusters of one host with 3 VMs each, no standalone host."""
    return ("-cluster", str(clusters), "-host", "1", "-vm", "3", "-standalone-host", "0",
            "-username", "preemptor", "-password", SECRET)  # fmt: skip


@dataclass
class VCenter:
    """One simulated vCenter: its clusters, which VMs carry the tag, and an eye on its log."""

    sim: Vcsim
    client: VSphereClient
    observer: Observer
    clusters: dict[str, list[VmRef]]  # cluster moref value -> its tagged VMs
    untagged: list[VmRef]

    @property
    def host(self) -> str:
        return vcenter_host(self.sim.url)

    @property
    def tagged(self) -> list[VmRef]:
        return [vm for vms in self.clusters.values() for vm in vms]

    def off(self) -> set[VmRef]:
        return powered_off(self.client, [*self.tagged, *self.untagged])

    def power_offs(self) -> dict[str, int]:
        """VM moref value -> power-offs vCenter logged since the test began."""
        return {vm: n for (_, vm), n in self.observer.events(POWER_OFF).items()}


@pytest.fixture
def vcenters(vcsim_factory: Callable[..., Vcsim]) -> Iterator[Callable[[int], VCenter]]:
    made: list[VCenter] = []

    def make(clusters: int) -> VCenter:
        sim = vcsim_factory(*small_vcenter(clusters))
        client = client_for(sim)
        inventory = Inventory(client)
        names = {r: name for name, r in inventory.names("ClusterComputeResource").items()}
        by_cluster: dict[str, list[VmRef]] = {r.value: [] for r in names}
        untagged = []
        for state in inventory.vms():
            cluster = next(r.value for r, name in names.items() if name == state.cluster)
            # Two of each cluster's three VMs may go; the third stays untagged.
            if len(by_cluster[cluster]) < 2:
                by_cluster[cluster].append(state.ref)
            else:
                untagged.append(state.ref)
        tagged = [vm for vms in by_cluster.values() for vm in vms]
        inventory.tag(TAG, tagged)
        assert not powered_off(client, [*tagged, *untagged])
        observer = Observer(sim)
        observer.mark(POWER_OFF)
        made.append(VCenter(sim, client, observer, by_cluster, untagged))
        return made[-1]

    yield make
    for vc in made:
        vc.observer.close()
        vc.client.close()


def annotated_by(vc: VCenter, vms: list[VmRef]) -> dict[VmRef, str]:
    """VM -> the workflow ID its preemption annotation names."""
    return {
        vm: Annotation.from_wire(text).workflow_id
        for vm, text in read_annotations(vc.client, vms).items()
    }


async def test_each_vcenters_alarm_preempts_on_that_vcenter_only_through_its_worker(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    vcenters: Callable[[int], VCenter],
    cleanup: list[str],
    tmp_path: Path,
) -> None:
    a, b = vcenters(1), vcenters(1)
    ((cluster_a, tagged_a),) = a.clusters.items()
    ((cluster_b, tagged_b),) = b.clusters.items()
    # Both vCenters name their cluster alike: only the vCenter tells the two apart.
    assert cluster_a == cluster_b
    assert a.host != b.host  # one loopback address, two ports
    queue_a, queue_b, alarm = unique("vc-a"), unique("vc-b"), unique("cpu")
    env_a = worker_env(a.sim, write_secret(tmp_path / "a", a.sim), temporal_server.address,
                       queue_a, PREEMPTION_SCOPE="entity")  # fmt: skip
    env_b = worker_env(b.sim, write_secret(tmp_path / "b", b.sim), temporal_server.address,
                       queue_b, PREEMPTION_SCOPE="entity")  # fmt: skip
    # A by its SDK URL, B by its host and port: either form of key.
    mapping = {a.sim.url: queue_a, b.host: queue_b}
    settings = function_settings(
        alarm, "unused", temporal_server.address, VCENTER_TASKQUEUES=json.dumps(mapping)
    )
    id_a, id_b = f"{alarm}/{a.host}/{cluster_a}", f"{alarm}/{b.host}/{cluster_b}"
    cleanup += [id_a, id_b]
    function = await serve(settings)
    await function.wait_ready()

    async with running_worker(env_a), running_worker(env_b), function.client() as client:
        event = alarm_event(alarm, "green", "red", entity=cluster_a, source=a.sim.url)
        raised = await post(client, as_binary(event))
        assert (raised.status_code, raised.json()["workflowID"]) == (200, id_a)
        await eventually(
            lambda: asyncio.to_thread(annotated_by, a, [*tagged_a, *a.untagged]),
            lambda found: found == {vm: id_a for vm in tagged_a},
            timeout=90, what="A's tagged VMs preempted (off, then annotated)",
        )  # fmt: skip
        # A's alarm did nothing on B, though the cluster has the same moref there.
        assert b.off() == set()
        assert b.power_offs() == {}

        # B's event, its source as VEBA may spell it (upper case, a trailing slash).
        source_b = f"https://{b.host.upper()}/sdk/"
        event = alarm_event(alarm, "green", "red", entity=cluster_b, source=source_b)
        raised = await post(client, as_binary(event))
        assert (raised.status_code, raised.json()["workflowID"]) == (200, id_b)
        await eventually(
            lambda: asyncio.to_thread(annotated_by, b, [*tagged_b, *b.untagged]),
            lambda found: found == {vm: id_b for vm in tagged_b},
            timeout=90, what="B's tagged VMs preempted (off, then annotated)",
        )  # fmt: skip

        # A vCenter the function does not serve: answered, not acted on.
        unknown = "https://vcsa-c.example.com/sdk"
        event = alarm_event(alarm, "green", "red", entity=cluster_a, source=unknown)
        ignored = await post(client, as_binary(event))
        assert ignored.status_code == 200
        assert ignored.json() == {
            "eventID": ignored.json()["eventID"],
            "decision": "ignore",
            "reason": "unknown vCenter vcsa-c.example.com",
        }

    # Each workflow ran on its own vCenter's task queue.
    for workflow_id, queue in ((id_a, queue_a), (id_b, queue_b)):
        description = await temporal_client.get_workflow_handle(workflow_id).describe()
        assert description.task_queue == queue
    # Each tagged VM went off once, through its own vCenter's worker; nothing else did.
    assert a.off() == set(tagged_a) and b.off() == set(tagged_b)
    assert a.power_offs() == {vm.value: 1 for vm in tagged_a}
    assert b.power_offs() == {vm.value: 1 for vm in tagged_b}
    assert annotated_by(a, [*tagged_a, *a.untagged]) == {vm: id_a for vm in tagged_a}
    assert annotated_by(b, [*tagged_b, *b.untagged]) == {vm: id_b for vm in tagged_b}


async def two_pollers(client: Client, queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    async def probe() -> set[str]:
        return await pollers_of(client, queue, kind)

    return await eventually(probe, lambda found: len(found) == 2, what=f"two pollers of {kind}")


async def acted_by(client: Client, workflow_id: str) -> set[str]:
    """The identities of the workers that started the workflow's activity tasks."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    return {
        e.activity_task_started_event_attributes.identity
        for e in history.events
        if e.event_type == started
    }


async def test_two_workers_on_one_task_queue_share_the_work_and_act_once_per_vm(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    vcenters: Callable[[int], VCenter],
    cleanup: list[str],
    tmp_path: Path,
) -> None:
    vc = vcenters(3)
    queue, alarm = unique("scale"), unique("cpu")
    env = worker_env(vc.sim, write_secret(tmp_path / "vsphere", vc.sim), temporal_server.address,
                     queue, PREEMPTION_SCOPE="entity")  # fmt: skip
    settings = function_settings(
        alarm, "unused", temporal_server.address, VCENTER_TASKQUEUES=json.dumps({vc.sim.url: queue})
    )
    ids = {cluster: f"{alarm}/{vc.host}/{cluster}" for cluster in vc.clusters}
    cleanup += list(ids.values())
    function = await serve(settings)
    await function.wait_ready()
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log").start() for n in (1, 2)]
    try:
        # Both poll the queue before the first event: either may take any task.
        workflow_pollers = await two_pollers(
            temporal_client, queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        )
        identities = await two_pollers(
            temporal_client, queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        )
        assert workflow_pollers == identities  # the same two workers
        # A storm: each cluster's alarm raised three times (three events), all at once.
        storm = [
            alarm_event(alarm, frm, "red", entity=cluster, source=vc.sim.url)
            for cluster in vc.clusters
            for frm in ("green", "yellow", "gray")
        ]
        async with function.client() as client:
            replies = await asyncio.gather(*(post(client, as_binary(e)) for e in storm))
        assert [r.status_code for r in replies] == [200] * len(storm)
        assert {r.json()["workflowID"] for r in replies} == set(ids.values())
        expected = {vm: ids[cluster] for cluster, vms in vc.clusters.items() for vm in vms}
        await eventually(
            lambda: asyncio.to_thread(annotated_by, vc, [*vc.tagged, *vc.untagged]),
            lambda found: found == expected,
            timeout=120, what="every tagged VM preempted (off, then annotated)",
        )  # fmt: skip
        # The later signals of the storm reached the workflows too (and were coalesced or
        # skipped in the cooldown): wait until every one is in a history, then look again.
        # The function signals one at a time per workflow; the events that arrived meanwhile
        # rode its next signal (their answers name its event): one signal per carrier.
        signals = sum(
            r.json().get("signalEventID", r.json()["eventID"]) == r.json()["eventID"]
            for r in replies
        )
        assert len(vc.clusters) <= signals <= len(storm)
        await eventually(
            lambda: signalled(temporal_client, list(ids.values())), lambda n: n == signals,
            timeout=60, what="every event signalled",
        )  # fmt: skip
        await asyncio.sleep(2)
        shared = set()
        for workflow_id in ids.values():
            shared |= await acted_by(temporal_client, workflow_id)
    finally:
        codes = [w.terminate() if w.proc and w.proc.poll() is None else None for w in workers]
        for w in workers:
            w.stop()
    assert codes == [0, 0], [w.log()[-2000:] for w in workers]

    # Each tagged VM was powered off exactly once, by whichever worker, and annotated by its
    # own cluster's workflow; the untagged VMs were left alone.
    assert vc.off() == set(vc.tagged)
    assert vc.power_offs() == {vm.value: 1 for vm in vc.tagged}
    assert annotated_by(vc, [*vc.tagged, *vc.untagged]) == expected
    # Both workers took part.
    assert shared == identities


async def signalled(client: Client, workflow_ids: list[str]) -> int:
    wanted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    total = 0
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        total += sum(1 for e in history.events if e.event_type == wanted)
    return total
