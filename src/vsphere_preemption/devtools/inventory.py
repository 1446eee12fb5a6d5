"""Prepare an inventory (vcsim or a lab vCenter) for tests, the demo and benchmarks.

Through the same sessions and APIs as the worker: tags via the tagging REST API,
VMs via pyVmomi. Idempotent where that makes sense (a category or tag that exists is
reused), so the demo can run twice against the same simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.selection import VmState, moref_key
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.vsphere.reads import TaskPacing, TaskState, wait_for_tasks
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import Connection, props, ref_of

PC = vmodl.query.PropertyCollector

DEFAULT_CATEGORY = "vsphere-preemption"


class Inventory:
    def __init__(self, client: VSphereClient, *, task_timeout: float = 120.0) -> None:
        self.client = client
        self._session = client.session
        # A simulator answers at once: look often.
        self._pacing = TaskPacing(poll_interval=0.05, task_timeout=timedelta(seconds=task_timeout))

    # -- reading ----------------------------------------------------------------------

    def objects(self, type_name: str) -> list[VmRef]:
        """Every managed object of a type (`VirtualMachine`, `HostSystem`, `Datastore`...)."""

        def list_view(conn: Connection) -> list[VmRef]:
            content = conn.content
            view = content.viewManager.CreateContainerView(
                content.rootFolder, [getattr(vim, type_name)], True
            )
            try:
                spec = PC.FilterSpec(
                    objectSet=[PC.ObjectSpec(obj=view, skip=False)],
                    propSet=[PC.PropertySpec(type=vim.view.ContainerView, pathSet=["view"])],
                )
                result = content.propertyCollector.RetrievePropertiesEx(
                    [spec], PC.RetrieveOptions()
                )
                found = props(result.objects[0]).get("view") or [] if result.objects else []
                return [ref_of(o) for o in found]
            finally:
                view.DestroyView()

        with self._session.translating(f"list {type_name} objects"):
            refs = self._session.call(list_view)
        return sorted(refs, key=lambda r: moref_key(r.value))

    def names(self, type_name: str) -> dict[str, VmRef]:
        """Every managed object of a type by its name (a name held twice keeps the first)."""
        refs = self.objects(type_name)

        def read(conn: Connection) -> dict[VmRef, str]:
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=conn.managed(r), skip=False) for r in refs],
                propSet=[PC.PropertySpec(type=getattr(vim, type_name), pathSet=["name"])],
            )
            result = conn.content.propertyCollector.RetrievePropertiesEx(
                [spec], PC.RetrieveOptions()
            )
            return {ref_of(o.obj): str(props(o).get("name")) for o in result.objects or ()}

        if not refs:
            return {}
        with self._session.translating(f"read the names of {type_name} objects"):
            found = self._session.call(read)
        named: dict[str, VmRef] = {}
        for ref in refs:
            if ref in found:
                named.setdefault(found[ref], ref)
        return named

    def vms(self) -> list[VmState]:
        """Every VM with its power state and placement, by name."""
        states = self.client.read_vms(self.objects("VirtualMachine"))
        return sorted(states.values(), key=lambda s: (s.name, moref_key(s.ref.value)))

    # -- tags -------------------------------------------------------------------------

    def ensure_tag(self, tag: str, category: str = DEFAULT_CATEGORY) -> str:
        """The id of tag `tag` in `category`, both created if missing."""
        category_id = self.client.tagging.ensure_category(category)
        return self.client.tagging.ensure_tag(category_id, tag)

    def tag(self, tag: str, objects: Sequence[VmRef], category: str = DEFAULT_CATEGORY) -> str:
        """Attach `tag` (created if missing) to `objects`, VMs or not; returns the tag id."""
        tag_id = self.ensure_tag(tag, category)
        self.client.tagging.attach(tag_id, objects)
        return tag_id

    def delete_tag(self, tag_id: str) -> None:
        self.client.tagging.delete_tag(tag_id)

    def untag(self, tag_id: str, objects: Sequence[VmRef]) -> None:
        for obj in objects:
            self.client.tagging.detach(tag_id, obj)

    # -- power ------------------------------------------------------------------------

    def power_on(self, vms: Sequence[VmRef]) -> None:
        self._tasks(vms, "PowerOnVM_Task", tolerate="poweredOn")

    def power_off(self, vms: Sequence[VmRef]) -> None:
        self._tasks(vms, "PowerOffVM_Task", tolerate="poweredOff")

    def suspend(self, vms: Sequence[VmRef]) -> None:
        self._tasks(vms, "SuspendVM_Task", tolerate="suspended")

    def _tasks(self, vms: Sequence[VmRef], method: str, *, tolerate: str) -> None:
        """Start `method` on every VM, then wait for all the tasks; raise if one fails."""
        tasks: list[VmRef] = []
        with self._session.translating(f"{method} on {len(vms)} VMs"):
            for ref in vms:
                try:
                    task = self._session.call(partial(_invoke, ref=ref, method=method))
                except vim.fault.InvalidPowerState as fault:
                    if _already(fault, tolerate):
                        continue
                    raise
                tasks.append(ref_of(task))
            self._wait(tasks, method, tolerate)

    def _wait(self, tasks: list[VmRef], method: str, tolerate: str) -> None:
        def on_poll(ended: dict[VmRef, TaskState], missing: set[VmRef]) -> None:
            if missing:
                raise VSphereError(f"{method}: tasks vanished: {sorted(t.value for t in missing)}")
            errors: list[Any] = [
                s.error
                for s in ended.values()
                if s.state == "error" and not _already(s.error, tolerate)
            ]
            if errors:
                raise VSphereError(f"{method} failed: {self._session.text(errors[0])}")

        running = wait_for_tasks(self._session, tasks, on_poll, self._pacing)
        if running:
            raise VSphereError(f"{method}: {len(running)} tasks still running")


def _invoke(conn: Connection, *, ref: VmRef, method: str) -> Any:
    return getattr(conn.managed(ref), method)()


def _already(fault: Any, state: str) -> bool:
    """The VM is in the state asked for already (vcsim says so in the task, vCenter at once)."""
    return isinstance(fault, vim.fault.InvalidPowerState) and fault.existingState == state
