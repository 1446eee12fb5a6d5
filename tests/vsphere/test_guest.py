"""The guest notice on vcsim: a guestinfo extra config key set, read back, cleared."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.vsphere.conftest import Admin
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import StopAction, VmIssue, VmRef
from vsphere_preemption.temporal.contracts import GUEST_NOTICE_KEY
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.sdk import vim
from vsphere_preemption.vsphere.tasks import Fanout

NOTICE = '{"action":"shutdown","notBefore":"2026-11-30T12:00:00Z","workflowID":"wf-1"}'


def extra_config(admin: Admin, ref: VmRef) -> dict[str, Any]:
    vm = vim.VirtualMachine(ref.value, admin.si._stub)
    return {o.key: o.value for o in vm.config.extraConfig or ()}


def change_version(admin: Admin, ref: VmRef) -> str:
    return str(vim.VirtualMachine(ref.value, admin.si._stub).config.changeVersion)


def test_the_notice_is_written_read_back_and_cleared(
    client: VSphereClient, inventory: Inventory, admin: Admin
) -> None:
    vms = [s.ref for s in inventory.vms()[:3]]
    bystander = inventory.vms()[3].ref

    written = client.set_extra_config(vms, GUEST_NOTICE_KEY, NOTICE, fanout=Fanout(2))

    assert written.written == vms and written.failed == []
    assert client.read_extra_config([*vms, bystander], GUEST_NOTICE_KEY) == dict.fromkeys(
        vms, NOTICE
    )
    # What another session sees: the key among the VM's other extra config.
    assert extra_config(admin, vms[0])[GUEST_NOTICE_KEY] == NOTICE
    assert GUEST_NOTICE_KEY not in extra_config(admin, bystander)

    cleared = client.set_extra_config(vms, GUEST_NOTICE_KEY, "", fanout=Fanout(2))

    assert cleared.written == vms
    assert client.read_extra_config(vms, GUEST_NOTICE_KEY) == {}
    assert GUEST_NOTICE_KEY not in extra_config(admin, vms[0]), "an empty value removes the key"


def test_writing_what_stands_already_reconfigures_nothing(
    client: VSphereClient, inventory: Inventory, admin: Admin
) -> None:
    # A reconfiguration changes config.changeVersion, which a resume compares: a retry,
    # or clearing where no notice stands, must leave the VM's configuration alone.
    noticed, plain = (s.ref for s in inventory.vms()[:2])
    client.set_extra_config([noticed], GUEST_NOTICE_KEY, NOTICE)
    versions = {ref: change_version(admin, ref) for ref in (noticed, plain)}

    before = client.round_trips
    again = client.set_extra_config([noticed], GUEST_NOTICE_KEY, NOTICE)
    clear_nothing = client.set_extra_config([plain], GUEST_NOTICE_KEY, "")

    assert again.written == [noticed] and clear_nothing.written == [plain]
    assert client.round_trips - before == 2, "one read each, no reconfiguration"
    assert {ref: change_version(admin, ref) for ref in (noticed, plain)} == versions


def test_a_notice_changes_the_change_version_so_marks_come_after_it(
    client: VSphereClient, inventory: Inventory, admin: Admin
) -> None:
    vm = inventory.vms()[0].ref
    first = change_version(admin, vm)
    client.set_extra_config([vm], GUEST_NOTICE_KEY, NOTICE)
    assert change_version(admin, vm) != first

    stopped = client.stop(
        [vm], action=StopAction.SHUTDOWN, soft_shutdown_grace=timedelta(seconds=30),
        fanout=Fanout(1),
    )  # fmt: skip
    assert stopped.marks[0].change_version == change_version(admin, vm)


def test_the_notice_on_a_stopped_vm_and_per_vm_problems(
    client: VSphereClient, inventory: Inventory
) -> None:
    off = inventory.vms()[0].ref
    inventory.power_off([off])
    ghost, host = VmRef("vm-987654"), VmRef("host-21", "HostSystem")

    outcome = client.set_extra_config([ghost, off, host], GUEST_NOTICE_KEY, NOTICE)

    assert outcome.written == [off]
    assert outcome.failed == [
        VmIssue(ghost, "virtual machine not found (deleted?)"),
        VmIssue(host, "not a virtual machine (HostSystem)"),
    ]
    assert client.read_extra_config([off], GUEST_NOTICE_KEY) == {off: NOTICE}
