"""find_preemptible on vcsim: tags via REST, one batched read, the pure selection."""

from __future__ import annotations

import pytest

from tests.vsphere.conftest import MakeClient
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmIssue, VmRef
from vsphere_preemption.domain.selection import PowerState, VmState, moref_key
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import TagNotFoundError

TAG = "preemptible"


def by_name(states: list[VmState]) -> list[VmRef]:
    return [s.ref for s in sorted(states, key=lambda s: (s.name, moref_key(s.ref.value)))]


def test_selects_exactly_the_powered_on_tagged_vms(
    larger_sim: Vcsim, make_client: MakeClient
) -> None:
    client = make_client(larger_sim)
    inventory = Inventory(client)
    vms = inventory.vms()
    assert len(vms) == 30
    assert all(s.power_state == PowerState.POWERED_ON for s in vms)
    tagged = vms[:12]  # the first 12 by name
    off, suspended = tagged[:3], tagged[3:5]  # the first by name: a cap before the filter fails
    host = inventory.objects("HostSystem")[0]
    datastore = inventory.objects("Datastore")[0]
    inventory.tag(TAG, [s.ref for s in tagged] + [host, datastore])
    inventory.tag("other", [s.ref for s in vms[12:20]])  # another tag: not ours
    inventory.power_off([s.ref for s in off])
    inventory.suspend([s.ref for s in suspended])

    selection = client.find_preemptible(TAG, max_vms=4)

    running = [s for s in tagged if s not in off and s not in suspended]
    assert selection.selected == by_name(running)[:4]
    reasons = {issue.vm: issue.reason for issue in selection.left_out}
    assert reasons == {
        host: "not a virtual machine (HostSystem)",
        datastore: "not a virtual machine (Datastore)",
        **{s.ref: "already powered off" for s in off},
        **{s.ref: "suspended: holds no CPU or memory to free" for s in suspended},
        **{ref: "over the cap of 4 VMs per run" for ref in by_name(running)[4:]},
    }


def test_placement_is_read_in_the_same_request(client: VSphereClient, inventory: Inventory) -> None:
    vms = inventory.vms()
    clusters = {s.cluster for s in vms}
    # Two clusters and the standalone host's compute resource.
    assert len(clusters) == 3 and None not in clusters
    assert all(s.host and s.host.startswith("host-") for s in vms)
    before = client.round_trips
    client.read_vms([s.ref for s in vms])
    assert client.round_trips - before == 1


def test_round_trips_do_not_grow_with_the_number_of_vms(
    larger_sim: Vcsim, make_client: MakeClient
) -> None:
    client = make_client(larger_sim)
    inventory = Inventory(client)
    vms = [s.ref for s in inventory.vms()]
    inventory.tag(TAG, vms[:3])
    client.find_preemptible(TAG, max_vms=10)  # warm: sessions open, tag name resolved

    before = client.round_trips
    few = client.find_preemptible(TAG, max_vms=100)
    with_3 = client.round_trips - before

    inventory.tag(TAG, vms)
    before = client.round_trips
    many = client.find_preemptible(TAG, max_vms=100)
    with_30 = client.round_trips - before

    assert len(few.selected) == 3 and len(many.selected) == 30
    # One REST call for the tag's objects, one batched SOAP read for all their states.
    assert with_3 == with_30 == 2


def test_first_call_cost_is_logins_plus_tag_resolution(
    client: VSphereClient, inventory: Inventory, sim: Vcsim, make_client: MakeClient
) -> None:
    inventory.tag(TAG, [s.ref for s in inventory.vms()[:5]])
    inventory.tag("another", [])
    fresh = make_client(sim)
    fresh.find_preemptible(TAG, max_vms=10)
    # SOAP: version document, service content, login, batched read = 4.
    # REST: login, list tags, read each of the 2 tags, list attached objects = 5.
    assert fresh.round_trips == 9


def test_paged_retrieval_gives_the_same_answer(
    client: VSphereClient, inventory: Inventory, sim: Vcsim, make_client: MakeClient
) -> None:
    inventory.tag(TAG, [s.ref for s in inventory.vms()])
    paged = make_client(sim, page_size=4)
    paged.find_preemptible(TAG, max_vms=10)
    client.find_preemptible(TAG, max_vms=10)

    before = paged.round_trips
    assert paged.find_preemptible(TAG, max_vms=10) == client.find_preemptible(TAG, max_vms=10)
    # 9 VMs + 3 pools + 3 compute resources, 4 objects a page: 1 REST call + 4 pages.
    assert paged.round_trips - before == 5


def test_unknown_tag_is_a_clear_error(client: VSphereClient, inventory: Inventory) -> None:
    inventory.ensure_tag("exists")
    with pytest.raises(TagNotFoundError, match=r"^tag 'nope' not found$"):
        client.find_preemptible("nope", max_vms=10)


def test_a_tag_with_nothing_attached_selects_nothing(
    client: VSphereClient, inventory: Inventory
) -> None:
    inventory.ensure_tag(TAG)
    selection = client.find_preemptible(TAG, max_vms=10)
    assert selection.selected == [] and selection.left_out == []


def test_one_name_in_two_categories_means_both_tags(
    client: VSphereClient, inventory: Inventory
) -> None:
    vms = [s.ref for s in inventory.vms()]
    inventory.tag(TAG, vms[:2], category="team-a")
    inventory.tag(TAG, vms[1:4], category="team-b")
    selection = client.find_preemptible(TAG, max_vms=10)
    assert sorted(selection.selected) == sorted(vms[:4])


def test_a_deleted_tag_recreated_under_the_same_name_is_found_again(
    client: VSphereClient, inventory: Inventory
) -> None:
    vms = [s.ref for s in inventory.vms()]
    tag_id = inventory.tag(TAG, vms[:2])
    assert sorted(client.find_preemptible(TAG, max_vms=10).selected) == sorted(vms[:2])

    inventory.delete_tag(tag_id)  # the cached id is now stale
    new_id = inventory.tag(TAG, vms[5:8])
    assert new_id != tag_id
    assert sorted(client.find_preemptible(TAG, max_vms=10).selected) == sorted(vms[5:8])

    inventory.delete_tag(new_id)
    with pytest.raises(TagNotFoundError):
        client.find_preemptible(TAG, max_vms=10)


def test_a_tagged_vm_that_no_longer_exists_is_left_out(
    client: VSphereClient, inventory: Inventory
) -> None:
    vms = [s.ref for s in inventory.vms()]
    ghost = VmRef("vm-987654")  # vcsim attaches tags to any id, as a stale association would
    inventory.tag(TAG, [*vms[:2], ghost])
    selection = client.find_preemptible(TAG, max_vms=10)
    assert sorted(selection.selected) == sorted(vms[:2])
    assert selection.left_out == [
        VmIssue(ghost, "virtual machine not found (deleted after tagging?)")
    ]
