"""Everything a plan needs, read from vCenter in a number of requests that no VM count changes.

`gather(tag, entity, categories)` reads:
- tags (REST): the tags called `tag` (cached name lookup), the categories (cached, else
  1 + C), the tags of each requested category (1 per category), each of those tags'
  name and category (cached by id, else 1 per tag), then what is attached to all of
  them in one `list-attached-objects-on-tags` (never cached: membership is the fact
  that changes). Names are cached for the client's `tag_cache_ttl` (5 min): a tag
  renamed within that time keeps its old name in `VmFacts.tags` until then;
- the scope (SOAP, `scope.py`): 1 to 3 requests, whatever the entity;
- the VMs' facts (SOAP): one batched RetrievePropertiesEx (+ continuation pages) for
  every tagged VM plus the custom fields manager (the annotation's field key), then
  one for the hosts they run on (core MHz for the CPU allocation) unless every one of
  them was read within the client's `tag_cache_ttl` (`HostSpeeds`: a host's core MHz is
  its hardware's, the same from run to run), so a warm worker reads the facts in one.

Usage figures (`VmFacts.usage`), from `summary.quickStats` read as a whole object so that
a figure vCenter leaves unset stays None instead of a 0 that a nested property path
would report (vcsim does just that):
- CPU: `overallCpuUsage` (MHz); memory: `guestMemoryUsage` (MB, active guest memory),
  or `hostMemoryUsage` (MB, consumed on the host) where the first is unset;
- only for powered-on VMs: a VM that is off or suspended uses no CPU and vCenter's
  figures for it are stale or zero, so both are None; a powered-on VM's 0 stays 0
  (vCenter reports 0 until its first statistics interval after power-on; the plan
  cannot tell that 0 from idleness, and neither can vCenter). vcsim cannot show this
  case: it serializes a 0 as unset (Go `omitempty`), so there a 0 reads as None.
Allocation: `config.hardware.numCPU` x the host's `summary.hardware.cpuMhz`, and
`config.hardware.memoryMB`; None where either is unknown (no config, no host).
With the allocation basis (`targets.basis: allocation`), the entity's use is the sum of the
allocations of the powered-on VMs under it (`allocated_use`: one batched read of them all, one
of their hosts), its capacity vCenter's as before.
Boot time: `runtime.bootTime`, else `summary.runtime.bootTime` (vcsim fills only the
latter), as an aware UTC datetime.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vsphere_preemption.domain.model import EntityUsage, MoRef, Resources, TagName, VmFacts
from vsphere_preemption.domain.policy import UseBasis
from vsphere_preemption.domain.selection import VIRTUAL_MACHINE, PowerState, moref_key
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.errors import CategoryNotFoundError
from vsphere_preemption.vsphere.rest import NotFound, TaggingRest
from vsphere_preemption.vsphere.scope import Scope, read_scope
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import (
    Connection,
    SoapSession,
    check_power_state,
    props,
    ref_of,
)
from vsphere_preemption.wire import ANNOTATION_KEY

PC = vmodl.query.PropertyCollector
log = get_logger(__name__)

_VM_PATHS = [
    "name",
    "runtime.powerState",
    "runtime.bootTime",
    "runtime.host",
    "summary.runtime.bootTime",
    "summary.quickStats",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "customValue",
]


@dataclass(frozen=True)
class Gathered:
    """What vCenter says, for the plan: facts only, no decision."""

    entity: MoRef | None  # the alarmed entity; None: the whole vCenter
    # every VM carrying `tag` (preemptible) or a tag of a requested category, by name
    facts: list[VmFacts]
    non_vms: list[MoRef]  # objects carrying `tag` that are not VMs (hosts, datastores...)
    usage: EntityUsage | None  # the entity's capacity and use; None where it has none
    scope_vms: int | None = None  # how many VMs the entity holds, tagged or not
    # tagged VMs that vCenter no longer has (a tag association outlived its VM)
    vanished: list[MoRef] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a figure is missing, and such


class HostSpeeds:
    """Each host's core MHz (`summary.hardware.cpuMhz`), remembered for `ttl` seconds.

    The figure is the host's hardware: it does not change from one run to the next, so a
    worker reads it once per host and `ttl` instead of once per plan. Thread-safe (the
    activities share one client). A host that gave no figure is asked again next time.
    """

    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, float]] = {}  # host moref -> (MHz, read at)

    def of(self, session: SoapSession, hosts: set[Any]) -> dict[str, float]:
        """Core MHz of each host of `hosts` (pyVmomi objects) that has a figure; one request
        for those not read within `ttl`, none when all were."""
        now = self._clock()
        known: dict[str, float] = {}
        with self._lock:
            for host in hosts:
                entry = self._known.get(host._moId)
                if entry is not None and now - entry[1] < self._ttl:
                    known[host._moId] = entry[0]
        unknown = {h for h in hosts if h._moId not in known}
        read = _host_mhz(session, unknown)
        with self._lock:
            self._known.update({host: (mhz, now) for host, mhz in read.items()})
        return known | read


@dataclass(frozen=True)
class _Tags:
    """Who carries which tag: VM -> the TagNames it carries, among those asked for."""

    preemptible: set[MoRef]
    others: set[MoRef]  # objects carrying `tag` that are not VMs
    members: dict[MoRef, set[TagName]]


def read_tags(tagging: TaggingRest, tag: str, categories: Sequence[str]) -> _Tags:
    """The objects carrying `tag` or a tag of one of `categories`; raises if one is unknown.

    Read again, once, when the REST session was replaced during the read: the names were
    then resolved (or cached) in a session vCenter forgot, maybe before a restart that gave
    the tags new ids, and `list-attached-objects-on-tags` answers nothing, not 404, for an
    id it does not know: every tagged VM would silently be missed.
    """
    renewals = tagging.renewals
    tags = _read_tags(tagging, tag, categories)
    if tagging.renewals == renewals:
        return tags
    log.info("vcenter.tags_reread_after_relogin", tag=tag)
    return _read_tags(tagging, tag, categories)


def _read_tags(tagging: TaggingRest, tag: str, categories: Sequence[str]) -> _Tags:
    preemptible_ids = tagging.find_tag_ids(tag)  # TagNotFoundError if none
    category_ids, group_ids = _group_tags(tagging, categories)
    infos: dict[str, dict[str, Any]] = {}
    for tag_id in dict.fromkeys([*preemptible_ids, *group_ids]):
        try:
            infos[tag_id] = tagging.tag_info(tag_id)
        except NotFound:
            continue  # deleted since we listed it: it carries nothing any more
    if any(str(i.get("category_id")) not in category_ids.values() for i in infos.values()):
        category_ids = tagging.categories(fresh=True)  # `tag`'s category is newer than the cache
    category_names = {cid: name for name, cid in category_ids.items()}
    names = {
        tag_id: TagName(
            category=category_names.get(str(info.get("category_id")), ""),
            name=str(info.get("name", "")),
        )
        for tag_id, info in infos.items()
    }
    return _attached(tagging.objects_on_tags(list(names)), names, preemptible_ids)


def _group_tags(
    tagging: TaggingRest, categories: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """Every category's ID by name, and the IDs of the tags of the policy's categories."""
    category_ids = tagging.categories()
    if any(name not in category_ids for name in categories):
        category_ids = tagging.categories(fresh=True)  # made since we cached them?
    group_ids: list[str] = []
    for name in dict.fromkeys(categories):
        if name not in category_ids:
            raise CategoryNotFoundError(name)
        group_ids += tagging.tags_of_category(category_ids[name])
    return category_ids, group_ids


def _attached(
    attached: dict[str, list[MoRef]], names: dict[str, TagName], preemptible_ids: Sequence[str]
) -> _Tags:
    """The tagged objects: VMs and others carrying the tag, and every VM's tags by name."""
    preemptible: set[MoRef] = set()
    others: set[MoRef] = set()
    members: dict[MoRef, set[TagName]] = {}
    for tag_id, objects in attached.items():
        if tag_id not in names:
            continue
        for obj in objects:
            if tag_id in preemptible_ids:
                (preemptible if obj.type == VIRTUAL_MACHINE else others).add(obj)
            if obj.type == VIRTUAL_MACHINE:
                members.setdefault(obj, set()).add(names[tag_id])
    return _Tags(preemptible, others, members)


