"""The worker end-to-end rig: a vcsim scene, an event sink, the worker, a vCenter observer.

Everything real: vcsim (tags through the tagging REST API, VMs through pyVmomi), a
plain HTTP server on loopback for the emitted CloudEvents, the worker built from its
settings exactly as `preemptctl worker` builds it.

`rig_on` sets a vcsim up for a worker test (the scene, the test's own session, the worker's
settings on a queue of its own); the `worker_rig` fixture (registered in tests/conftest.py)
does it on a vcsim of the test's own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.temporal.helpers import unique
from tests.vsphere.raw_session import RawSession
from vsphere_preemption import worker
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.settings import WorkerSettings, load
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.sdk import vim
from vsphere_preemption.wire import ANNOTATION_KEY

# Two clusters of two hosts and a standalone host, 5 VMs per compute resource: 15 VMs.
INVENTORY = ("-cluster", "2", "-host", "2", "-vm", "5")
SECRET = "Pa55-w0rd-never-in-history"  # vcsim accepts only this password
TAG = "preemptible"


def vcsim_args(*extra: str) -> tuple[str, ...]:
    return (*INVENTORY, "-username", "preemptor", "-password", SECRET, *extra)


def write_secret(directory: Path, sim: Vcsim) -> Path:
    """The basic-auth secret as Kubernetes mounts it: files `username` and `password`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "username").write_text(sim.username)
    (directory / "password").write_text(sim.password + "\n")  # `echo pw > file` style
    return directory


def connection_env(
    sim: Vcsim, secret_dir: Path, temporal_address: str, task_queue: str
) -> dict[str, str]:
    """The worker's connections: Temporal and its queue, vcsim and the secret."""
    return {
        "TEMPORAL_URL": temporal_address,
        "TEMPORAL_NAMESPACE": "vsphere-preemption",
        "TEMPORAL_TASKQUEUE": task_queue,
        "VCENTER_URL": sim.url,
        "VCENTER_INSECURE": "true",  # vcsim's self-signed certificate
        "VCENTER_SECRET_PATH": str(secret_dir),
    }


def worker_env(
    sim: Vcsim, secret_dir: Path, temporal_address: str, task_queue: str, **extra: str
) -> dict[str, str]:
    return {
        **connection_env(sim, secret_dir, temporal_address, task_queue),
        # These tests are about acting (power off, annotate, report, retries) on every tagged
        # VM, as the Go worker picks them; choosing by entity has tests of its own
        # (tests/e2e/test_worker_plan_e2e.py).
        "PREEMPTION_SCOPE": "vcenter",
        # ... and acted on at once (the notice before acting has tests of its own).
        "PREEMPTION_NOTICE_LOW": "0",
        "PREEMPTION_NOTICE_MEDIUM": "0",
        **extra,
    }


@contextlib.asynccontextmanager
async def running_worker(env: Mapping[str, str]) -> AsyncIterator[None]:
    """The worker in this process, from its settings, as `preemptctl worker` runs it."""
    settings = load(WorkerSettings, env)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await task


