"""Custom attributes (custom fields) on VMs: the preemption annotation lives in one.

The field definition is looked up first and created only if missing, so a user
with the SetCustomField privilege alone can annotate once an administrator made the
field. Two workers that both find it missing race to create it: the loser gets
`DuplicateName`, reads the definitions again and uses the winner's. Field keys are
cached; a key that stops working (field deleted and re-created) is looked up again.
`SetField` with the same value twice leaves the same value: annotating is idempotent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vsphere_preemption.domain.model import AnnotateOutcome, VmIssue, VmRef
from vsphere_preemption.domain.selection import VIRTUAL_MACHINE, dedupe
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.vsphere.reads import read_power_states
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import Connection, SoapSession, props, ref_of
from vsphere_preemption.vsphere.tasks import Fanout

log = get_logger(__name__)

PC = vmodl.query.PropertyCollector


def _usable(definition: Any, name: str) -> bool:
    """A field of that name for VirtualMachine, or one for every type (no type)."""
    mo_type = definition.managedObjectType
    return bool(
        definition.name == name
        and (mo_type is None or getattr(mo_type, "_wsdlName", None) == VIRTUAL_MACHINE)
    )


class CustomFields:
    def __init__(self, session: SoapSession) -> None:
        self._session = session
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()  # one lookup/creation at a time per client

    def definitions(self) -> list[Any]:
        def read(conn: Connection) -> list[Any]:
            manager = conn.content.customFieldsManager
            return [ref_of(manager)] if manager is not None else []

        manager_refs = self._session.call(read)
        if not manager_refs:
            raise VSphereError("this vCenter has no custom fields manager (is it an ESXi host?)")
        contents, _ = self._session.retrieve(
            manager_refs, [PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"])]
        )
        return list(props(contents[0]).get("field") or []) if contents else []

    def key(self, name: str, *, fresh: bool = False) -> int:
        """The key of field `name` for VMs, created if missing."""
        with self._lock:
            if not fresh and name in self._keys:
                return self._keys[name]
            key = self._find(name)
            if key is None:
                key = self._create(name)
            self._keys[name] = key
            return key

    def _find(self, name: str) -> int | None:
        return next((int(d.key) for d in self.definitions() if _usable(d, name)), None)

    def _create(self, name: str) -> int:
        def add(conn: Connection) -> Any:
            return conn.content.customFieldsManager.AddFieldDefinition(
                name=name, moType=vim.VirtualMachine
            )

        try:
            created = self._session.call(add)
        except vim.fault.DuplicateName:
            # Another worker created it between our read and our add: use theirs.
            log.info("vcenter.custom_field_created_concurrently", field=name)
            key = self._find(name)
            if key is None:
                raise VSphereError(
                    f"custom field {name!r} exists, but not for virtual machines"
                ) from None
            return key
        except vmodl.MethodFault as fault:
            raise self._session.error(fault, f"create custom field {name!r}") from None
        log.info("vcenter.custom_field_created", field=name, key=created.key)
        return int(created.key)

    def set(
        self,
        vms: Sequence[VmRef],
        name: str,
        value: str,
        *,
        fanout: Fanout,
    ) -> AnnotateOutcome:
        refs = dedupe(vms)
        order = {r: i for i, r in enumerate(refs)}
        failed: dict[VmRef, str] = {
            r: f"not a virtual machine ({r.type})" for r in refs if r.type != VIRTUAL_MACHINE
        }
        # Which VMs exist, in one read: a VM deleted after selection is reported, not
        # sent to SetField (which vcsim cannot survive: it panics holding a lock).
        candidates = [r for r in refs if r not in failed]
        _, missing = read_power_states(self._session, candidates)
        failed.update({r: "virtual machine not found (deleted?)" for r in missing})
        todo = [r for r in candidates if r not in missing]
        annotated: set[VmRef] = set()
        key = self.key(name)
        for attempt in (1, 2):
            stale_key: list[VmRef] = []
            with ThreadPoolExecutor(
                fanout.max_concurrency, thread_name_prefix="vsphere-annotate"
            ) as pool:
                results = list(pool.map(lambda r, k=key: self._set_one(r, k, value), todo))
            for ref, problem in zip(todo, results, strict=True):
                if problem is None:
                    annotated.add(ref)
                elif problem == "stale key" and attempt == 1:
                    stale_key.append(ref)
                else:
                    failed[ref] = problem
            fanout.heartbeat(f"annotate: {len(annotated)} of {len(refs)} VMs done")
            if not stale_key:
                break
            log.info("vcenter.custom_field_key_stale", field=name, key=key)
            key, todo = self.key(name, fresh=True), stale_key
        return AnnotateOutcome(
            annotated=sorted(annotated, key=order.__getitem__),
            failed=[VmIssue(r, failed[r]) for r in sorted(failed, key=order.__getitem__)],
        )

    def _set_one(self, ref: VmRef, key: int, value: str) -> str | None:
        """None when set, else why not. Transport errors raise (the whole call is retried)."""

        def set_field(conn: Connection) -> None:
            conn.content.customFieldsManager.SetField(
                entity=conn.managed(ref), key=key, value=value
            )

        try:
            self._session.call(set_field)
        except vmodl.fault.ManagedObjectNotFound:
            return "virtual machine not found (deleted?)"
        except vmodl.fault.InvalidArgument as fault:
            if "key" in str(getattr(fault, "invalidProperty", "") or ""):
                return "stale key"
            return f"cannot set the custom field: {self._session.text(fault)}"
        except vmodl.MethodFault as fault:
            return f"cannot set the custom field: {self._session.text(fault)}"
        return None