def gather(
    session: SoapSession,
    tagging: TaggingRest,
    tag: str,
    entity: MoRef | None,
    categories: Sequence[str],
    *,
    page_size: int | None = None,
    basis: UseBasis = UseBasis.USAGE,
    speeds: HostSpeeds | None = None,
) -> Gathered:
    speeds = speeds if speeds is not None else HostSpeeds(ttl=0.0)
    tags = read_tags(tagging, tag, categories)
    scope = read_scope(session, entity) if entity is not None else None
    if scope is not None and basis is UseBasis.ALLOCATION:
        scope = allocated_use(session, scope, page_size=page_size, speeds=speeds)
    vms = sorted(tags.members, key=lambda r: moref_key(r.value))
    facts, vanished = _read_facts(session, vms, page_size=page_size, speeds=speeds)
    result: list[VmFacts] = []
    for ref in vms:
        if ref not in facts:
            continue
        base = facts[ref]
        result.append(
            VmFacts(
                ref=ref,
                name=base.name,
                power_state=base.power_state,
                in_scope=scope is None or ref in scope.vms,
                tags=frozenset(tags.members[ref]),
                boot_time=base.boot_time,
                usage=base.usage,
                allocation=base.allocation,
                host=base.host,
                preempted_by_us=base.preempted_by_us,
                preemptible=ref in tags.preemptible,
            )
        )
    result.sort(key=lambda f: (f.name, moref_key(f.ref.value)))
    notes = list(scope.notes) if scope is not None else ["the whole vCenter: no capacity figures"]
    return Gathered(
        entity=entity,
        facts=result,
        non_vms=sorted(tags.others, key=lambda r: (r.type, moref_key(r.value))),
        usage=scope.usage if scope is not None else None,
        scope_vms=len(scope.vms) if scope is not None else None,
        vanished=sorted(vanished, key=lambda r: moref_key(r.value)),
        notes=notes,
    )


