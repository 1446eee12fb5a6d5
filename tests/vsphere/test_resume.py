"""resume on vcsim: VMs someone touched since we stopped them are left alone, the rest on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.vsphere.conftest import Admin, MakeClient
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import StopAction, VmIssue, VmMark, VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.sdk import vim
from vsphere_preemption.vsphere.tasks import Fanout
from vsphere_preemption.wire import ANNOTATION_KEY

WF = "alarm-1-domain-c28"
PREEMPTED = json.dumps({"preempted": True, "workflowID": WF}, separators=(",", ":"))
RESUMED = json.dumps(
    {"preempted": True, "workflowID": WF, "resumed": True, "resumedAt": "2026-11-30T12:00:00Z"},
    separators=(",", ":"),
)
GRACE = timedelta(seconds=30)


@pytest.fixture
def sim(vcsim_factory: Callable[..., Vcsim]) -> Vcsim:
    # One cluster of two hosts (6 VMs between them, so a VM can move) and a standalone host.
    return vcsim_factory("-cluster", "1", "-host", "2", "-vm", "6")


def finish(task: Any) -> None:
    """Wait for a task (pyVim's WaitForTask breaks on vcsim's task names)."""
    deadline = time.monotonic() + 30
    while task.info.state in ("queued", "running"):
        assert time.monotonic() < deadline, "task still running"
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error


def raw(admin: Admin, ref: VmRef) -> Any:
    return vim.VirtualMachine(ref.value, admin.si._stub)


def preempt(client: VSphereClient, vms: list[VmRef], action: StopAction) -> list[VmMark]:
    """What the workflow does: stop (marks read after), then annotate."""
    stopped = client.stop(vms, action=action, soft_shutdown_grace=GRACE, fanout=Fanout(3))
    assert stopped.powered_off == vms
    assert client.annotate(vms, ANNOTATION_KEY, PREEMPTED).annotated == vms
    return stopped.marks


def resume(client: VSphereClient, marks: list[VmMark], **kwargs: Any) -> Any:
    return client.resume(
        marks, workflow_id=WF, annotation_field=ANNOTATION_KEY, annotation_json=RESUMED,
        fanout=Fanout(2), **kwargs,
    )  # fmt: skip


def clustered(client: VSphereClient) -> list[VmRef]:
    return [s.ref for s in Inventory(client).vms() if s.cluster and s.cluster.startswith("DC0_C")]


@pytest.mark.parametrize("action", [StopAction.POWER_OFF, StopAction.SUSPEND])
def test_resume_skips_each_changed_vm_and_powers_on_the_rest(
    client: VSphereClient, admin: Admin, action: StopAction
) -> None:
    inventory = Inventory(client)
    vms = clustered(client)
    assert len(vms) == 6
    by_hand, reconfigured, moved, unannotated, replaced, deleted = vms[:6]
    untouched = [s.ref for s in inventory.vms() if s.ref not in vms][:2]
    marks = preempt(client, [*vms, *untouched], action)

    # What people do meanwhile.
    inventory.power_on([by_hand])
    finish(raw(admin, reconfigured).ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=64)))
    here = raw(admin, moved).runtime.host
    other = next(h for h in here.parent.host if h._moId != here._moId)
    finish(raw(admin, moved).RelocateVM_Task(vim.vm.RelocateSpec(host=other)))
    key = client.custom_field_key(ANNOTATION_KEY)
    fields = admin.content.customFieldsManager
    fields.SetField(entity=raw(admin, unannotated), key=key, value="")
    fields.SetField(entity=raw(admin, replaced), key=key, value='{"workflowID":"alarm-2-x"}')
    if action is StopAction.SUSPEND:  # vCenter destroys only VMs that are off
        inventory.power_off([deleted])
    finish(raw(admin, deleted).Destroy_Task())

    heard: list[VmRef] = []
    outcome = resume(client, marks, on_powering_on=heard.append)

    assert outcome.resumed == untouched and outcome.failed == []
    assert sorted(heard) == sorted(untouched)
    assert outcome.skipped == [
        VmIssue(by_hand, "powered on by hand"),
        VmIssue(reconfigured, "reconfigured since it was preempted"),
        VmIssue(moved, f"moved since it was preempted: host {here._moId} -> {other._moId}"),
        VmIssue(unannotated, "annotation removed or replaced: no annotation"),
        VmIssue(replaced, "annotation removed or replaced: it names workflow 'alarm-2-x'"),
        VmIssue(deleted, "deleted"),
    ]
    left = [reconfigured, moved, unannotated, replaced]
    states = {ref: s.power_state for ref, s in client.read_vms([*untouched, *left]).items()}
    stopped = PowerState.POWERED_OFF if action is StopAction.POWER_OFF else "suspended"
    assert states == {
        **dict.fromkeys(untouched, PowerState.POWERED_ON),
        **dict.fromkeys(left, stopped),
    }
    notes = client.read_custom_field([*untouched, reconfigured, by_hand], ANNOTATION_KEY)
    assert notes == {**dict.fromkeys(untouched, RESUMED), reconfigured: PREEMPTED,
                     by_hand: PREEMPTED}  # fmt: skip


def test_resuming_again_counts_the_resumed_without_acting(client: VSphereClient) -> None:
    vms = clustered(client)[:3]
    marks = preempt(client, vms, StopAction.POWER_OFF)
    first = resume(client, marks)
    assert first.resumed == vms

    heard: list[VmRef] = []
    second = resume(client, marks, on_powering_on=heard.append)

    assert second.resumed == vms and second.skipped == [] and second.failed == []
    assert heard == [], "no VM powered on twice"


def test_a_vm_powered_on_by_an_interrupted_attempt_counts_as_resumed(
    client: VSphereClient,
) -> None:
    # The attempt powered the VM on (and said so in its heartbeat) but died before writing
    # the resumed annotation: the retry counts it and writes the annotation, without
    # taking it for a VM powered on by hand.
    ours, by_hand = clustered(client)[:2]
    marks = preempt(client, [ours, by_hand], StopAction.POWER_OFF)
    Inventory(client).power_on([ours, by_hand])

    outcome = resume(client, marks, powered_on_before=[ours])

    assert outcome.resumed == [ours]
    assert outcome.skipped == [VmIssue(by_hand, "powered on by hand")]
    assert client.read_custom_field([ours], ANNOTATION_KEY) == {ours: RESUMED}


def test_an_attempt_that_died_after_its_claim_is_finished_without_its_heartbeat(
    client: VSphereClient,
) -> None:
    # The resumed annotation goes on before the power-on. An attempt killed after writing it
    # leaves VMs that are on (its power-on went through) or still stopped (it did not): the
    # retry counts the first as resumed, powers the second on, and takes neither for a VM
    # powered on by hand, knowing nothing from the dead attempt's heartbeat.
    went_on, never_on, by_hand = clustered(client)[:3]
    marks = preempt(client, [went_on, never_on, by_hand], StopAction.POWER_OFF)
    client.annotate([went_on, never_on], ANNOTATION_KEY, RESUMED)
    Inventory(client).power_on([went_on, by_hand])

    outcome = resume(client, marks)

    assert outcome.resumed == [went_on, never_on]
    assert outcome.skipped == [VmIssue(by_hand, "powered on by hand")]
    states = {ref: s.power_state for ref, s in client.read_vms([went_on, never_on]).items()}
    assert states == dict.fromkeys([went_on, never_on], PowerState.POWERED_ON)


def test_the_claim_comes_before_the_power_on(client: VSphereClient) -> None:
    vms = clustered(client)[:2]
    marks = preempt(client, vms, StopAction.POWER_OFF)
    seen: dict[VmRef, str] = {}

    def look(ref: VmRef) -> None:  # just before each power-on call
        seen.update(client.read_custom_field([ref], ANNOTATION_KEY))

    outcome = resume(client, marks, on_powering_on=look)

    assert outcome.resumed == vms
    assert seen == dict.fromkeys(vms, RESUMED)


def test_resume_reads_every_vm_in_one_request(sim: Vcsim, make_client: MakeClient) -> None:
    client = make_client(sim)
    vms = [s.ref for s in Inventory(client).vms()]
    marks = preempt(client, vms, StopAction.POWER_OFF)
    Inventory(client).power_on(vms)  # all powered on by hand: nothing to do

    before = client.round_trips
    outcome = resume(client, marks)

    assert [i.reason for i in outcome.skipped] == ["powered on by hand"] * len(vms)
    assert client.round_trips - before == 1, "the custom field key is cached; one batched read"
