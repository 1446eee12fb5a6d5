"""gather() on vcsim: scope under the alarmed entity, tags by category, figures, round trips.

Expected values come from elsewhere than the code under test: VM names (vcsim names a
VM after its cluster, pool or vApp), the figures written into the usage inventory, and
a separate pyVmomi session reading one property at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.vsphere.conftest import LARGER, SMALL, Admin, MakeClient
from tests.vsphere.usage_inventory import BATCH_VMS, NESTED_VMS, UsageInventory
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import Criticality, MoRef, Resources, TagName, VmRef
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import (
    CategoryNotFoundError,
    EntityNotFoundError,
    TagNotFoundError,
    UnsupportedEntityError,
    VSphereError,
)
from vsphere_preemption.vsphere.gather import HostSpeeds
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import check_power_state
from vsphere_preemption.wire import ANNOTATION_KEY, Annotation

TAG = "preemptible"
MB = 1024 * 1024


@pytest.fixture
def admin_view(usage_vcsim: Vcsim) -> Iterator[Admin]:
    view = Admin(usage_vcsim)
    yield view
    view.close()


@pytest.fixture
def usage_client(usage_vcsim: Vcsim, make_client: MakeClient) -> VSphereClient:
    return make_client(usage_vcsim)


def managed(admin: Admin, kind: Any) -> dict[str, Any]:
    """Every managed object of a pyVmomi type, by name (one property read each)."""
    view = admin.content.viewManager.CreateContainerView(admin.content.rootFolder, [kind], True)
    try:
        return {obj.name: obj for obj in view.view}
    finally:
        view.DestroyView()


def ref(obj: Any) -> MoRef:
    return MoRef(value=obj._moId, type=obj._wsdlName)


def tag_all(client: VSphereClient) -> dict[str, VmRef]:
    """Tag every VM preemptible; returns them by name."""
    inventory = Inventory(client)
    vms = {s.name: s.ref for s in inventory.vms()}
    inventory.tag(TAG, list(vms.values()))
    return vms


def in_scope(client: VSphereClient, entity: MoRef | None) -> set[str]:
    return {f.name for f in client.gather(TAG, entity, []).facts if f.in_scope}


# -- scope ---------------------------------------------------------------------------------


def named(prefix: str) -> Callable[[set[str]], set[str]]:
    return lambda names: {n for n in names if n.startswith(prefix)}


SCOPES: list[tuple[str, Any, str, Callable[[set[str]], set[str]]]] = [
    # (case, pyVmomi type, entity name, expected VM names out of all of them)
    ("cluster", vim.ClusterComputeResource, "DC0_C0", named("DC0_C0_")),
    ("standalone compute resource", vim.ComputeResource, "DC0_H0", named("DC0_H0_")),
    ("pool with a nested pool", vim.ResourcePool, "DC0_C0_RP1", named("DC0_C0_RP1_")),
    ("nested pool", vim.ResourcePool, "Nested", lambda _: set(NESTED_VMS)),
    ("vApp", vim.VirtualApp, "DC0_C1_APP0", named("DC0_C1_APP0_")),
    ("datastore", vim.Datastore, "LocalDS_0", lambda names: names),
    ("datacenter", vim.Datacenter, "DC0", lambda names: names),
    ("VM folder", vim.Folder, "Batch", lambda _: set(BATCH_VMS)),
    ("host folder", vim.Folder, "host", lambda names: names),
]


@pytest.mark.parametrize(
    ("kind", "name", "expected"), [s[1:] for s in SCOPES], ids=[s[0] for s in SCOPES]
)
def test_scope_is_the_vms_under_the_entity(
    usage_client: VSphereClient,
    admin_view: Admin,
    kind: Any,
    name: str,
    expected: Callable[[set[str]], set[str]],
) -> None:
    vms = tag_all(usage_client)
    assert len(vms) == 17
    entity = ref(managed(admin_view, kind)[name])

    gathered = usage_client.gather(TAG, entity, [])

    want = expected(set(vms))
    assert want  # an empty expectation would prove nothing
    assert {f.name for f in gathered.facts if f.in_scope} == want
    assert gathered.scope_vms == len(want)
    assert len(gathered.facts) == 17  # out-of-scope VMs are gathered, marked out of scope


def test_host_scope_is_the_vms_running_on_it(
    usage_client: VSphereClient, admin_view: Admin
) -> None:
    tag_all(usage_client)
    all_vms = managed(admin_view, vim.VirtualMachine)
    host = all_vms[NESTED_VMS[0]].runtime.host
    running = {n for n, vm in all_vms.items() if vm.runtime.host._moId == host._moId}
    assert NESTED_VMS[0] in running and 1 < len(running) < len(all_vms)

    assert in_scope(usage_client, ref(host)) == running


def test_a_vm_alarm_scopes_the_vms_on_its_host(
    usage_client: VSphereClient, admin_view: Admin
) -> None:
    tag_all(usage_client)
    all_vms = managed(admin_view, vim.VirtualMachine)
    vm = all_vms["DC0_C1_APP0_VM1"]
    host = vm.runtime.host._moId
    neighbours = {n for n, other in all_vms.items() if other.runtime.host._moId == host}
    assert 1 < len(neighbours) < len(all_vms)

    gathered = usage_client.gather(TAG, ref(vm), [])

    assert {f.name for f in gathered.facts if f.in_scope} == neighbours
    assert gathered.usage is not None and gathered.usage.entity == MoRef(host, "HostSystem")


def test_whole_vcenter_when_there_is_no_entity(usage_client: VSphereClient) -> None:
    vms = tag_all(usage_client)
    gathered = usage_client.gather(TAG, None, [])
    assert {f.name for f in gathered.facts} == set(vms)
    assert all(f.in_scope for f in gathered.facts)
    assert gathered.usage is None and gathered.scope_vms is None and gathered.notes


@pytest.mark.parametrize(
    "entity",
    [
        MoRef("domain-c999", "ClusterComputeResource"),
        MoRef("domain-s999", "ComputeResource"),
        MoRef("host-999", "HostSystem"),
        MoRef("resgroup-999", "ResourcePool"),
        MoRef("resgroup-v999", "VirtualApp"),
        MoRef("datastore-999", "Datastore"),
        MoRef("datacenter-999", "Datacenter"),
        MoRef("group-999", "Folder"),
        MoRef("vm-999", "VirtualMachine"),
    ],
    ids=str,
)
def test_an_entity_that_does_not_exist_is_an_error(client: VSphereClient, entity: MoRef) -> None:
    inventory = Inventory(client)
    inventory.tag(TAG, [s.ref for s in inventory.vms()])
    with pytest.raises(EntityNotFoundError) as raised:
        client.gather(TAG, entity, [])
    assert raised.value.entity == str(entity)


@pytest.mark.parametrize("kind", ["Network", "DistributedVirtualPortgroup", "Bogus", ""])
def test_an_entity_type_holding_no_vms_we_know_is_an_error(
    client: VSphereClient, kind: str
) -> None:
    inventory = Inventory(client)
    inventory.tag(TAG, [s.ref for s in inventory.vms()])
    with pytest.raises(UnsupportedEntityError, match="not supported"):
        client.gather(TAG, MoRef("network-7", kind), [])


# -- tags ------------------------------------------------------------------------------------


def test_tags_by_category_and_group_members_that_are_not_preemptible(
    client: VSphereClient,
) -> None:
    inventory = Inventory(client)
    vms = [s.ref for s in inventory.vms()]
    assert len(vms) == 9
    host, datastore = inventory.objects("HostSystem")[0], inventory.objects("Datastore")[0]
    inventory.tag(TAG, [*vms[:4], host, datastore], category="preemption")
    inventory.tag("batch", vms[2:6], category="budget")
    inventory.tag("web", [vms[3], vms[6], host], category="budget")
    inventory.tag("gold", vms[:9], category="tier")  # a category not asked for

    gathered = client.gather(TAG, None, ["budget"])

    facts = {f.ref: f for f in gathered.facts}
    assert set(facts) == set(vms[:7])  # vms[7:] carry only a tag of another category
    mine, batch, web = (
        TagName("preemption", TAG),
        TagName("budget", "batch"),
        TagName("budget", "web"),
    )
    assert {r: f.tags for r, f in facts.items()} == {
        vms[0]: {mine},
        vms[1]: {mine},
        vms[2]: {mine, batch},
        vms[3]: {mine, batch, web},
        vms[4]: {batch},
        vms[5]: {batch},
        vms[6]: {web},
    }
    assert {r for r, f in facts.items() if f.preemptible} == set(vms[:4])
    assert gathered.non_vms == sorted([host, datastore], key=lambda r: r.type)


def test_a_tagged_vm_that_no_longer_exists_is_reported_as_vanished(
    client: VSphereClient,
) -> None:
    inventory = Inventory(client)
    vms = [s.ref for s in inventory.vms()]
    ghost, group_ghost = VmRef("vm-987654"), VmRef("vm-987655")  # stale associations
    inventory.tag(TAG, [*vms[:2], ghost])
    inventory.tag("batch", [vms[2], group_ghost], category="budget")

    gathered = client.gather(TAG, None, ["budget"])

    assert {f.ref for f in gathered.facts} == set(vms[:3])
    assert gathered.vanished == [ghost, group_ghost]


def test_tags_and_categories_made_after_a_gather_are_seen_by_the_next(
    client: VSphereClient,
) -> None:
    inventory = Inventory(client)
    vms = [s.ref for s in inventory.vms()]
    inventory.tag(TAG, vms[:2], category="preemption")
    inventory.tag("batch", [vms[2]], category="budget")
    first = client.gather(TAG, None, ["budget"])  # names now cached
    assert {f.ref for f in first.facts} == set(vms[:3])

    inventory.tag("web", [vms[3]], category="budget")  # a new tag in a known category
    inventory.tag("gold", [vms[4]], category="tier")  # a new category
    again = client.gather(TAG, None, ["budget", "tier"])

    assert {f.ref: f.tags for f in again.facts if f.ref in vms[3:5]} == {
        vms[3]: {TagName("budget", "web")},
        vms[4]: {TagName("tier", "gold")},
    }


def test_unknown_category_or_tag_is_an_error(client: VSphereClient) -> None:
    inventory = Inventory(client)
    inventory.tag(TAG, [s.ref for s in inventory.vms()][:2])
    with pytest.raises(CategoryNotFoundError, match="'nope'"):
        client.gather(TAG, None, ["nope"])
    with pytest.raises(TagNotFoundError):
        client.gather("no-such-tag", None, [])


# -- figures ---------------------------------------------------------------------------------


def test_usage_boot_time_and_allocation_from_the_edited_inventory(
    usage_client: VSphereClient, admin_view: Admin, usage_inventory: UsageInventory
) -> None:
    tag_all(usage_client)
    facts = {f.ref.value: f for f in usage_client.gather(TAG, None, []).facts}
    assert set(facts) == set(usage_inventory.vms)
    vms = {vm._moId: vm for vm in managed(admin_view, vim.VirtualMachine).values()}

    for moref, written in usage_inventory.vms.items():
        fact = facts[moref]
        memory = (
            written.guest_memory_mb
            if written.guest_memory_mb is not None
            else written.host_memory_mb
        )
        expected_usage = Resources(
            cpu_mhz=None if written.cpu_mhz is None else float(written.cpu_mhz),
            memory_mb=None if memory is None else float(memory),
        )
        assert fact.usage == expected_usage, written.name
        assert fact.boot_time == (written.runtime_boot_time or written.boot_time), written.name
        vm = vms[moref]
        assert fact.allocation == Resources(
            cpu_mhz=float(vm.config.hardware.numCPU * vm.runtime.host.summary.hardware.cpuMhz),
            memory_mb=float(vm.config.hardware.memoryMB),
        ), written.name
        assert fact.host == vm.runtime.host._moId
        assert fact.power_state == "poweredOn"

    # the special cases, spelled out
    assert facts[usage_inventory.no_stats].usage == Resources(None, None)
    host_only = usage_inventory.vms[usage_inventory.host_memory_only]
    assert facts[usage_inventory.host_memory_only].usage.memory_mb == host_only.host_memory_mb
    runtime_boot = usage_inventory.vms[usage_inventory.runtime_boot]
    assert facts[usage_inventory.runtime_boot].boot_time == runtime_boot.runtime_boot_time
    assert facts[usage_inventory.runtime_boot].boot_time != runtime_boot.boot_time
    nested = facts[usage_inventory.vm(NESTED_VMS[0])]
    assert nested.allocation.memory_mb == 1024.0  # govc vm.create's default, not vcsim's 32


def test_a_powered_off_vm_uses_nothing_but_keeps_its_allocation(
    usage_client: VSphereClient, usage_inventory: UsageInventory
) -> None:
    vms = tag_all(usage_client)
    name = "DC0_C0_RP1_VM2"
    written = usage_inventory.vms[vms[name].value]
    assert written.cpu_mhz  # the saved figures are still there after power-off
    before = next(f for f in usage_client.gather(TAG, None, []).facts if f.name == name)
    Inventory(usage_client).power_off([vms[name]])

    after = next(f for f in usage_client.gather(TAG, None, []).facts if f.name == name)

    assert before.usage.cpu_mhz == written.cpu_mhz
    assert after.power_state == "poweredOff"
    assert after.usage == Resources(None, None)
    assert after.allocation == before.allocation and after.allocation.cpu_mhz


def test_entity_usage_of_a_cluster_a_host_and_a_vm(
    usage_client: VSphereClient, admin_view: Admin, usage_inventory: UsageInventory
) -> None:
    tag_all(usage_client)
    cluster = managed(admin_view, vim.ClusterComputeResource)["DC0_C0"]
    hosts = [h._moId for h in cluster.host]
    assert len(hosts) == 2

    usage = usage_client.gather(TAG, ref(cluster), []).usage

    assert usage is not None and usage.entity == ref(cluster)
    assert usage.capacity == Resources(
        cpu_mhz=float(cluster.summary.totalCpu), memory_mb=cluster.summary.totalMemory / MB
    )
    assert usage.used == Resources(
        cpu_mhz=float(sum(usage_inventory.hosts[h].cpu_mhz for h in hosts)),
        memory_mb=float(sum(usage_inventory.hosts[h].memory_mb for h in hosts)),
    )

    host = managed(admin_view, vim.HostSystem)["DC0_C1_H1"]
    hardware = host.summary.hardware
    host_usage = Resources(
        cpu_mhz=float(usage_inventory.hosts[host._moId].cpu_mhz),
        memory_mb=float(usage_inventory.hosts[host._moId].memory_mb),
    )
    capacity = Resources(
        cpu_mhz=float(hardware.cpuMhz * hardware.numCpuCores), memory_mb=hardware.memorySize / MB
    )
    by_host = usage_client.gather(TAG, ref(host), []).usage
    assert by_host is not None and (by_host.capacity, by_host.used) == (capacity, host_usage)

    vm = next(vm for vm in host.vm)
    by_vm = usage_client.gather(TAG, ref(vm), []).usage
    assert by_vm == by_host


def test_pools_and_datastores_have_no_usage_and_say_so(
    usage_client: VSphereClient, admin_view: Admin
) -> None:
    tag_all(usage_client)
    pool = managed(admin_view, vim.ResourcePool)["DC0_C0_RP1"]
    gathered = usage_client.gather(TAG, ref(pool), [])
    assert gathered.usage is None
    assert any(pool._moId in note for note in gathered.notes)


def test_preempted_by_us_reads_our_annotation(client: VSphereClient) -> None:
    inventory = Inventory(client)
    vms = [s.ref for s in inventory.vms()]
    inventory.tag(TAG, vms)
    ours = Annotation(
        tag=TAG,
        forced_shutdown=True,
        criticality=Criticality.HIGH,
        workflow_id="wf",
        workflow_started=datetime(2024, 1, 1, tzinfo=UTC),
        event={},
    )
    client.annotate([vms[0]], ANNOTATION_KEY, ours.to_json())
    not_preempted = Annotation(**{**ours.__dict__, "preempted": False})
    client.annotate([vms[1]], ANNOTATION_KEY, not_preempted.to_json())
    client.annotate([vms[2]], ANNOTATION_KEY, "hand-written note")
    client.annotate([vms[3]], "some.other.field", ours.to_json())

    marked = {f.ref for f in client.gather(TAG, None, []).facts if f.preempted_by_us}

    assert marked == {vms[0]}


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["cluster", "vcenter"])
def test_round_trips_do_not_grow_with_the_number_of_vms(
    vcsim_factory: Callable[..., Vcsim], make_client: MakeClient, scope: str
) -> None:
    counts: dict[int, int] = {}
    for shape in (SMALL, LARGER):
        client = make_client(vcsim_factory(*shape))
        inventory = Inventory(client)
        vms = [s.ref for s in inventory.vms()]
        inventory.tag(TAG, vms[::2])
        inventory.tag("batch", vms[: len(vms) // 2], category="budget")
        inventory.tag("web", vms[len(vms) // 2 :], category="budget")
        entity = inventory.objects("ClusterComputeResource")[0] if scope == "cluster" else None
        client.gather(TAG, entity, ["budget"])  # warm: logins, the tag name's lookup

        before = client.round_trips
        gathered = client.gather(TAG, entity, ["budget"])
        counts[len(vms)] = client.round_trips - before
        assert len(gathered.facts) == len(vms)

    assert set(counts) == {9, 30}
    assert counts[9] == counts[30], counts


def test_a_warm_client_reads_the_facts_in_one_request_the_hosts_speeds_remembered(
    sim: Vcsim, make_client: MakeClient
) -> None:
    client = make_client(sim)
    inventory = Inventory(client)
    inventory.tag(TAG, [s.ref for s in inventory.vms()])
    first = client.gather(TAG, None)  # logins, the tag's name, the hosts' core MHz

    before = client.round_trips
    again = client.gather(TAG, None)
    assert client.round_trips - before == 2, "the tag's objects (REST) and one SOAP read"
    assert [f.allocation for f in again.facts] == [f.allocation for f in first.facts]
    assert all(f.allocation.cpu_mhz for f in again.facts), "the remembered MHz are used"

    uncached = make_client(sim, tag_cache_ttl=0.0)  # names and hosts read every time
    uncached.gather(TAG, None)
    before = uncached.round_trips
    read_again = uncached.gather(TAG, None)
    assert uncached.round_trips - before > 3, "the hosts read again, past the time to live"
    assert [f.allocation for f in read_again.facts] == [f.allocation for f in first.facts]


def test_host_speeds_reads_only_the_hosts_it_does_not_know(
    sim: Vcsim, make_client: MakeClient
) -> None:
    client = make_client(sim)
    hosts = {
        client.session.connection().managed(h) for h in Inventory(client).objects("HostSystem")
    }
    now = [0.0]
    speeds = HostSpeeds(ttl=60.0, clock=lambda: now[0])
    some = set(list(hosts)[:1])

    before = client.round_trips
    known = speeds.of(client.session, some)
    assert client.round_trips - before == 1
    assert speeds.of(client.session, some) == known
    assert client.round_trips - before == 1, "remembered: no request"
    everything = speeds.of(client.session, hosts)
    assert client.round_trips - before == 2, "one request for the others"
    assert set(everything) == {h._moId for h in hosts}
    assert all(mhz > 0 for mhz in everything.values())
    now[0] = 61.0
    assert speeds.of(client.session, some) == known
    assert client.round_trips - before == 3, "read again once the time to live has passed"


# -- what vcsim cannot show ------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing",
    [
        [vmodl.query.PropertyCollector.MissingProperty(
            path="runtime.powerState", fault=vim.fault.NoPermission(privilegeId="System.Read"))],
        [],  # not refused, just absent
    ],
    ids=["refused", "absent"],
)  # fmt: skip
def test_a_power_state_vcenter_does_not_give_is_an_error(missing: list[Any]) -> None:
    # vcsim always gives a power state; a real vCenter may refuse one (a user without
    # System.Read on that VM). The plan must never see such a VM as "off".
    content = vmodl.query.PropertyCollector.ObjectContent(
        obj=vim.VirtualMachine("vm-7"),
        propSet=[vmodl.DynamicProperty(name="name", val="vm seven")],
        missingSet=missing,
    )
    with pytest.raises(VSphereError, match="vm-7"):
        check_power_state(MoRef("vm-7"), content)
