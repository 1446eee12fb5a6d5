"""Batched reads: VM states, power states, marks and task states, one request for any number.

Placement comes in the same request: a traversal VM -> resourcePool -> owner reaches
the compute resource (cluster, or a standalone host's) so its name costs no extra
round trip. (`runtime.host` -> `parent` would be the obvious path, but a traversal
can only follow a top-level property, and `runtime.host` is nested.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.domain.resume import VmNow
from vsphere_preemption.domain.selection import VmState
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import SoapSession, check_power_state, props, ref_of

PC = vmodl.query.PropertyCollector

_VM_PATHS = ["name", "runtime.powerState", "runtime.host", "resourcePool"]


def placement_traversal(*, to_hosts: bool = False) -> list[Any]:
    """From a VM to its pool and the pool's owner (the cluster or host); `to_hosts`: on to
    the owner's hosts too."""
    onward = [PC.SelectionSpec(name="computeToHost")] if to_hosts else []
    traversal = [
        PC.TraversalSpec(
            name="vmToPool",
            type=vim.VirtualMachine,
            path="resourcePool",
            skip=False,
            selectSet=[PC.SelectionSpec(name="poolToOwner")],
        ),
        PC.TraversalSpec(
            name="poolToOwner", type=vim.ResourcePool, path="owner", skip=False, selectSet=onward
        ),
    ]
    if to_hosts:
        traversal.append(
            PC.TraversalSpec(
                name="computeToHost", type=vim.ComputeResource, path="host", skip=False
            )
        )
    return traversal


def read_vm_states(
    session: SoapSession, refs: Sequence[VmRef], *, page_size: int | None = None
) -> tuple[dict[VmRef, VmState], set[VmRef]]:
    """Name, power state, host and cluster of every VM in `refs`; and those that vanished."""
    if not refs:
        return {}, set()
    contents, missing = session.retrieve(
        refs,
        [
            PC.PropertySpec(type=vim.VirtualMachine, pathSet=_VM_PATHS),
            PC.PropertySpec(type=vim.ResourcePool, pathSet=["owner"]),
            PC.PropertySpec(type=vim.ComputeResource, pathSet=["name"]),
        ],
        page_size=page_size,
        traversal=placement_traversal(),
    )
    vms: dict[VmRef, dict[str, Any]] = {}
    pool_owner: dict[str, str] = {}
    compute_name: dict[str, str] = {}
    for content in contents:
        ref, values = ref_of(content.obj), props(content)
        if isinstance(content.obj, vim.VirtualMachine):
            check_power_state(ref, content)
            vms[ref] = values
        elif isinstance(content.obj, vim.ResourcePool) and values.get("owner") is not None:
            pool_owner[ref.value] = values["owner"]._moId
        elif isinstance(content.obj, vim.ComputeResource):
            compute_name[ref.value] = str(values.get("name", ""))
    states: dict[VmRef, VmState] = {}
    for ref, values in vms.items():
        host = values.get("runtime.host")
        pool = values.get("resourcePool")
        owner = pool_owner.get(pool._moId) if pool is not None else None
        states[ref] = VmState(
            ref=ref,
            name=str(values.get("name", "")),
            power_state=str(values.get("runtime.powerState", "")),
            host=host._moId if host is not None else None,
            cluster=compute_name.get(owner) if owner else None,
        )
    return states, missing | {r for r in refs if r not in states}


