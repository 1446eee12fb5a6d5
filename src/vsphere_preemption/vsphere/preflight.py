"""Read-only probes of vCenter for `preemptctl check`: reachability, the certificate, the
login, our own privileges, tags and alarms. Nothing here changes vCenter.

The privileges are those of the calls this package makes (each `PrivilegeNeed` names its
call), asked of vCenter's AuthorizationManager for our own session
(`HasPrivilegeOnEntities`, which needs only System.Read on the entities): on every VM that
carries the tag, and on the root folder for the vCenter-wide ones.
"""

from __future__ import annotations

import socket
import ssl
from collections import Counter
from collections.abc import Sequence
from typing import Any

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.preflight import (
    NO_CLUSTER,
    PolicyTagFacts,
    PrivilegeFacts,
    PrivilegeNeed,
    TagFacts,
)
from vsphere_preemption.domain.selection import VIRTUAL_MACHINE
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.errors import TagNotFoundError, TLSVerificationError, VSphereError
from vsphere_preemption.vsphere.rest import NotFound
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import Connection, fault_text, props, ref_of

PC = vmodl.query.PropertyCollector

# Every privilege the worker's calls need, by the call (power.py, resume.py, guest.py,
# fields.py, and the reads). Global privileges are granted on the root folder only.
WORKER_PRIVILEGES = (
    PrivilegeNeed(
        "VirtualMachine.Interact.PowerOff",
        "power off and guest shutdown: PowerOffVM_Task, ShutdownGuest",
    ),
    PrivilegeNeed("VirtualMachine.Interact.Suspend", "suspend: SuspendVM_Task"),
    PrivilegeNeed("VirtualMachine.Interact.PowerOn", "resume: PowerOnVM_Task"),
    PrivilegeNeed(
        "VirtualMachine.Config.AdvancedConfig",
        "the guest notice: ReconfigVM_Task of a guestinfo extraConfig key",
    ),
    PrivilegeNeed("Global.SetCustomField", "the annotation: CustomFieldsManager.SetField"),
    PrivilegeNeed(
        "Global.ManageCustomFields",
        "create the annotation field: CustomFieldsManager.AddFieldDefinition",
        on_vms=False,
    ),
    PrivilegeNeed("System.Read", "read VMs, tags, use and alarms"),
    PrivilegeNeed("System.Read", "read VMs, tags, use and alarms", on_vms=False),
)

ADMIN_ROLE_ID = -1  # vCenter's Administrator role: it holds every privilege the server has
PROBE_TIMEOUT = 10.0


def reach(config: VCenterConfig, timeout: float = PROBE_TIMEOUT) -> None:
    """Open a TCP connection to vCenter, or raise VSphereError saying why not."""
    try:
        with socket.create_connection((config.host.strip("[]"), config.port), timeout=timeout):
            return
    except OSError as exc:
        raise VSphereError(f"cannot reach vCenter {config.address}: {fault_text(exc)}") from None


