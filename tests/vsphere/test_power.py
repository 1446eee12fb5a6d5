"""power_off on vcsim: hard and soft, confirmed by reading the power state back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.vsphere.conftest import MakeClient
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmIssue, VmRef
from vsphere_preemption.domain.selection import PowerState
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.vsphere.tasks import Fanout

GRACE = timedelta(seconds=30)


def power_states(client: VSphereClient, vms: list[VmRef]) -> dict[VmRef, str]:
    return {ref: state.power_state for ref, state in client.read_vms(vms).items()}


def some_vms(inventory: Inventory, n: int) -> list[VmRef]:
    return [s.ref for s in inventory.vms()[:n]]


def test_hard_power_off_is_confirmed(client: VSphereClient, inventory: Inventory) -> None:
    vms = some_vms(inventory, 4)
    bystander = inventory.vms()[8].ref

    outcome = client.power_off(vms, force=True, soft_shutdown_grace=GRACE, fanout=Fanout(2))

    assert outcome.powered_off == vms
    assert outcome.failed == [] and outcome.forced_after_grace == []
    assert power_states(client, [*vms, bystander]) == {
        **{ref: PowerState.POWERED_OFF for ref in vms},
        bystander: PowerState.POWERED_ON,
    }


@pytest.mark.parametrize("force", [True, False])
def test_powering_off_twice_acts_once(
    client: VSphereClient, inventory: Inventory, force: bool
) -> None:
    vms = some_vms(inventory, 3)
    first = client.power_off(vms, force=force, soft_shutdown_grace=GRACE, fanout=Fanout(3))

    before = client.round_trips
    second = client.power_off(vms, force=force, soft_shutdown_grace=GRACE, fanout=Fanout(3))

    assert first.powered_off == second.powered_off == vms
    assert second.failed == [] and second.forced_after_grace == []
    # A retry reads the power states in one request and finds nothing to do.
    assert client.round_trips - before == 1


def test_soft_shutdown_takes_effect_on_vcsim(client: VSphereClient, inventory: Inventory) -> None:
    # vcsim simulates the guest shutdown (even without VMware Tools): the VM goes off.
    vms = some_vms(inventory, 3)
    beats: list[str] = []

    outcome = client.power_off(
        vms, force=False, soft_shutdown_grace=GRACE, fanout=Fanout(2, beats.append)
    )

    assert outcome.powered_off == vms
    assert outcome.forced_after_grace == [] and outcome.forced_without_grace == []
    assert set(power_states(client, vms).values()) == {PowerState.POWERED_OFF}


def test_grace_expiry_forces_the_vms_still_on(
    vcsim_factory: Callable[..., Vcsim], make_client: MakeClient
) -> None:
    # Guest shutdown that takes longer than the grace period: vcsim answers ShutdownGuest
    # after 1.5 s and powers the VM off 1.5 s after that; the grace is 0.2 s.
    delays = "ShutdownGuest:1500,LockHandoff:0"  # LockHandoff:0 lets reads in meanwhile
    sim = vcsim_factory("-cluster", "1", "-host", "1", "-vm", "3", "-method-delay", delays)
    client = make_client(sim)
    vms = [s.ref for s in Inventory(client).vms()[:2]]
    beats: list[str] = []

    outcome = client.power_off(
        vms,
        force=False,
        soft_shutdown_grace=timedelta(seconds=0.2),
        fanout=Fanout(2, beats.append),
    )

    assert outcome.forced_after_grace == vms
    assert outcome.powered_off == vms
    assert outcome.failed == []
    assert set(power_states(client, vms).values()) == {PowerState.POWERED_OFF}
    # It kept the caller informed while the slow shutdown calls were in flight.
    assert any(beat.startswith("guest shutdown:") for beat in beats)


def test_refused_guest_shutdown_is_forced_at_once_with_the_reason(
    client: VSphereClient, inventory: Inventory
) -> None:
    # vcsim's guest shutdown never lacks VMware Tools, but refuses a suspended VM: the
    # same path a real "ToolsUnavailable" takes.
    running, suspended = some_vms(inventory, 2)
    inventory.suspend([suspended])

    outcome = client.power_off(
        [running, suspended], force=False, soft_shutdown_grace=GRACE, fanout=Fanout(2)
    )

    assert outcome.powered_off == [running, suspended]
    assert outcome.forced_after_grace == []
    assert outcome.forced_without_grace == [
        VmIssue(suspended, "guest shutdown refused: InvalidPowerState (VM is suspended)")
    ]
    assert set(power_states(client, [running, suspended]).values()) == {PowerState.POWERED_OFF}


def test_per_vm_problems_are_reported_not_raised(
    client: VSphereClient, inventory: Inventory
) -> None:
    vm = some_vms(inventory, 1)[0]
    ghost = VmRef("vm-987654")
    host = VmRef("host-21", "HostSystem")

    outcome = client.power_off(
        [ghost, vm, host, vm], force=True, soft_shutdown_grace=GRACE, fanout=Fanout(2)
    )

    assert outcome.powered_off == [vm]
    assert outcome.failed == [
        VmIssue(ghost, "virtual machine not found (deleted?)"),
        VmIssue(host, "not a virtual machine (HostSystem)"),
    ]


def test_at_most_max_concurrency_calls_in_flight(
    vcsim_factory: Callable[..., Vcsim], make_client: MakeClient
) -> None:
    # Slow power-off calls (0.3 s each) so that calls overlap whenever they are allowed to.
    delays = "PowerOffVM_Task:300"
    sim = vcsim_factory("-cluster", "1", "-host", "1", "-vm", "5", "-method-delay", delays)
    client = make_client(sim)
    vms = [s.ref for s in Inventory(client).vms()][:8]
    lock = threading.Lock()
    in_flight = peak = 0
    real_call = client.session.call

    def counting_call(fn: Callable[..., Any]) -> Any:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return real_call(fn)
        finally:
            with lock:
                in_flight -= 1

    client.session.call = counting_call  # type: ignore[method-assign]
    outcome = client.power_off(vms, force=True, soft_shutdown_grace=GRACE, fanout=Fanout(3))

    assert outcome.powered_off == vms
    assert peak == 3


def test_losing_vcenter_raises_a_retryable_error(sim: Vcsim, client: VSphereClient) -> None:
    vms = [s.ref for s in Inventory(client).vms()[:2]]
    sim.stop()
    with pytest.raises(VSphereError, match=r"cannot .*vCenter 127\.0\.0\.1"):
        client.power_off(vms, force=True, soft_shutdown_grace=GRACE, fanout=Fanout(2))


def test_bad_concurrency_is_refused() -> None:
    # Refused where the fanout is built: before any VM is acted on.
    with pytest.raises(ValueError, match="max_concurrency must be at least 1, not 0"):
        Fanout(max_concurrency=0)
