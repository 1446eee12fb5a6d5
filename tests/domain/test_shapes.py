"""The wire shapes: each writer writes its shape, a reader of outside JSON keeps what has it,
and one MoRef converter serves every reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import pytest

from vsphere_preemption.domain.achieved import planned_vs_achieved
from vsphere_preemption.domain.model import (
    Criticality,
    EntityUsage,
    Resources,
    TagName,
    VmFacts,
    VmRef,
)
from vsphere_preemption.domain.overrides import Refusal
from vsphere_preemption.domain.pauses import Hold
from vsphere_preemption.domain.plan import Plan, plan
from vsphere_preemption.domain.policy import policy_from_mapping
from vsphere_preemption.domain.shapes import (
    AchievedWire,
    HoldWire,
    LoopEntry,
    MoRefWire,
    PlanFailedWire,
    PlanWire,
    RefusalWire,
    RunRecord,
    conforms,
    known_fields,
    moref_from_wire,
    moref_to_wire,
    parsed,
)
from vsphere_preemption.wire import WireError, vm_ref_from_wire

CLUSTER = VmRef("domain-c7", "ClusterComputeResource")


def a_plan() -> Plan:
    """A plan with every part: victims, left-outs (one not a VM), a target, a budget, notes."""
    policy = policy_from_mapping(
        {
            "targets": {"cpu": 60, "memory": 90},
            "groups": {"category": "app", "budgets": {"web": {"maxUnavailable": "50%"}}},
        }
    )
    web = frozenset({TagName("app", "web")})
    vms = [
        VmFacts(VmRef(f"vm-{n}"), f"vm{n}", "poweredOn", True, web, usage=Resources(300.0, None))
        for n in (1, 2, 3)
    ]
    use = EntityUsage(CLUSTER, Resources(1000.0, 4096.0), Resources(900.0, 1024.0))
    return plan(vms, use, policy, Criticality.HIGH, non_vms=[VmRef("ds-1", "Datastore")])


# -- the one MoRef converter -------------------------------------------------------------------


def test_a_reference_goes_out_as_the_go_worker_writes_it_and_reads_back_in_either_case() -> None:
    assert moref_to_wire(CLUSTER) == {"Type": "ClusterComputeResource", "Value": "domain-c7"}
    assert moref_from_wire(moref_to_wire(CLUSTER)) == CLUSTER
    assert moref_from_wire({"type": "ClusterComputeResource", "value": "domain-c7"}) == CLUSTER
    assert moref_from_wire({"Value": "vm-58"}) == VmRef("vm-58")  # a VM unless it says


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("vm-58", "must be an object"),
        ({"Type": "VirtualMachine"}, "needs a Value"),
        ({"Type": "VirtualMachine", "Value": 58}, "Value must be a string"),
    ],
)
def test_what_is_no_reference_is_a_value_error_and_to_the_wire_a_wire_error(
    bad: object, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        moref_from_wire(bad)
    with pytest.raises(WireError, match=why):
        vm_ref_from_wire(bad)


# -- each writer writes its shape ---------------------------------------------------------------


def test_the_writers_write_their_shapes() -> None:
    chosen = a_plan()
    assert chosen.target is not None and chosen.budgets and chosen.left_out
    assert conforms(chosen.to_wire(), PlanWire)
    assert conforms(json.loads(json.dumps(chosen.to_wire())), PlanWire)  # as JSON reads back
    after = EntityUsage(CLUSTER, Resources(1000.0, 4096.0), Resources(500.0, 1000.0))
    assert conforms(planned_vs_achieved(chosen.target, after), AchievedWire)
    assert conforms(planned_vs_achieved(None, after), AchievedWire)
    assert conforms(Hold(None, "maintenance", "pause").to_wire(), HoldWire)
    until = Hold(datetime(2024, 5, 14, 9, tzinfo=UTC), "quiet", "quiet window").to_wire()
    assert conforms(until, HoldWire)
    assert conforms(Refusal("maxVMs", "raises the cap").to_wire(), RefusalWire)


def test_a_plan_read_from_outside_is_checked_for_its_shape_first() -> None:
    wire = json.loads(json.dumps(a_plan().to_wire()))
    assert Plan.from_wire(wire) == a_plan()
    del wire["victims"][0]["basis"]
    with pytest.raises(ValueError, match="not a plan"):
        Plan.from_wire(wire)
    with pytest.raises(ValueError, match="not a plan"):
        Plan.from_wire({"error": "vCenter unreachable", "notes": []})


# -- reading JSON from outside ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hint", "fits"),
    [
        (70, float, True),  # JSON writes 70.0 as 70 (Go does)
        (70.5, int, False),
        (True, int, False),  # a bool is no number
        (True, float, False),
        (None, float | None, True),
        ("a", str | None, True),
        ([1, 2], list[int], True),
        ([1, "2"], list[int], False),
        ({"cpu": 70, "memory": 80.5}, dict[str, float], True),
        ("poweroff", Literal["poweroff", "shutdown"], True),
        ("reboot", Literal["poweroff", "shutdown"], False),
        ({"any": ["thing"]}, Any, True),
    ],
)
def test_conforms_reads_json_kinds(value: object, hint: Any, fits: bool) -> None:
    assert conforms(value, hint) is fits


def test_a_typed_dict_needs_its_required_keys_and_lets_a_newer_writers_keys_be() -> None:
    ref = {"Type": "VirtualMachine", "Value": "vm-1"}
    assert conforms(ref, MoRefWire)
    assert conforms({**ref, "ServerGUID": "x"}, MoRefWire)  # newer govmomi: let be
    assert not conforms({"Value": "vm-1"}, MoRefWire)
    assert conforms({"rounds": 2, "maxRounds": 3, "stopped": "target met"}, LoopEntry)
    assert not conforms({"rounds": 2, "maxRounds": 3, "stopped": "x", "detail": 4}, LoopEntry)
    failed = {"error": "vCenter unreachable", "notes": []}
    assert conforms(failed, PlanFailedWire) and not conforms(failed, PlanWire)
    assert parsed(failed, PlanFailedWire) is failed
    assert parsed(failed, PlanWire) is None


def test_known_fields_keeps_what_has_its_shape_in_order() -> None:
    odd = {"outcome": "acted", "run": "one", "stopped": ["vm-1"], "failed": [3], "new": 1}
    record: RunRecord = known_fields(odd, RunRecord)
    assert list(record.items()) == [("outcome", "acted"), ("stopped", ["vm-1"])]
    with pytest.raises(TypeError, match="required keys"):
        known_fields({}, MoRefWire)
