"""Victim selection: pure, no servers."""

from __future__ import annotations

import itertools

import pytest

from vsphere_preemption.domain.model import VmIssue, VmRef
from vsphere_preemption.domain.selection import (
    PowerState,
    VmState,
    dedupe,
    moref_key,
    select_preemptible,
    why_not_running,
)


def vm(value: str) -> VmRef:
    return VmRef(value)


def state(value: str, name: str, power: str = PowerState.POWERED_ON) -> VmState:
    return VmState(ref=vm(value), name=name, power_state=power, host="host-1", cluster="C0")


def test_only_powered_on_vms_are_selected_and_the_rest_have_reasons() -> None:
    host = VmRef("host-21", "HostSystem")
    datastore = VmRef("datastore-12", "Datastore")
    states = {
        s.ref: s
        for s in [
            state("vm-1", "a", PowerState.POWERED_ON),
            state("vm-2", "b", PowerState.POWERED_OFF),
            state("vm-3", "c", PowerState.SUSPENDED),
            state("vm-4", "d", PowerState.POWERED_ON),
        ]
    }
    tagged = [vm("vm-4"), host, vm("vm-1"), vm("vm-2"), datastore, vm("vm-3"), vm("vm-404")]

    selection = select_preemptible(tagged, states, max_vms=10)

    assert selection.selected == [vm("vm-1"), vm("vm-4")]
    reasons = {issue.vm: issue.reason for issue in selection.left_out}
    assert reasons == {
        host: "not a virtual machine (HostSystem)",
        datastore: "not a virtual machine (Datastore)",
        vm("vm-2"): "already powered off",
        vm("vm-3"): "suspended: holds no CPU or memory to free",
        vm("vm-404"): "virtual machine not found (deleted after tagging?)",
    }


def test_the_cap_applies_after_filtering() -> None:
    # 3 VMs off come first by name; had the cap applied before filtering, only 1 would remain.
    states = {
        s.ref: s
        for s in [
            state("vm-1", "a-off", PowerState.POWERED_OFF),
            state("vm-2", "b-off", PowerState.POWERED_OFF),
            state("vm-3", "c-off", PowerState.POWERED_OFF),
            state("vm-4", "d-on"),
            state("vm-5", "e-on"),
            state("vm-6", "f-on"),
            state("vm-7", "g-on"),
        ]
    }
    selection = select_preemptible(list(states), states, max_vms=3)

    assert selection.selected == [vm("vm-4"), vm("vm-5"), vm("vm-6")]
    assert VmIssue(vm("vm-7"), "over the cap of 3 VMs per run") in selection.left_out
    assert len(selection.left_out) == 4


def test_order_is_by_name_then_natural_moref_whatever_the_input_order() -> None:
    states = [
        state("vm-10", "web"),
        state("vm-9", "web"),
        state("vm-100", "Web"),
        state("vm-2", "api"),
        state("vm-1", "Zeta"),
    ]
    expected = [vm("vm-2"), vm("vm-100"), vm("vm-9"), vm("vm-10"), vm("vm-1")]
    for permutation in itertools.permutations(states):
        refs = [s.ref for s in permutation]
        selection = select_preemptible(refs, {s.ref: s for s in states}, 10)
        assert selection.selected == expected


def test_left_out_order_is_deterministic_too() -> None:
    states = {s.ref: s for s in [state(f"vm-{i}", f"n{i}") for i in range(12)]}
    refs = list(states)
    first = select_preemptible(refs, states, 2)
    second = select_preemptible(list(reversed(refs)), states, 2)
    assert first == second


def test_duplicates_count_once() -> None:
    states = {s.ref: s for s in [state("vm-1", "a"), state("vm-2", "b")]}
    selection = select_preemptible([vm("vm-1"), vm("vm-2"), vm("vm-1")], states, 10)
    assert selection.selected == [vm("vm-1"), vm("vm-2")]
    assert selection.left_out == []
    assert dedupe([vm("vm-2"), vm("vm-1"), vm("vm-2")]) == [vm("vm-2"), vm("vm-1")]


def test_nothing_tagged_selects_nothing() -> None:
    selection = select_preemptible([], {}, 10)
    assert selection.selected == []
    assert selection.left_out == []


@pytest.mark.parametrize("bad", [0, -1])
def test_cap_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="max_vms must be at least 1"):
        select_preemptible([], {}, bad)


def test_unknown_power_state_is_left_out_with_its_name() -> None:
    assert why_not_running(state("vm-1", "a", "unknown")) == "power state 'unknown': not running"
    assert why_not_running(state("vm-1", "a")) is None


def test_moref_key_is_numeric_aware() -> None:
    values = ["vm-100", "vm-9", "vm-10", "vm-1a", "vm-1"]
    assert sorted(values, key=moref_key) == ["vm-1", "vm-1a", "vm-9", "vm-10", "vm-100"]