_ALLOCATION_PATHS = [
    "runtime.powerState",
    "runtime.host",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
]


def allocated_use(
    session: SoapSession,
    scope: Scope,
    *,
    page_size: int | None = None,
    speeds: HostSpeeds | None = None,
) -> Scope:
    """`scope` with its use replaced by the allocations of its powered-on VMs.

    Capacity stays vCenter's. A powered-on VM without a figure makes that resource's use
    unknown (None), not smaller than it is, as a host without quick stats does.
    """
    if scope.usage is None:
        return scope  # no capacity to judge a target against: nothing to count
    vms = sorted(scope.vms, key=lambda r: moref_key(r.value))
    read: dict[MoRef, dict[str, Any]] = {}
    if vms:
        contents, _ = session.retrieve(
            vms,
            [PC.PropertySpec(type=vim.VirtualMachine, pathSet=_ALLOCATION_PATHS)],
            page_size=page_size,
        )
        read = {ref_of(c.obj): props(c) for c in contents}  # a VM gone meanwhile: not counted
    on = PowerState.POWERED_ON
    running = [v for v in read.values() if str(v.get("runtime.powerState")) == on]
    speeds = speeds if speeds is not None else HostSpeeds(ttl=0.0)
    host_mhz = speeds.of(session, {v.get("runtime.host") for v in running} - {None})
    cpu: list[float | None] = []
    memory: list[float | None] = []
    for v in running:
        host = v.get("runtime.host")
        mhz = host_mhz.get(host._moId) if host is not None else None
        cpus, mb = v.get("config.hardware.numCPU"), v.get("config.hardware.memoryMB")
        cpu.append(float(cpus) * mhz if cpus is not None and mhz is not None else None)
        memory.append(float(mb) if mb is not None else None)
    used = Resources(cpu_mhz=_total(cpu), memory_mb=_total(memory))
    note = f"{scope.entity}'s use by allocation: {len(running)} powered-on VM(s) of {len(read)}"
    usage = EntityUsage(entity=scope.usage.entity, capacity=scope.usage.capacity, used=used)
    return Scope(scope.entity, scope.vms, usage, [*scope.notes, note])


