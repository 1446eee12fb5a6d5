"""A guestinfo variable in the VMs' extra config: how the guest's software hears of us.

Written with `ReconfigVM_Task` (`spec.extraConfig = [OptionValue(key, value)]`), one
task per VM, confirmed by the task's success; the guest reads it with
`vmware-rpctool "info-get guestinfo.…"`. An empty value removes the key (vSphere
drops an extra config key set to ""). A VM that holds the value already is left
alone: every reconfiguration changes `config.changeVersion`, which a resume compares
against, so a retry or a clear where nothing stands must not reconfigure anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vsphere_preemption.domain.model import GuestNoticeOutcome, VmIssue, VmRef
from vsphere_preemption.domain.selection import VIRTUAL_MACHINE, dedupe
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import Connection, SoapSession, props, ref_of
from vsphere_preemption.vsphere.tasks import Fanout, TaskRunner

log = get_logger(__name__)

PC = vmodl.query.PropertyCollector
VANISHED = "virtual machine not found (deleted?)"


def read_extra_config(session: SoapSession, vms: Sequence[VmRef], key: str) -> dict[VmRef, str]:
    """The value of extra config `key` on each VM that has it (one batched read)."""
    return _existing(session, vms, key)[1]


def _existing(
    session: SoapSession, vms: Sequence[VmRef], key: str
) -> tuple[set[VmRef], dict[VmRef, str]]:
    """Which VMs exist, and the value of `key` on those that have it (one batched read)."""
    if not vms:
        return set(), {}
    contents, missing = session.retrieve(
        vms, [PC.PropertySpec(type=vim.VirtualMachine, pathSet=["config.extraConfig"])]
    )
    values: dict[VmRef, str] = {}
    for content in contents:
        for option in props(content).get("config.extraConfig") or ():
            if option.key == key and option.value not in (None, ""):
                values[ref_of(content.obj)] = str(option.value)
    return {ref_of(c.obj) for c in contents} - missing, values


def set_extra_config(
    session: SoapSession,
    runner: TaskRunner,
    vms: Sequence[VmRef],
    key: str,
    value: str,
    *,
    fanout: Fanout,
) -> GuestNoticeOutcome:
    refs = dedupe(vms)
    order = {r: i for i, r in enumerate(refs)}
    failed: dict[VmRef, str] = {
        r: f"not a virtual machine ({r.type})" for r in refs if r.type != VIRTUAL_MACHINE
    }
    candidates = [r for r in refs if r not in failed]
    present, values = _existing(session, candidates, key)
    fanout.heartbeat(f"{key}: extra config read")
    failed.update({r: VANISHED for r in candidates if r not in present})
    written = {r for r in candidates if r in present and values.get(r, "") == value}
    todo = [r for r in candidates if r in present and r not in written]

    def reconfigure(conn: Connection, ref: VmRef) -> Any:
        option = vim.option.OptionValue(key=key, value=value)
        return conn.managed(ref).ReconfigVM_Task(spec=vim.vm.ConfigSpec(extraConfig=[option]))

    ends = runner.run(todo, reconfigure, what=f"set {key}", fanout=fanout)
    for ref, end in ends.items():
        if end.ok:
            written.add(ref)
        elif isinstance(end.fault, vmodl.fault.ManagedObjectNotFound):
            failed[ref] = VANISHED
        else:
            why = session.text(end.fault) if end.fault is not None else end.detail
            failed[ref] = f"cannot set {key}: {why}"
    log.info(
        "vcenter.extra_config_set",
        key=key,
        cleared=value == "",
        written=len(written),
        unchanged=len(refs) - len(todo) - len(failed),
        failed=len(failed),
    )
    return GuestNoticeOutcome(
        written=sorted(written, key=order.__getitem__),
        failed=[VmIssue(r, failed[r]) for r in sorted(failed, key=order.__getitem__)],
    )