@contextlib.contextmanager
def worker_and_successor(
    env: Mapping[str, str], directory: Path
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """A worker process started, and a second one to start once the test has killed the first;
    both stopped (if still running) when the block ends."""
    first = WorkerProcess(env, directory / "worker-1.log").start()
    second = WorkerProcess(env, directory / "worker-2.log")
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@dataclass
class Scene:
    """Who carries the tag, in what state, before the signal."""

    on: list[VmRef]  # tagged and powered on: exactly these must go off
    off: list[VmRef]  # tagged, already off: left alone
    not_vms: list[VmRef]  # tagged hosts and datastores: left alone
    untagged: list[VmRef]  # powered on, not tagged: left alone

    @property
    def all_vms(self) -> list[VmRef]:
        return [*self.on, *self.off, *self.untagged]


def spread(inventory: Inventory) -> list[VmRef]:
    """Every VM, interleaved across clusters (and the standalone host)."""
    groups: dict[str | None, list[VmRef]] = collections.defaultdict(list)
    for state in inventory.vms():
        groups[state.cluster].append(state.ref)
    columns = [groups[key] for key in sorted(groups, key=str)]
    out: list[VmRef] = []
    for row in range(max(len(c) for c in columns)):
        out.extend(c[row] for c in columns if row < len(c))
    return out


def prepare(inventory: Inventory, *, on: int, off: int, not_vms: int = 2) -> Scene:
    vms = spread(inventory)
    scene = Scene(
        on=vms[:on],
        off=vms[on : on + off],
        not_vms=[*inventory.objects("HostSystem")[:1], *inventory.objects("Datastore")[:1]][
            :not_vms
        ],
        untagged=vms[on + off :],
    )
    inventory.power_off(scene.off)
    inventory.tag(TAG, [*scene.on, *scene.off, *scene.not_vms])
    return scene


def client_for(sim: Vcsim) -> VSphereClient:
    """The test's own vCenter session (not the worker's)."""
    config = VCenterConfig(url=sim.url, username=sim.username, password=sim.password, insecure=True)
    return VSphereClient(config, poll_interval=0.1)


class Rig(NamedTuple):
    """What a worker test stands on: vcsim with its scene set, the test's own session on it,
    and the worker's settings on a queue of its own."""

    sim: Vcsim
    vcenter: VSphereClient  # the test's own session (not the worker's)
    scene: Scene
    queue: str
    env: dict[str, str]


def rig_on(
    sim: Vcsim,
    temporal_address: str,
    directory: Path,
    queue_prefix: str,
    *,
    on: int,
    off: int,
    not_vms: int = 2,
    **extra_env: str,
) -> Rig:
    """`sim` with the scene `prepare` sets, and `worker_env` plus `extra_env` on a queue
    `queue_prefix`-..., its secret written in `directory`/vsphere. The caller closes `vcenter`."""
    vcenter = client_for(sim)
    scene = prepare(Inventory(vcenter), on=on, off=off, not_vms=not_vms)
    queue = unique(queue_prefix)
    secret = write_secret(directory / "vsphere", sim)
    return Rig(
        sim, vcenter, scene, queue, worker_env(sim, secret, temporal_address, queue, **extra_env)
    )


class Rigs:
    """`rig_on` vcsims of their own (`vcsim`: flags beyond `vcsim_args`'), one Temporal."""

    def __init__(
        self, vcsim_factory: Callable[..., Vcsim], temporal_address: str, directory: Path
    ) -> None:
        self._vcsim_factory = vcsim_factory
        self._temporal_address = temporal_address
        self._directory = directory
        self._made: list[Rig] = []

    def __call__(
        self,
        queue_prefix: str,
        *,
        on: int,
        off: int,
        not_vms: int = 2,
        vcsim: tuple[str, ...] = (),
        **extra_env: str,
    ) -> Rig:
        sim = self._vcsim_factory(*vcsim_args(*vcsim))
        rig = rig_on(sim, self._temporal_address, self._directory, queue_prefix,
                     on=on, off=off, not_vms=not_vms, **extra_env)  # fmt: skip
        self._made.append(rig)
        return rig

    def close(self) -> None:
        for rig in self._made:
            rig.vcenter.close()  # idempotent: a test may have closed it already


@pytest.fixture
def worker_rig(
    vcsim_factory: Callable[..., Vcsim], temporal_server: TemporalDevServer, tmp_path: Path
) -> Iterator[Rigs]:
    """Rigs on the session's Temporal; their vCenter sessions closed after the test (before
    `vcsim_factory` stops the simulators)."""
    rigs = Rigs(vcsim_factory, temporal_server.address, tmp_path)
    yield rigs
    rigs.close()


def powered_off(client: VSphereClient, vms: Iterable[VmRef]) -> set[VmRef]:
    return {
        ref
        for ref, state in client.read_vms(list(vms)).items()
        if state.power_state == PowerState.POWERED_OFF
    }


def read_annotations(client: VSphereClient, vms: Iterable[VmRef]) -> dict[VmRef, str]:
    return client.read_custom_field(list(vms), ANNOTATION_KEY)


class Observer(RawSession):
    """A raw pyVmomi session reading vCenter's event log: what was done to which VM."""

    def __init__(self, sim: Vcsim) -> None:
        super().__init__(sim)
        self._baseline: collections.Counter[tuple[str, str]] = collections.Counter()

    def mark(self, *type_names: str) -> None:
        """From now on, `events` counts only what happens after this call."""
        self._baseline = self._all(*type_names)

    def events(self, *type_names: str) -> collections.Counter[tuple[str, str]]:
        """(event type, VM moref) -> how many times vCenter logged it since `mark`."""
        return self._all(*type_names) - self._baseline

    def _all(self, *type_names: str) -> collections.Counter[tuple[str, str]]:
        manager: Any = self.content.eventManager
        found: Any = manager.QueryEvents(vim.event.EventFilterSpec(eventTypeId=list(type_names)))
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        for event in found:
            name = type(event).__name__.rsplit(".", 1)[-1]
            if name in type_names and event.vm is not None:
                counts[(name, event.vm.vm._moId)] += 1
        return counts


def parse_json(text: str) -> Any:
    return json.loads(text)
