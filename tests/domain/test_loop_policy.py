"""The policy's `loop` and `targets.basis`: read, written back, judged in a request."""

from __future__ import annotations

import pytest

from vsphere_preemption.domain.model import Criticality, Resources, VmFacts, VmRef
from vsphere_preemption.domain.overrides import apply_request
from vsphere_preemption.domain.plan import Basis, plan
from vsphere_preemption.domain.policy import LoopPolicy, PolicyError, UseBasis, policy_from_mapping


def test_the_loop_is_off_by_default_and_left_out_of_the_written_policy() -> None:
    policy = policy_from_mapping({})
    assert policy.loop == LoopPolicy() and not policy.loop.enabled
    assert "loop" not in policy.to_wire()
    assert policy.targets.basis is UseBasis.USAGE
    assert "basis" not in policy.to_wire()["targets"]


def test_loop_and_basis_are_read_and_survive_a_round_trip() -> None:
    policy = policy_from_mapping(
        {"loop": {"settle": "1m", "maxRounds": 3}, "targets": {"cpu": 70, "basis": "allocation"}}
    )
    assert policy.loop == LoopPolicy(settle_seconds=60, max_rounds=3) and policy.loop.enabled
    assert policy.targets.basis is UseBasis.ALLOCATION
    assert policy_from_mapping(policy.to_wire()) == policy


def test_bad_loop_and_basis_fields_are_named() -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_mapping(
            {"loop": {"settle": "soon", "maxRounds": 0, "x": 1}, "targets": {"basis": "load"}}
        )
    text = str(caught.value)
    for path in ("loop.settle", "loop.maxRounds", "loop.x", "targets.basis"):
        assert path in text


def test_a_request_may_only_shorten_the_loop() -> None:
    admin = policy_from_mapping({"loop": {"settle": "30s", "maxRounds": 3}})
    fewer = apply_request(admin, {"loop": {"maxRounds": 2, "settle": "1m"}})
    assert fewer.policy.loop == LoopPolicy(60, 2) and not fewer.refused
    more = apply_request(admin, {"loop": {"maxRounds": 5, "settle": "1s"}})
    assert more.policy.loop == admin.loop
    assert {r.field for r in more.refused} == {"loop.maxRounds", "loop.settle"}
    basis = apply_request(admin, {"targets": {"basis": "allocation"}})
    assert basis.policy.targets.basis is UseBasis.USAGE
    assert [r.field for r in basis.refused] == ["targets.basis"]


def test_on_the_allocation_basis_a_victim_frees_its_allocation() -> None:
    vm = VmFacts(
        ref=VmRef("vm-1"),
        name="a",
        power_state="poweredOn",
        in_scope=True,
        usage=Resources(cpu_mhz=10, memory_mb=20),
        allocation=Resources(cpu_mhz=2000, memory_mb=4096),
    )
    for basis, share, how in (
        ("usage", Resources(10, 20), Basis.MEASURED),
        ("allocation", Resources(2000, 4096), Basis.ALLOCATION),
    ):
        chosen = plan(
            [vm], None, policy_from_mapping({"targets": {"basis": basis}}), Criticality.HIGH
        )
        assert (chosen.victims[0].share, chosen.victims[0].basis) == (share, how)