def _total(values: Sequence[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return float(sum(v for v in values if v is not None))


def _read_facts(
    session: SoapSession, vms: Sequence[MoRef], *, page_size: int | None, speeds: HostSpeeds
) -> tuple[dict[MoRef, VmFacts], set[MoRef]]:
    """Facts of each VM that exists (in_scope, tags, preemptible left to the caller)."""
    if not vms:
        return {}, set()
    manager = session.call(_fields_manager)
    objects = [*vms, manager] if manager is not None else list(vms)
    contents, missing = session.retrieve(
        objects,
        [
            PC.PropertySpec(type=vim.VirtualMachine, pathSet=_VM_PATHS),
            PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"]),
        ],
        page_size=page_size,
    )
    values = {ref_of(c.obj): (props(c), c) for c in contents}
    key = _annotation_key(values[manager][0].get("field") if manager in values else None)
    read = {ref: v for ref, (v, c) in values.items() if ref.type == VIRTUAL_MACHINE}
    for ref, (_, content) in values.items():
        check_power_state(ref, content)
    host_mhz = speeds.of(session, {v.get("runtime.host") for v in read.values()} - {None})
    facts = {ref: _facts(ref, v, key, host_mhz) for ref, v in read.items()}
    return facts, {r for r in missing if r.type == VIRTUAL_MACHINE}


def _fields_manager(conn: Connection) -> MoRef | None:
    manager = conn.content.customFieldsManager
    return ref_of(manager) if manager is not None else None


def _annotation_key(definitions: Any) -> int | None:
    for definition in definitions or ():
        mo_type = definition.managedObjectType
        if definition.name == ANNOTATION_KEY and (
            mo_type is None or getattr(mo_type, "_wsdlName", None) == VIRTUAL_MACHINE
        ):
            return int(definition.key)
    return None


def _host_mhz(session: SoapSession, hosts: set[Any]) -> dict[str, float]:
    """Core MHz of each host, in one request for all of them."""
    if not hosts:
        return {}
    contents, _ = session.retrieve(
        [ref_of(h) for h in hosts],
        [PC.PropertySpec(type=vim.HostSystem, pathSet=["summary.hardware.cpuMhz"])],
    )
    found: dict[str, float] = {}
    for content in contents:
        mhz = props(content).get("summary.hardware.cpuMhz")
        if mhz:
            found[content.obj._moId] = float(mhz)
    return found


def _facts(ref: MoRef, v: dict[str, Any], key: int | None, host_mhz: dict[str, float]) -> VmFacts:
    power_state = str(v["runtime.powerState"])
    host = v.get("runtime.host")
    host_id = host._moId if host is not None else None
    cpus = v.get("config.hardware.numCPU")
    memory = v.get("config.hardware.memoryMB")
    mhz = host_mhz.get(host_id) if host_id else None
    return VmFacts(
        ref=ref,
        name=str(v.get("name", "")),
        power_state=power_state,
        in_scope=True,
        boot_time=_utc(v.get("runtime.bootTime") or v.get("summary.runtime.bootTime")),
        usage=_usage(v.get("summary.quickStats"), power_state),
        allocation=Resources(
            cpu_mhz=float(cpus) * mhz if cpus is not None and mhz is not None else None,
            memory_mb=float(memory) if memory is not None else None,
        ),
        host=host_id,
        preempted_by_us=_preempted_by_us(v.get("customValue"), key),
    )


def _utc(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def _usage(stats: Any, power_state: str) -> Resources:
    if stats is None or power_state != PowerState.POWERED_ON:
        return Resources()
    cpu = stats.overallCpuUsage
    memory = stats.guestMemoryUsage if stats.guestMemoryUsage is not None else stats.hostMemoryUsage
    return Resources(
        cpu_mhz=float(cpu) if cpu is not None else None,
        memory_mb=float(memory) if memory is not None else None,
    )


def _preempted_by_us(custom_values: Any, key: int | None) -> bool:
    if key is None:
        return False
    for item in custom_values or ():
        if int(item.key) == key:
            try:
                annotation = json.loads(str(item.value))
            except ValueError:
                return False  # someone else's text in our field: not our mark
            return isinstance(annotation, dict) and annotation.get("preempted") is True
    return False
