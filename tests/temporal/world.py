"""What the worker's end-to-end tests with usage figures share: the worker's settings against
vcsim and the dev server, and the world a test reads and writes vCenter through."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from tests.vsphere.usage_inventory import UsageInventory
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.vsphere.client import VSphereClient


def world_env(temporal_address: str, sim: Vcsim, secret: Path, queue: str) -> dict[str, str]:
    """The worker's settings: the connections and no cooldown, the policy's defaults otherwise."""
    return {
        "TEMPORAL_URL": temporal_address,
        "TEMPORAL_NAMESPACE": "vsphere-preemption",
        "TEMPORAL_TASKQUEUE": queue,
        "VCENTER_URL": sim.url,
        "VCENTER_INSECURE": "true",
        "VCENTER_SECRET_PATH": str(secret),
        "PREEMPTION_COOLDOWN": "0",
    }


@dataclass
class World:
    sim: Vcsim
    inventory: UsageInventory
    client: VSphereClient
    tags: Inventory
    temporal: Client
    queue: str
    env: dict[str, str]

    def vm(self, name: str) -> VmRef:
        return VmRef(self.inventory.vm(name))
