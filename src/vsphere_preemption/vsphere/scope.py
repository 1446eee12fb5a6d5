"""The VMs under an alarmed entity, and the entity's capacity and use, in a few requests.

How many round trips, whatever the number of VMs:
- cluster or standalone compute resource: 1 (entity -> `host` traversal, each host's
  `vm` and quick stats, the entity's `summary` for capacity);
- host: 1; datastore (`datastore.vm`): 1;
- resource pool or vApp: 1 (recursive `resourcePool` traversal, each pool's `vm`);
- VM: 1 (its `runtime.host`, reached through resourcePool -> owner -> host in the same
  request) + 1 only when its host is not reached that way (a template has no pool);
- datacenter or folder: 3 (create a recursive ContainerView of VMs, read it, destroy it).

What counts as "under":
- a cluster's or a host's VMs are those running on (registered to) its hosts;
- a pool's are those in it or in any pool or vApp nested in it;
- a datastore's are those with files on it (`datastore.vm`);
- a datacenter's or folder's are every VM vCenter lists beneath it (both its VM and host
  hierarchies, vApps included);
- for a VM alarm, the VMs on that VM's host: the capacity a VM alarm is about is its host's.

Capacity and use come in the same request where the entity has them: a cluster's
`summary.totalCpu` (MHz) and `totalMemory` (bytes) against the sum of its hosts'
`summary.quickStats` (overallCpuUsage MHz, overallMemoryUsage MB); a host's
`summary.hardware` (cpuMhz x numCpuCores, memorySize) against its own quick stats. A
VM alarm gets its host's figures. Pools, vApps, datastores, datacenters and folders get
none (a note says so): their "capacity" is not one number a plan could target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vsphere_preemption.domain.model import EntityUsage, MoRef, Resources
from vsphere_preemption.vsphere.errors import (
    EntityNotFoundError,
    UnsupportedEntityError,
    VSphereError,
)
from vsphere_preemption.vsphere.reads import placement_traversal
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import Connection, SoapSession, props, ref_of

PC = vmodl.query.PropertyCollector

MB = 1024 * 1024

COMPUTE = frozenset({"ClusterComputeResource", "ComputeResource"})
POOLS = frozenset({"ResourcePool", "VirtualApp"})
CONTAINERS = frozenset({"Datacenter", "Folder"})
SUPPORTED = COMPUTE | POOLS | CONTAINERS | {"HostSystem", "Datastore", "VirtualMachine"}

_HOST_PATHS = ["vm", "summary.quickStats", "summary.hardware"]


@dataclass(frozen=True)
class Scope:
    """The VMs under an entity (morefs only) and its capacity and use, where it has them."""

    entity: MoRef
    vms: frozenset[MoRef]
    usage: EntityUsage | None = None
    notes: list[str] = field(default_factory=list)


def read_scope(session: SoapSession, entity: MoRef) -> Scope:
    """The scope of `entity`; EntityNotFoundError / UnsupportedEntityError, never empty."""
    if entity.type not in SUPPORTED:
        raise UnsupportedEntityError(str(entity), SUPPORTED)
    if entity.type in CONTAINERS:
        return _container_scope(session, entity)
    if entity.type == "VirtualMachine":
        return _vm_scope(session, entity)
    if entity.type in COMPUTE:
        traversal = [
            PC.TraversalSpec(
                name="computeToHost", type=vim.ComputeResource, path="host", skip=False
            )
        ]
        specs = [
            PC.PropertySpec(type=vim.ComputeResource, pathSet=["summary"]),
            PC.PropertySpec(type=vim.HostSystem, pathSet=_HOST_PATHS),
        ]
    elif entity.type in POOLS:
        traversal = [
            PC.TraversalSpec(
                name="poolToChildren",
                type=vim.ResourcePool,
                path="resourcePool",
                skip=False,
                selectSet=[PC.SelectionSpec(name="poolToChildren")],
            )
        ]
        specs = [PC.PropertySpec(type=vim.ResourcePool, pathSet=["vm"])]
    elif entity.type == "HostSystem":
        traversal = []
        specs = [PC.PropertySpec(type=vim.HostSystem, pathSet=_HOST_PATHS)]
    else:  # Datastore
        traversal = []
        specs = [PC.PropertySpec(type=vim.Datastore, pathSet=["vm"])]
    contents, missing = session.retrieve([entity], specs, traversal=traversal)
    if entity in missing:
        raise EntityNotFoundError(str(entity))
    by_ref = {ref_of(c.obj): props(c) for c in contents}
    _check_readable(contents)
    vms = frozenset(vm for values in by_ref.values() for vm in _refs(values.get("vm")))
    if entity.type in COMPUTE:
        hosts = [values for ref, values in by_ref.items() if ref.type == "HostSystem"]
        usage = _compute_usage(entity, by_ref[entity].get("summary"), hosts)
        return Scope(entity, vms, usage, _usage_notes(usage))
    if entity.type == "HostSystem":
        usage = _host_usage(entity, by_ref[entity])
        return Scope(entity, vms, usage, _usage_notes(usage))
    return Scope(entity, vms, None, [f"{entity.type} {entity.value} has no capacity figures"])


def _vm_scope(session: SoapSession, vm: MoRef) -> Scope:
    # runtime.host is nested, so no traversal can follow it; the VM's pool's owner's
    # hosts include it (and cost nothing more than reading the VM).
    traversal = placement_traversal(to_hosts=True)
    specs = [
        PC.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.host"]),
        PC.PropertySpec(type=vim.HostSystem, pathSet=_HOST_PATHS),
    ]
    contents, missing = session.retrieve([vm], specs, traversal=traversal)
    if vm in missing:
        raise EntityNotFoundError(str(vm))
    _check_readable(contents)
    by_ref = {ref_of(c.obj): props(c) for c in contents}
    host_obj = by_ref[vm].get("runtime.host")
    if host_obj is None:
        raise VSphereError(f"{vm} has no host: cannot tell which VMs share its capacity")
    host = ref_of(host_obj)
    if host not in by_ref:  # a template, or a VM outside any pool: read the host itself
        more, _ = session.retrieve(
            [host], [PC.PropertySpec(type=vim.HostSystem, pathSet=_HOST_PATHS)]
        )
        _check_readable(more)
        by_ref.update({ref_of(c.obj): props(c) for c in more})
    if host not in by_ref:
        raise VSphereError(f"the host {host} of {vm} vanished while reading it")
    usage = _host_usage(host, by_ref[host])
    notes = [f"{vm} is under its host {host.value}: scope and capacity are the host's"]
    return Scope(vm, frozenset(_refs(by_ref[host].get("vm"))), usage, notes + _usage_notes(usage))


def _container_scope(session: SoapSession, entity: MoRef) -> Scope:
    def read(conn: Connection) -> list[MoRef]:
        content = conn.content
        view = content.viewManager.CreateContainerView(
            conn.managed(entity), [vim.VirtualMachine], True
        )
        try:
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=view, skip=False)],
                propSet=[PC.PropertySpec(type=vim.view.ContainerView, pathSet=["view"])],
            )
            collector = content.propertyCollector
            result = collector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
            objects = list(result.objects or ()) if result is not None else []
            return _refs(props(objects[0]).get("view")) if objects else []
        finally:
            view.DestroyView()

    try:
        vms = session.call(read)
    except vmodl.fault.ManagedObjectNotFound:
        raise EntityNotFoundError(str(entity)) from None
    return Scope(
        entity, frozenset(vms), None, [f"{entity.type} {entity.value} has no capacity figures"]
    )


def _refs(objects: Iterable[Any] | None) -> list[MoRef]:
    return [ref_of(o) for o in objects or ()]


def _check_readable(contents: Sequence[Any]) -> None:
    """A property vCenter would not give (no permission...) is an error, not an empty scope."""
    for content in contents:
        for missing in content.missingSet or ():
            fault = missing.fault
            name = type(fault).__name__.rsplit(".", 1)[-1]
            raise VSphereError(f"cannot read {missing.path} of {ref_of(content.obj)}: {name}")


def _mb(value: Any) -> float | None:
    return None if value is None else float(value) / MB


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _sum(values: Sequence[Any]) -> float | None:
    # One host without a figure makes the total unknown, not smaller than it is.
    if not values or any(v is None for v in values):
        return None
    return float(sum(values))


def _compute_usage(entity: MoRef, summary: Any, hosts: Sequence[dict[str, Any]]) -> EntityUsage:
    stats = [h.get("summary.quickStats") for h in hosts]
    return EntityUsage(
        entity=entity,
        capacity=Resources(
            cpu_mhz=_num(getattr(summary, "totalCpu", None)),
            memory_mb=_mb(getattr(summary, "totalMemory", None)),
        ),
        used=Resources(
            cpu_mhz=_sum([getattr(s, "overallCpuUsage", None) for s in stats]),
            memory_mb=_sum([getattr(s, "overallMemoryUsage", None) for s in stats]),
        ),
    )


def _host_usage(host: MoRef, values: dict[str, Any]) -> EntityUsage:
    hardware = values.get("summary.hardware")
    stats = values.get("summary.quickStats")
    mhz, cores = getattr(hardware, "cpuMhz", None), getattr(hardware, "numCpuCores", None)
    return EntityUsage(
        entity=host,
        capacity=Resources(
            cpu_mhz=None if mhz is None or cores is None else float(mhz * cores),
            memory_mb=_mb(getattr(hardware, "memorySize", None)),
        ),
        used=Resources(
            cpu_mhz=_num(getattr(stats, "overallCpuUsage", None)),
            memory_mb=_num(getattr(stats, "overallMemoryUsage", None)),
        ),
    )


def _usage_notes(usage: EntityUsage) -> list[str]:
    unknown = [
        f"{kind} {what}"
        for kind, figures in (("capacity", usage.capacity), ("use", usage.used))
        for what, value in (("CPU", figures.cpu_mhz), ("memory", figures.memory_mb))
        if value is None
    ]
    return [f"{usage.entity} gives no {', '.join(unknown)}"] if unknown else []
