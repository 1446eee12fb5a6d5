"""annotate on vcsim: the custom field is created once, the value written exactly."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from tests.vsphere.conftest import Admin, MakeClient
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import AnnotateOutcome, VmIssue, VmRef
from vsphere_preemption.vsphere.client import VSphereClient

FIELD = "com.vmware.workflows.vsphere.preemption"
VALUE = json.dumps(
    {
        "preempted": True,
        "tag": "preemptible",
        "forcedShutdown": True,
        "criticality": "HIGH",
        "workflowID": "alarm-1",
        "workflowStarted": "2026-11-25T16:00:00Z",
        "event": {"id": "e1", "data": {"quote": '"<&>" ünïcode'}},
    }
)


def test_annotate_writes_exactly_the_value_and_creates_the_field_once(
    client: VSphereClient, inventory: Inventory, admin: Admin
) -> None:
    vms = [s.ref for s in inventory.vms()[:3]]
    others = [s.ref for s in inventory.vms()[3:5]]

    first = client.annotate(vms, FIELD, VALUE)
    again = client.annotate(vms, FIELD, VALUE)  # a retried activity
    more = client.annotate(others, FIELD, VALUE)

    assert first == again == AnnotateOutcome(annotated=vms)
    assert more.annotated == others
    assert admin.field_names().count(FIELD) == 1
    values = client.read_custom_field([*vms, *others, inventory.vms()[6].ref], FIELD)
    assert values == {ref: VALUE for ref in [*vms, *others]}
    assert json.loads(values[vms[0]])["event"]["data"]["quote"] == '"<&>" ünïcode'


def test_a_new_value_replaces_the_old_one(client: VSphereClient, inventory: Inventory) -> None:
    vm = inventory.vms()[0].ref
    client.annotate([vm], FIELD, "first")
    client.annotate([vm], FIELD, "second")
    assert client.read_custom_field([vm], FIELD) == {vm: "second"}


def test_a_field_made_by_someone_else_is_reused(
    sim: Vcsim, make_client: MakeClient, inventory: Inventory, admin: Admin
) -> None:
    key = make_client(sim).custom_field_key(FIELD)
    vm = inventory.vms()[0].ref
    other = make_client(sim)
    assert other.annotate([vm], FIELD, VALUE).annotated == [vm]
    assert other.custom_field_key(FIELD) == key
    assert admin.field_names().count(FIELD) == 1


def test_losing_the_creation_race_uses_the_winners_field(
    sim: Vcsim,
    make_client: MakeClient,
    inventory: Inventory,
    admin: Admin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loser read the definitions just before the winner created the field: its
    # AddFieldDefinition meets vCenter's DuplicateName, and it must carry on.
    winner_key = make_client(sim).custom_field_key(FIELD)
    loser = make_client(sim)
    fields = loser._fields
    real_find = fields._find
    lookups: list[str] = []

    def read_before_the_winner(name: str) -> int | None:
        lookups.append(name)
        return None if len(lookups) == 1 else real_find(name)

    monkeypatch.setattr(fields, "_find", read_before_the_winner)
    vm = inventory.vms()[0].ref

    assert loser.annotate([vm], FIELD, VALUE).annotated == [vm]
    assert lookups == [FIELD, FIELD]  # looked up again after DuplicateName
    assert loser.custom_field_key(FIELD) == winner_key
    assert admin.field_names().count(FIELD) == 1


def test_concurrent_first_annotations_make_one_field(
    vcsim_factory: Callable[..., Vcsim], make_client: MakeClient
) -> None:
    # Field creation answers after 0.5 s, so both workers read "missing" and both add.
    sim = vcsim_factory("-cluster", "1", "-host", "1", "-vm", "2", "-method-delay",
                        "AddCustomFieldDef:500")  # fmt: skip
    clients = [make_client(sim), make_client(sim)]
    vm = Inventory(clients[0]).vms()[0].ref
    start = threading.Barrier(2)
    outcomes: list[AnnotateOutcome] = []

    def annotate(client: VSphereClient) -> None:
        start.wait()
        outcomes.append(client.annotate([vm], FIELD, VALUE))

    threads = [threading.Thread(target=annotate, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert [o.annotated for o in outcomes] == [[vm], [vm]]
    admin = Admin(sim)
    try:
        assert admin.field_names().count(FIELD) == 1
    finally:
        admin.close()


def test_a_field_deleted_behind_our_back_is_created_again(
    client: VSphereClient, inventory: Inventory, admin: Admin
) -> None:
    vm = inventory.vms()[0].ref
    key = client.custom_field_key(FIELD)
    admin.content.customFieldsManager.RemoveCustomFieldDef(key)  # our cached key is now stale

    assert client.annotate([vm], FIELD, VALUE).annotated == [vm]
    assert client.custom_field_key(FIELD) != key
    assert client.read_custom_field([vm], FIELD) == {vm: VALUE}


def test_per_vm_problems_are_reported(client: VSphereClient, inventory: Inventory) -> None:
    vm = inventory.vms()[0].ref
    ghost = VmRef("vm-987654")
    host = VmRef("host-21", "HostSystem")
    outcome = client.annotate([host, vm, ghost], FIELD, VALUE)
    assert outcome.annotated == [vm]
    assert outcome.failed == [
        VmIssue(host, "not a virtual machine (HostSystem)"),
        VmIssue(ghost, "virtual machine not found (deleted?)"),
    ]
