"""Inventory helpers: what the demo, benchmarks and worker tests build their scenes with."""

from __future__ import annotations

from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.vsphere.client import VSphereClient


def test_lists_objects_by_type(inventory: Inventory) -> None:
    vms = inventory.vms()
    assert len(vms) == 9
    assert [s.name for s in vms] == sorted(s.name for s in vms)
    # -cluster 2 -host 1 plus the standalone host.
    assert len(inventory.objects("HostSystem")) == 3
    assert len(inventory.objects("ClusterComputeResource")) == 2
    assert inventory.objects("Datastore")


def test_tags_are_created_once_and_reused(client: VSphereClient, inventory: Inventory) -> None:
    first = inventory.ensure_tag("preemptible")
    assert inventory.ensure_tag("preemptible") == first
    assert inventory.ensure_tag("preemptible", category="elsewhere") != first
    vms = [s.ref for s in inventory.vms()[:3]]
    assert inventory.tag("preemptible", vms) == first
    assert inventory.tag("preemptible", vms[:1]) == first  # attaching again is harmless
    assert sorted(client.tagged_objects("preemptible")) == sorted(vms)
    inventory.untag(first, vms[:2])
    assert client.tagged_objects("preemptible") == vms[2:]


def test_power_helpers_reach_the_state_and_tolerate_being_there(
    client: VSphereClient, inventory: Inventory
) -> None:
    a, b = (s.ref for s in inventory.vms()[:2])
    inventory.power_off([a])
    inventory.suspend([b])
    inventory.power_off([a])  # already off: no error
    states = client.read_vms([a, b])
    assert (states[a].power_state, states[b].power_state) == (
        PowerState.POWERED_OFF,
        PowerState.SUSPENDED,
    )
    inventory.power_on([a, b])
    inventory.power_on([a])  # already on: no error
    assert {s.power_state for s in client.read_vms([a, b]).values()} == {PowerState.POWERED_ON}
