"""One shared session per client: reused, renewed when vCenter forgets it, logged out."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest

from tests.vsphere.conftest import Admin, MakeClient
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import AnnotateOutcome, Selection, VmRef
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.vsphere.tasks import Fanout

TAG = "preemptible"


def test_nothing_is_sent_before_the_first_call(sim: Vcsim, make_client: MakeClient) -> None:
    client = make_client(sim)
    assert client.round_trips == 0


def test_one_soap_session_is_reused_across_calls(
    sim: Vcsim, make_client: MakeClient, admin: Admin, inventory: Inventory
) -> None:
    inventory.tag(TAG, [s.ref for s in inventory.vms()[:3]])
    sessions_before = admin.session_keys()
    client = make_client(sim)
    for _ in range(3):
        client.find_preemptible(TAG, max_vms=10)
    client.annotate(client.find_preemptible(TAG, 10).selected, "k", "v")
    assert len(admin.session_keys() - sessions_before) == 1


def test_a_terminated_soap_session_is_renewed_transparently(
    client: VSphereClient, inventory: Inventory, admin: Admin
) -> None:
    vms = [s.ref for s in inventory.vms()[:2]]
    client.annotate(vms, "k", "before")
    killed = admin.terminate_others()
    assert len(killed) == 1  # the client's session (the inventory shares it)

    # SetField needs a session (vcsim lets property reads through without one).
    outcome = client.annotate(vms, "k", "after")  # NotAuthenticated, re-login, retry

    assert outcome.annotated == vms and outcome.failed == []
    assert client.read_custom_field(vms, "k") == {ref: "after" for ref in vms}
    renewed = admin.session_keys()
    assert len(renewed) == 1 and not renewed & killed


def test_concurrent_calls_on_an_expired_session_log_in_once(
    client: VSphereClient, inventory: Inventory, admin: Admin
) -> None:
    vms = [s.ref for s in inventory.vms()]
    client.annotate(vms, "k", "before")
    admin.terminate_others()
    start = threading.Barrier(8)
    outcomes: list[AnnotateOutcome] = []
    errors: list[BaseException] = []

    def annotate(part: list[VmRef]) -> None:
        start.wait()
        try:
            outcomes.append(client.annotate(part, "k", "after"))
        except Exception as exc:  # noqa: BLE001 (collected for the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(vms[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sorted(ref for o in outcomes for ref in o.annotated) == sorted(vms)
    assert len(admin.session_keys()) == 1  # one new session, not eight


def test_an_expired_rest_session_is_renewed_transparently(
    sim: Vcsim, client: VSphereClient, inventory: Inventory
) -> None:
    inventory.tag(TAG, [s.ref for s in inventory.vms()[:3]])
    first = client.find_preemptible(TAG, max_vms=10)
    stale = client.tagging._session
    assert stale is not None
    # Log the REST session out behind the client's back.
    response = httpx.delete(
        f"https://127.0.0.1:{sim.port}/rest/com/vmware/cis/session",
        headers={"vmware-api-session-id": stale},
        verify=False,  # noqa: S501 (vcsim's self-signed certificate, a test)
    )
    assert response.status_code == 200

    assert client.find_preemptible(TAG, max_vms=10) == first
    assert client.tagging._session not in (None, stale)


def test_a_restarted_vcenter_is_picked_up_again(
    sim: Vcsim, client: VSphereClient, inventory: Inventory
) -> None:
    inventory.tag(TAG, [s.ref for s in inventory.vms()[:3]])
    client.find_preemptible(TAG, max_vms=10)
    sim.restart()  # same port, fresh inventory: every session and the tag's id are gone

    with pytest.raises(VSphereError, match="tag 'preemptible' not found"):
        client.find_preemptible(TAG, max_vms=10)
    vms = [s.ref for s in inventory.vms()[3:5]]
    inventory.tag(TAG, vms)
    selection = client.find_preemptible(TAG, max_vms=10)
    assert sorted(selection.selected) == sorted(vms)
    outcome = client.power_off(
        selection.selected,
        force=True,
        soft_shutdown_grace=timedelta(seconds=1),
        fanout=Fanout(2),
    )
    assert sorted(outcome.powered_off) == sorted(vms)


def test_close_logs_both_sessions_out(
    sim: Vcsim, make_client: MakeClient, inventory: Inventory, admin: Admin
) -> None:
    inventory.tag(TAG, [inventory.vms()[0].ref])
    before = admin.session_keys()
    client = make_client(sim)
    client.find_preemptible(TAG, max_vms=10)
    rest_session = client.tagging._session
    assert rest_session is not None
    assert len(admin.session_keys() - before) == 1

    client.close()
    client.close()  # idempotent

    assert admin.session_keys() == before
    response = httpx.get(
        f"https://127.0.0.1:{sim.port}/rest/com/vmware/cis/tagging/tag",
        headers={"vmware-api-session-id": rest_session},
        verify=False,  # noqa: S501 (vcsim's self-signed certificate, a test)
    )
    assert response.status_code == 401
    with pytest.raises(VSphereError, match="closed"):
        client.find_preemptible(TAG, max_vms=10)
    with pytest.raises(VSphereError, match="closed"):
        client.read_vms([s.ref for s in inventory.vms()[:1]])


def test_find_result_shape(client: VSphereClient, inventory: Inventory) -> None:
    inventory.tag(TAG, [inventory.vms()[0].ref])
    assert isinstance(client.find_preemptible(TAG, max_vms=1), Selection)


def test_a_connection_handed_back_after_close_is_closed_not_pooled(
    sim: Vcsim, make_client: MakeClient
) -> None:
    # A pool thread whose call was abandoned may return its connection after the client is
    # closed: pooled then, it would be left open for the garbage collector (a ResourceWarning).
    client = make_client(sim)
    stub = client.session.connection().stub
    in_flight = stub.GetConnection()  # the login's, kept alive in the pool
    assert in_flight.sock is not None
    client.close()
    stub.ReturnConnection(in_flight)
    assert in_flight.sock is None and stub.pool == []