def verify_certificate(config: VCenterConfig, timeout: float = PROBE_TIMEOUT) -> None:
    """A TLS handshake as the worker makes it (VCENTER_CA_BUNDLE, VCENTER_INSECURE), or
    TLSVerificationError / VSphereError."""
    context = config.ssl_context()
    host = config.host.strip("[]")
    try:
        with (
            socket.create_connection((host, config.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return
    except ssl.SSLCertVerificationError as exc:
        raise TLSVerificationError(
            f"cannot verify the TLS certificate of vCenter {config.address}: "
            f"{exc.verify_message or exc.reason}"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise VSphereError(
            f"no TLS handshake with vCenter {config.address}: {fault_text(exc)}"
        ) from None


class Preflight:
    """The reads of the check, on a client the caller opened (and closes)."""

    def __init__(self, client: VSphereClient) -> None:
        self._client = client
        self._session = client.session

    # -- privileges -------------------------------------------------------------------------

    def privileges(
        self, vms: Sequence[VmRef], labels: dict[VmRef, str] | None = None
    ) -> PrivilegeFacts:
        """Which of WORKER_PRIVILEGES our session lacks, on `vms` and on the root folder."""
        labels = labels or {}
        vm_ids = sorted({n.priv_id for n in WORKER_PRIVILEGES if n.on_vms})
        root_ids = sorted({n.priv_id for n in WORKER_PRIVILEGES if not n.on_vms})
        all_ids = sorted(set(vm_ids) | set(root_ids))

        def ask(conn: Connection) -> tuple[VmRef, str, list[Any], list[str]]:
            content = conn.content
            manager = content.authorizationManager
            session = content.sessionManager.currentSession
            entities = [
                content.rootFolder,
                *(conn.managed(v) for v in vms if v.type == VIRTUAL_MACHINE),
            ]
            answer = manager.HasPrivilegeOnEntities(
                entity=entities, sessionId=session.key, privId=all_ids
            )
            known = _known_privileges(manager)
            return ref_of(content.rootFolder), str(session.userName), list(answer or ()), known

        with self._session.translating("ask vCenter for our privileges"):
            root, user, answer, known = self._session.call(ask)
        missing: dict[str, list[str]] = {}
        for entity_privileges in answer:
            ref = ref_of(entity_privileges.entity)
            if ref == root:
                # No VM tagged yet: the VM privileges are asked of the root folder instead,
                # where a role propagated to every VM is usually granted.
                wanted = set(root_ids) | (set() if vms else set(vm_ids))
                label = "the root folder"
            else:
                wanted, label = set(vm_ids), labels.get(ref, f"{ref.type}:{ref.value}")
            for availability in entity_privileges.privAvailability or ():
                if availability.privId in wanted and not availability.isGranted:
                    missing.setdefault(str(availability.privId), []).append(label)
        unknown = tuple(p for p in all_ids if known and p not in known)
        return PrivilegeFacts(
            user=user,
            needs=WORKER_PRIVILEGES,
            vms_checked=sum(1 for v in vms if v.type == VIRTUAL_MACHINE),
            missing={k: tuple(v) for k, v in sorted(missing.items())},
            unknown=unknown,
        )

    # -- tags -------------------------------------------------------------------------------

    def tag(self, tag: str) -> tuple[TagFacts, list[VmRef], dict[VmRef, str]]:
        """Whether `tag` exists and how many VMs carry it per cluster; and those VMs, with a
        label each (name and moref), for the privilege check."""
        try:
            tagged = self._client.tagged_objects(tag)
        except TagNotFoundError:
            return TagFacts(tag, exists=False), [], {}
        vms = [r for r in tagged if r.type == VIRTUAL_MACHINE]
        states = self._client.read_vms(vms)
        per_cluster = Counter(s.cluster or NO_CLUSTER for s in states.values())
        labels = {r: f"{s.name} ({r.value})" for r, s in states.items()}
        facts = TagFacts(
            tag, exists=True, vms_per_cluster=dict(per_cluster), non_vms=len(tagged) - len(vms)
        )
        return facts, list(states), labels

    def policy_tags(
        self, categories: Sequence[str], named: Sequence[tuple[str, str]]
    ) -> PolicyTagFacts:
        """Which of the policy's categories, and of the (category, tag) it names, exist."""
        tagging = self._client.tagging
        with self._session.translating("read the tag categories"):
            found = tagging.categories(fresh=True)
            names_in: dict[str, set[str]] = {}
            for category in {c for c, _ in named if c in found}:
                names: set[str] = set()
                for tag_id in tagging.tags_of_category(found[category]):
                    try:
                        names.add(str(tagging.tag_info(tag_id).get("name")))
                    except NotFound:
                        continue  # deleted while we listed
                names_in[category] = names
        return PolicyTagFacts(
            categories=tuple(categories),
            missing_categories=tuple(c for c in categories if c not in found),
            tags=tuple(named),
            missing_tags=tuple(
                (c, t) for c, t in named if c in found and t not in names_in.get(c, set())
            ),
        )

    # -- alarms -----------------------------------------------------------------------------

    def alarms(self) -> dict[str, list[str]]:
        """Every alarm vCenter has, by name, with the entities it is defined on
        (`name (Type:moref)`), in two requests whatever their number."""

        def read(conn: Connection) -> list[Any]:
            manager = conn.content.alarmManager
            alarms = manager.GetAlarm(entity=None) or []
            if not alarms:
                return []
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=a, skip=False) for a in alarms],
                propSet=[PC.PropertySpec(type=vim.alarm.Alarm, pathSet=["info"])],
            )
            return list(conn.content.propertyCollector.RetrieveContents([spec]) or [])

        with self._session.translating("read the alarms"):
            contents = self._session.call(read)
        where: dict[str, list[VmRef]] = {}
        for content in contents:
            info = props(content).get("info")
            if info is None:
                continue
            entity = ref_of(info.entity) if info.entity is not None else None
            where.setdefault(str(info.name), []).extend([entity] if entity else [])
        entities = sorted({e for es in where.values() for e in es}, key=str)
        with self._session.translating("read the alarms' entities"):
            names = self._names(entities)
        return {
            alarm: [f"{names.get(e, '?')} ({e.type}:{e.value})" for e in refs]
            for alarm, refs in sorted(where.items())
        }

    def _names(self, refs: Sequence[VmRef]) -> dict[VmRef, str]:
        if not refs:
            return {}
        contents, _ = self._session.retrieve(
            refs, [PC.PropertySpec(type=vim.ManagedEntity, pathSet=["name"])]
        )
        return {ref_of(c.obj): str(props(c).get("name", "")) for c in contents}


def _known_privileges(manager: Any) -> list[str]:
    """The privilege ids this vCenter defines: its privilege list, or, where that is not
    served (vcsim), those of the Administrator role, which holds them all."""
    listed = [str(p.privId) for p in manager.privilegeList or ()]
    if listed:
        return listed
    for role in manager.roleList or ():
        if role.roleId == ADMIN_ROLE_ID:
            return [str(p) for p in role.privilege or ()]
    return []
