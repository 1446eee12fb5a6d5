"""stop on vcsim: each action's end state, suspend confirmed, marks read after stopping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.vsphere.conftest import Admin
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import StopAction, VmIssue, VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.vsphere import power, reads
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.sdk import vim
from vsphere_preemption.vsphere.tasks import Fanout

GRACE = timedelta(seconds=30)
END_STATE = {
    StopAction.SHUTDOWN: PowerState.POWERED_OFF,
    StopAction.POWER_OFF: PowerState.POWERED_OFF,
    StopAction.SUSPEND: "suspended",
}


def power_states(client: VSphereClient, vms: list[VmRef]) -> dict[VmRef, str]:
    return {ref: state.power_state for ref, state in client.read_vms(vms).items()}


@pytest.mark.parametrize("action", list(StopAction))
def test_each_action_ends_in_its_state_and_marks_each_vm(
    client: VSphereClient, inventory: Inventory, admin: Admin, action: StopAction
) -> None:
    states = inventory.vms()
    vms = [s.ref for s in states[:3]]
    bystander = states[8].ref

    outcome = client.stop(vms, action=action, soft_shutdown_grace=GRACE, fanout=Fanout(2))

    assert outcome.powered_off == vms and outcome.failed == []
    assert power_states(client, [*vms, bystander]) == {
        **{ref: END_STATE[action] for ref in vms},
        bystander: PowerState.POWERED_ON,
    }
    # The marks are what vCenter shows after stopping, VM by VM.
    assert [m.ref for m in outcome.marks] == vms
    for mark, state in zip(outcome.marks, states[:3], strict=True):
        raw = admin_vm(admin, mark.ref)
        assert mark.power_state == END_STATE[action]
        assert mark.change_version == raw.config.changeVersion and mark.change_version
        assert mark.host == state.host == raw.runtime.host._moId
        assert mark.resource_pool == raw.resourcePool._moId


def admin_vm(admin: Admin, ref: VmRef) -> Any:
    return vim.VirtualMachine(ref.value, admin.si._stub)


def test_suspend_counts_suspended_and_off_vms_as_done_without_a_call(
    client: VSphereClient, inventory: Inventory
) -> None:
    running, suspended, off = (s.ref for s in inventory.vms()[:3])
    inventory.suspend([suspended])
    inventory.power_off([off])

    before = client.round_trips
    outcome = client.stop(
        [running, suspended, off], action=StopAction.SUSPEND,
        soft_shutdown_grace=GRACE, fanout=Fanout(2),
    )  # fmt: skip

    assert outcome.powered_off == [running, suspended, off] and outcome.failed == []
    assert [m.power_state for m in outcome.marks] == ["suspended", "suspended", "poweredOff"]
    # one read (states and marks), one SuspendVM_Task, its poll(s), one read to mark it
    assert client.round_trips - before <= 5


@pytest.mark.parametrize("action", list(StopAction))
def test_stopping_twice_acts_once_and_marks_the_same(
    client: VSphereClient, inventory: Inventory, action: StopAction
) -> None:
    vms = [s.ref for s in inventory.vms()[:3]]
    first = client.stop(vms, action=action, soft_shutdown_grace=GRACE, fanout=Fanout(3))

    before = client.round_trips
    second = client.stop(vms, action=action, soft_shutdown_grace=GRACE, fanout=Fanout(3))

    assert second.powered_off == first.powered_off == vms
    assert second.marks == first.marks
    assert client.round_trips - before == 1, "a retry reads states and marks in one request"


def test_a_vm_deleted_before_the_suspend_is_reported_not_marked(
    client: VSphereClient, inventory: Inventory
) -> None:
    vm = inventory.vms()[0].ref
    ghost = VmRef("vm-424242")

    outcome = client.stop(
        [ghost, vm], action=StopAction.SUSPEND, soft_shutdown_grace=GRACE, fanout=Fanout(2)
    )

    assert outcome.powered_off == [vm]
    assert outcome.failed == [VmIssue(ghost, "virtual machine not found (deleted?)")]
    assert [m.ref for m in outcome.marks] == [vm]


def test_a_vm_powered_on_again_before_its_mark_is_not_counted_stopped(
    client: VSphereClient, inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone powers the VM on between our power-off and the mark: it is not stopped.
    vms = [s.ref for s in inventory.vms()[:2]]
    real_read_now = reads.read_now
    calls = 0

    def read_now_after_someone(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:  # the mark read, after stopping
            inventory.power_on([vms[1]])
        return real_read_now(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(power, "read_now", read_now_after_someone)
    outcome = client.stop(
        vms, action=StopAction.POWER_OFF, soft_shutdown_grace=GRACE, fanout=Fanout(2)
    )

    assert outcome.powered_off == [vms[0]]
    assert outcome.failed == [VmIssue(vms[1], "power-off done, but the VM is poweredOn now")]
    assert [m.ref for m in outcome.marks] == [vms[0]]


def test_power_off_keeps_its_force_flag(client: VSphereClient, inventory: Inventory) -> None:
    vms = [s.ref for s in inventory.vms()[:2]]
    outcome = client.power_off(vms, force=True, soft_shutdown_grace=GRACE, fanout=Fanout(2))
    assert outcome.powered_off == vms
    assert [m.power_state for m in outcome.marks] == ["poweredOff", "poweredOff"]
