"""TLS verification on by default; the password never leaves the config object."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.vsphere.conftest import MakeClient, config_for
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import LoginError, TLSVerificationError, VSphereError
from vsphere_preemption.vsphere.tasks import Fanout

PASSWORD = "S3cret-pw-do-not-leak"
WRONG = "Wr0ng-pw-do-not-leak-either"
TAG = "preemptible"


def power_off(client: VSphereClient, vms: list[VmRef]) -> None:
    client.power_off(vms, force=True, soft_shutdown_grace=timedelta(1), fanout=Fanout(2))


# -- TLS ------------------------------------------------------------------------------


def test_verification_is_on_by_default_and_fails_clearly(
    sim: Vcsim, make_client: MakeClient, inventory: Inventory
) -> None:
    inventory.tag(TAG, [inventory.vms()[0].ref])
    client = make_client(sim, config=config_for(sim, insecure=False))
    # The tagging REST API and the SOAP API both verify.
    with pytest.raises(TLSVerificationError, match="cannot verify the TLS certificate") as rest:
        client.find_preemptible(TAG, max_vms=10)
    with pytest.raises(TLSVerificationError, match="self-signed certificate") as soap:
        power_off(client, [VmRef("vm-1")])
    for error in (rest.value, soap.value):
        assert "127.0.0.1" in str(error) and "VCENTER_INSECURE=true" in str(error)
        assert error.__cause__ is None and error.__suppress_context__


def test_insecure_skips_verification(sim: Vcsim, make_client: MakeClient) -> None:
    client = make_client(sim, config=config_for(sim, insecure=True))
    vms = [s.ref for s in Inventory(client).vms()[:1]]
    power_off(client, vms)
    assert client.read_vms(vms)[vms[0]].power_state == "poweredOff"


def test_a_ca_bundle_with_vcsims_certificate_verifies_it(
    sim: Vcsim, make_client: MakeClient, inventory: Inventory, tmp_path: Path
) -> None:
    # vcsim's certificate is its own CA and names 127.0.0.1 (SAN): it verifies for real.
    bundle = tmp_path / "vcsim.pem"
    bundle.write_text(ssl.get_server_certificate(("127.0.0.1", sim.port)))
    inventory.tag(TAG, [s.ref for s in inventory.vms()[:2]])
    client = make_client(sim, config=config_for(sim, insecure=False, ca_bundle=bundle))

    selection = client.find_preemptible(TAG, max_vms=10)
    power_off(client, selection.selected)

    assert len(selection.selected) == 2
    assert {s.power_state for s in client.read_vms(selection.selected).values()} == {"poweredOff"}


def test_a_ca_bundle_that_does_not_sign_vcsim_is_refused(
    sim: Vcsim, make_client: MakeClient
) -> None:
    paths = ssl.get_default_verify_paths()
    system_bundle = Path(paths.cafile or paths.openssl_cafile)
    assert system_bundle.exists()
    client = make_client(sim, config=config_for(sim, insecure=False, ca_bundle=system_bundle))
    with pytest.raises(TLSVerificationError):
        client.read_vms([VmRef("vm-1")])


# -- secrets --------------------------------------------------------------------------


@pytest.fixture
def guarded(vcsim_factory: Callable[..., Vcsim]) -> Vcsim:
    """A vcsim that checks the password (by default it accepts any)."""
    sim = vcsim_factory("-cluster", "1", "-host", "1", "-vm", "2",
                        "-username", "alice", "-password", PASSWORD)  # fmt: skip
    assert sim.password == PASSWORD
    return sim


def test_a_wrong_password_is_refused_without_being_repeated(
    guarded: Vcsim, make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(guarded, config=config_for(guarded, password=WRONG))
    with pytest.raises(LoginError) as rest:
        client.find_preemptible(TAG, max_vms=10)
    with pytest.raises(LoginError) as soap:
        power_off(client, [VmRef("vm-1")])

    for error in (rest.value, soap.value):
        assert "'alice'" in str(error)
        assert WRONG not in str(error) and PASSWORD not in str(error)
        assert error.__cause__ is None
    out = capsys.readouterr()
    assert WRONG not in out.out + out.err


def test_the_password_is_nowhere_after_a_full_run(
    guarded: Vcsim, make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(guarded)
    client = make_client(guarded, config=config)
    inventory = Inventory(client)
    vms = [s.ref for s in inventory.vms()]
    inventory.tag(TAG, [*vms, VmRef("host-21", "HostSystem")])
    selection = client.find_preemptible(TAG, max_vms=10)
    outcome = client.power_off(
        [*selection.selected, VmRef("vm-987654")],
        force=False,
        soft_shutdown_grace=timedelta(seconds=5),
        fanout=Fanout(2),
    )
    annotated = client.annotate(selection.selected, "k", "v")
    client.close()

    assert PASSWORD not in repr(config) and PASSWORD not in str(config)
    everything = repr((selection, outcome, annotated, client.__dict__))
    assert PASSWORD not in everything
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err


def test_errors_of_an_unreachable_vcenter_carry_no_password(
    sim: Vcsim, make_client: MakeClient
) -> None:
    client = make_client(sim, config=config_for(sim, password=PASSWORD))
    sim.stop()
    for call in (
        lambda: client.find_preemptible(TAG, max_vms=10),
        lambda: power_off(client, [VmRef("vm-1")]),
        lambda: client.annotate([VmRef("vm-1")], "k", "v"),
    ):
        with pytest.raises(VSphereError) as error:
            call()
        assert "127.0.0.1" in str(error.value)
        assert PASSWORD not in str(error.value) and error.value.__cause__ is None
