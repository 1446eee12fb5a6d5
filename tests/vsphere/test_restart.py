"""vCenter restarted on the same address: the SOAP session is stale, and is replaced.

vcsim forgets every session when it restarts, and answers a property read on an
unknown session with objects whose every property is missing (a NotAuthenticated
fault in each `missingSet`), not with a fault: read as is, every VM had no name and
no power state, and a run left them all out as "not running". These tests restart a
real vcsim on the same port and check the client logs in once more and reads the
truth, or fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.vsphere.conftest import SMALL, MakeClient
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import StopAction, VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import LoginError
from vsphere_preemption.vsphere.tasks import Fanout

TAG = "preemptible"


def count_logins(client: VSphereClient, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at each SOAP login of `client` (the real login runs)."""
    logins: list[int] = []
    login: Callable[[object], None] = client.session._login

    def counted(content: object) -> None:
        login(content)
        logins.append(1)

    monkeypatch.setattr(client.session, "_login", counted)
    return logins


def restarted(sim: Vcsim, make_client: MakeClient, tagged: list[VmRef]) -> None:
    """Restart vcsim on its port; tag `tagged` again through a client of its own."""
    port = sim.port
    sim.restart()
    assert sim.port == port
    Inventory(make_client(sim)).tag(TAG, tagged)


@pytest.fixture
def setup(
    sim: Vcsim, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> tuple[VSphereClient, list[VmRef], list[int]]:
    inventory = Inventory(make_client(sim))
    vms = [s.ref for s in inventory.vms()[:4]]
    inventory.tag(TAG, vms)
    # vcsim gives the re-created tag a new id; a real vCenter keeps its tags' ids across a
    # restart, so the name -> id cache is not what these tests are about.
    client = make_client(sim, tag_cache_ttl=0.0)
    logins = count_logins(client, monkeypatch)
    client.connect()
    assert logins == [1]
    return client, vms, logins


def test_gather_after_a_restart_logs_in_again_and_reads_the_facts(
    sim: Vcsim, make_client: MakeClient, setup: tuple[VSphereClient, list[VmRef], list[int]]
) -> None:
    client, vms, logins = setup
    before = client.gather(TAG, None)
    restarted(sim, make_client, vms)

    after = client.gather(TAG, None)

    assert len(logins) == 2  # one extra login
    assert sorted(f.ref for f in after.facts) == sorted(vms)
    assert all(f.power_state == PowerState.POWERED_ON for f in after.facts)
    assert [(f.ref, f.name, f.power_state, f.tags) for f in after.facts] == [
        (f.ref, f.name, f.power_state, f.tags) for f in before.facts
    ]


def test_read_vms_and_find_preemptible_after_a_restart_read_the_truth(
    sim: Vcsim, make_client: MakeClient, setup: tuple[VSphereClient, list[VmRef], list[int]]
) -> None:
    client, vms, logins = setup
    before = client.read_vms(vms)
    restarted(sim, make_client, vms)

    assert client.read_vms(vms) == before
    selection = client.find_preemptible(TAG, max_vms=10)

    assert sorted(selection.selected) == sorted(vms) and selection.left_out == []
    assert len(logins) == 2


def test_stop_after_a_restart_logs_in_again_and_powers_off(
    sim: Vcsim, make_client: MakeClient, setup: tuple[VSphereClient, list[VmRef], list[int]]
) -> None:
    client, vms, logins = setup
    restarted(sim, make_client, vms)

    outcome = client.stop(
        vms[:2],
        action=StopAction.POWER_OFF,
        soft_shutdown_grace=timedelta(seconds=1),
        fanout=Fanout(2),
    )

    assert sorted(outcome.powered_off) == sorted(vms[:2]) and outcome.failed == []
    assert len(logins) == 2
    states = Inventory(make_client(sim)).vms()
    off = {s.ref for s in states if s.power_state == PowerState.POWERED_OFF}
    assert off == set(vms[:2])


def test_annotate_after_a_restart_logs_in_again(
    sim: Vcsim, make_client: MakeClient, setup: tuple[VSphereClient, list[VmRef], list[int]]
) -> None:
    client, vms, logins = setup
    client.annotate(vms, "k", "before")
    restarted(sim, make_client, vms)

    outcome = client.annotate(vms, "k", "after")

    assert outcome.annotated == vms and outcome.failed == []
    assert client.read_custom_field(vms, "k") == {ref: "after" for ref in vms}
    assert len(logins) == 2


def test_a_session_that_cannot_be_renewed_is_a_clear_error(
    sim: Vcsim, make_client: MakeClient, setup: tuple[VSphereClient, list[VmRef], list[int]]
) -> None:
    client, vms, _ = setup
    sim.args = (*SMALL, "-username", sim.username, "-password", "changed-after-restart")
    sim.restart()

    with pytest.raises(LoginError, match="refused the login of user 'user'"):
        client.read_vms(vms)  # never VMs with an empty power state
    with pytest.raises(LoginError, match="refused the REST login"):
        client.gather(TAG, None)  # the tag's lookup comes first


@pytest.mark.parametrize("read", ["gather", "find_preemptible"])
def test_tags_re_created_after_a_restart_are_found_despite_the_name_cache(
    read: str, sim: Vcsim, make_client: MakeClient
) -> None:
    # The default name cache (5 min), warm before the restart. vcsim gives the re-created tag
    # a new id, as a vCenter restored from backup or rebuilt would: ids cached from the
    # forgotten session must not hide it (gather found no tagged VM until the cache expired).
    inventory = Inventory(make_client(sim))
    vms = [s.ref for s in inventory.vms()[:3]]
    inventory.tag(TAG, vms)
    inventory.tag("low", vms[:1], category="priority")
    client = make_client(sim)
    old_ids = client.tagging.find_tag_ids(TAG)
    assert len(client.gather(TAG, None, ["priority"]).facts) == 3

    restarted(sim, make_client, vms)
    Inventory(make_client(sim)).tag("low", vms[:1], category="priority")
    assert make_client(sim).tagging.find_tag_ids(TAG) != old_ids  # what the cache holds is stale

    if read == "gather":
        facts = client.gather(TAG, None, ["priority"]).facts
        assert sorted(f.ref for f in facts) == sorted(vms)
        assert {f.ref: sorted(t.name for t in f.tags) for f in facts}[vms[0]] == ["low", TAG]
    else:
        assert sorted(client.find_preemptible(TAG, max_vms=10).selected) == sorted(vms)
    assert client.tagging.renewals == 1
