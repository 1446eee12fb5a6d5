"""What the end-to-end tests share: a World (vcsim with usage figures, the Temporal dev server,
the worker's settings on a queue of its own, an event sink), the Go function's signal on an
entity, and the waits on vCenter, the sink and the workflow's run history.

The `world` and `handles` fixtures (tests/e2e/conftest.py) are built from `world_on`; a test
file that needs other worker settings overrides the `worker_settings` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from temporalio.client import Client, WorkflowHandle

from tests.conftest import fixture_json
from tests.temporal.helpers import (
    SIGNAL_FIXTURE,
    eventually,
    signal_with_start,
    unique,
)
from tests.temporal.rig import (
    client_for,
    connection_env,
    read_annotations,
    write_secret,
)
from tests.vsphere.raw_session import RawSession
from tests.vsphere.usage_inventory import UsageInventory
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink, ReceivedEvent
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.domain.model import MoRef, VmRef
from vsphere_preemption.temporal.contracts import GUEST_NOTICE_KEY
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.sdk import vim
from vsphere_preemption.wire import (
    HISTORY_QUERY,
)

T = TypeVar("T")
TAG = "preemptible"
PRIORITY = "preemption-priority"
LEVELS = {"category": PRIORITY, "levels": {"low": 0, "mid": 50, "high": 100}, "default": 50}
POWERED_ON, POWERED_OFF, SUSPENDED = "poweredOn", "poweredOff", "suspended"


@dataclass
class World:
    """vcsim with usage figures and the test's own session on it, Temporal, the worker's settings
    on a queue of its own, and an event sink."""

    sim: Vcsim
    inventory: UsageInventory
    client: VSphereClient  # the test's own session (not the worker's)
    tags: Inventory
    temporal: Client
    queue: str
    env: dict[str, str]  # the worker's settings
    sink: EventSink
    directory: Path

    def vm(self, name: str) -> VmRef:
        return VmRef(self.inventory.vm(name))

    def cluster(self, name: str) -> MoRef:
        found = self.tags.names("ClusterComputeResource")
        return found[name]

    def with_policy(self, policy: dict[str, Any], **env: str) -> dict[str, str]:
        path = self.directory / f"policy-{unique('p')}.yaml"
        path.write_text(yaml.safe_dump(policy))
        return {**self.env, "PREEMPTION_POLICY_FILE": str(path), **env}

    def power(self, vms: list[VmRef]) -> dict[VmRef, str]:
        return {ref: str(s.power_state) for ref, s in self.client.read_vms(vms).items()}

    def notes(self, vms: list[VmRef]) -> dict[VmRef, dict[str, Any]]:
        return {ref: json.loads(t) for ref, t in read_annotations(self.client, vms).items() if t}

    def guest(self, vms: list[VmRef]) -> dict[VmRef, str]:
        return self.client.read_extra_config(vms, GUEST_NOTICE_KEY)

    def events(self, event_type: str) -> list[ReceivedEvent]:
        return [e for e in self.sink.events if e.type == event_type]


@contextlib.contextmanager
def world_on(
    sim: Vcsim,
    inventory: UsageInventory,
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    directory: Path,
    queue_prefix: str,
    **extra_env: str,
) -> Iterator[World]:
    """A World on a queue of its own (`queue_prefix`-...), the worker's settings plus
    `extra_env`; its vCenter client and sink closed when the block ends.

    The worker's settings: the connections and no cooldown, the policy's defaults otherwise."""
    secret = write_secret(directory / "secret", sim)
    queue = unique(queue_prefix)
    env = connection_env(sim, secret, temporal_server.address, queue)
    env |= {"PREEMPTION_COOLDOWN": "0", **extra_env}
    with client_for(sim) as client, EventSink() as sink:
        yield World(
            sim=sim,
            inventory=inventory,
            client=client,
            tags=Inventory(client),
            temporal=temporal_client,
            queue=queue,
            env=env,
            sink=sink,
            directory=directory,
        )


def alarm_on(entity: MoRef, **changes: Any) -> dict[str, Any]:
    """The Go function's exact signal (fixture 02), its alarm firing on `entity`."""
    payload: dict[str, Any] = copy.deepcopy(fixture_json(SIGNAL_FIXTURE))
    payload["event"]["data"]["Entity"] = {
        "Name": "an entity",
        "Entity": {"Type": entity.type, "Value": entity.value},
    }
    payload.update(changes)
    return payload


class Clock(RawSession):
    """vCenter's event log with vCenter's own times: when each VM was stopped or started."""

    def times(self, type_name: str) -> dict[str, list[datetime]]:
        manager: Any = self.content.eventManager
        found: Any = manager.QueryEvents(vim.event.EventFilterSpec(eventTypeId=[type_name]))
        times: dict[str, list[datetime]] = {}
        for event in found:
            if type(event).__name__.rsplit(".", 1)[-1] == type_name and event.vm is not None:
                times.setdefault(event.vm.vm._moId, []).append(event.createdTime)
        return {vm: sorted(t) for vm, t in times.items()}


@contextlib.contextmanager
def worker_as_process(env: Mapping[str, str], log: Path) -> Iterator[WorkerProcess]:
    """`python -m vsphere_preemption worker` on `env`, stopped (SIGTERM) when the block ends."""
    process = WorkerProcess(env, log).start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.terminate()


async def until(check: Callable[[], T], ok: Callable[[T], bool], what: str) -> T:
    """Poll a blocking read (vCenter, the sink) until `ok`."""

    async def probe() -> T:
        return await asyncio.to_thread(check)

    return await eventually(probe, ok, what=what, timeout=90)


async def run_history(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    text = await handle.query(HISTORY_QUERY, result_type=str)
    runs: list[dict[str, Any]] = json.loads(text)
    return runs


async def history_when(
    handle: WorkflowHandle[Any, Any], ok: Callable[[list[dict[str, Any]]], bool], what: str
) -> list[dict[str, Any]]:
    return await eventually(lambda: run_history(handle), ok, what=what, timeout=90)


def counted(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda runs: len(runs) == n


def last_is(key: str, value: Any) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda runs: bool(runs) and runs[-1].get(key) == value


def outcomes(runs: list[dict[str, Any]]) -> list[str]:
    return [r.get("outcome", "") for r in runs]


async def start(
    world: World, handles: list[WorkflowHandle[Any, Any]], workflow_id: str, signal: Any
) -> WorkflowHandle[Any, Any]:
    await signal_with_start(world.temporal, workflow_id, world.queue, signal)
    handle = world.temporal.get_workflow_handle(workflow_id)  # the latest run, as the function
    handles.append(handle)
    return handle