def read_power_states(
    session: SoapSession, refs: Sequence[VmRef]
) -> tuple[dict[VmRef, str], set[VmRef]]:
    """Just `runtime.powerState`, for polling."""
    if not refs:
        return {}, set()
    contents, missing = session.retrieve(
        refs, [PC.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.powerState"])]
    )
    for content in contents:
        check_power_state(ref_of(content.obj), content)
    states = {ref_of(c.obj): str(props(c)["runtime.powerState"]) for c in contents}
    return states, missing | {r for r in refs if r not in states}


_NOW_PATHS = ["runtime.powerState", "config.changeVersion", "runtime.host", "resourcePool"]


def read_now(
    session: SoapSession, refs: Sequence[VmRef], *, annotation_key: int | None = None
) -> tuple[dict[VmRef, VmNow], set[VmRef]]:
    """What a mark is made of (power state, change version, host, pool), for every VM in
    `refs`, with the value of custom field `annotation_key` if given; and those gone."""
    if not refs:
        return {}, set()
    paths = [*_NOW_PATHS, "customValue"] if annotation_key is not None else _NOW_PATHS
    contents, missing = session.retrieve(
        refs, [PC.PropertySpec(type=vim.VirtualMachine, pathSet=paths)]
    )
    found: dict[VmRef, VmNow] = {}
    for content in contents:
        check_power_state(ref_of(content.obj), content)
        values = props(content)
        host, pool = values.get("runtime.host"), values.get("resourcePool")
        annotation = next(
            (
                str(item.value)
                for item in values.get("customValue") or ()
                if int(item.key) == annotation_key
            ),
            None,
        )
        found[ref_of(content.obj)] = VmNow(
            power_state=str(values.get("runtime.powerState", "")),
            change_version=str(values.get("config.changeVersion") or ""),
            host=host._moId if host is not None else None,
            resource_pool=pool._moId if pool is not None else None,
            annotation=annotation or None,
        )
    return found, missing | {r for r in refs if r not in found}


@dataclass(frozen=True)
class TaskState:
    state: str  # queued | running | success | error
    error: Any = None  # the MethodFault when state is error


def read_task_states(
    session: SoapSession, tasks: Sequence[VmRef]
) -> tuple[dict[VmRef, TaskState], set[VmRef]]:
    if not tasks:
        return {}, set()
    contents, missing = session.retrieve(
        tasks, [PC.PropertySpec(type=vim.Task, pathSet=["info.state", "info.error"])]
    )
    states: dict[VmRef, TaskState] = {}
    for content in contents:
        values = props(content)
        # pyVmomi hands a LocalizedMethodFault over as the MethodFault it wraps.
        error = values.get("info.error")
        fault = error if isinstance(error, vmodl.MethodFault) else getattr(error, "fault", error)
        states[ref_of(content.obj)] = TaskState(str(values.get("info.state", "")), fault)
    return states, missing | {t for t in tasks if t not in states}


@dataclass(frozen=True)
class TaskPacing:
    """How vCenter tasks are waited on, the same for every kind of task the client starts.

    `poll_interval` is the longest pause between looks at a running task; `task_timeout`
    how long one task may run before it counts as failed (vCenter may still finish it).
    """

    poll_interval: float = 1.0
    task_timeout: timedelta = timedelta(minutes=2)

    def overdue(self, what: str) -> str:
        """Why a task that outran `task_timeout` counts as failed."""
        return f"{what} task still running after {self.task_timeout.total_seconds():.0f}s"


def wait_for_tasks(
    session: SoapSession,
    tasks: Sequence[VmRef],
    on_poll: Callable[[dict[VmRef, TaskState], set[VmRef]], None],
    pacing: TaskPacing,
    *,
    waiting: Callable[[int], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[VmRef]:
    """Watch `tasks` until each has ended or vanished, or `pacing.task_timeout` has passed.

    One batched read per poll, the pause between polls doubling from 0.1 s (or less) up to
    `pacing.poll_interval`. Each poll's ended tasks (success or error) and vanished ones go to
    `on_poll` (which may raise to stop); `waiting` hears how many still run before each
    pause. Returns the tasks still running at the timeout.
    """
    poll_interval = pacing.poll_interval
    deadline = clock() + pacing.task_timeout.total_seconds()
    interval = min(0.1, poll_interval)
    pending = list(tasks)
    while pending:
        states, missing = read_task_states(session, pending)
        ended = {t: s for t, s in states.items() if s.state in ("success", "error")}
        on_poll(ended, missing)
        pending = [t for t in pending if t in states and t not in ended]
        if not pending or clock() >= deadline:
            break
        waiting(len(pending))
        sleep(interval)
        interval = min(interval * 2, poll_interval)
    return pending


def read_custom_values(session: SoapSession, vms: Sequence[VmRef], key: int) -> dict[VmRef, str]:
    """The value of custom field `key` on each VM that has one."""
    if not vms:
        return {}
    contents, _ = session.retrieve(
        vms, [PC.PropertySpec(type=vim.VirtualMachine, pathSet=["customValue"])]
    )
    values: dict[VmRef, str] = {}
    for content in contents:
        for item in props(content).get("customValue") or ():
            if int(item.key) == key:
                values[ref_of(content.obj)] = str(item.value)
    return values
