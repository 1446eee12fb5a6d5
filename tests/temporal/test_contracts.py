"""The activities' dataclasses through Temporal's default data converter, as the history keeps
them: `PlanOutput.plan` is typed `PlanWire`, and reaches the workflow as it did untyped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from tests.domain.test_shapes import a_plan
from vsphere_preemption.domain.model import Criticality, Resources, VmRef
from vsphere_preemption.domain.plan import Basis, Plan, Victim
from vsphere_preemption.temporal.contracts import PlanOutput
from vsphere_preemption.wire import go_json


@dataclass(frozen=True)
class UntypedPlanOutput:
    """PlanOutput as it was before its plan had a type."""

    plan: dict[str, Any]
    usage: Any
    scope_vms: int | None = None
    notes: list[str] = field(default_factory=list)


async def through_history(output: PlanOutput) -> PlanOutput:
    [back] = await DataConverter.default.decode(await recorded(output), [PlanOutput])
    assert isinstance(back, PlanOutput)
    return back


async def recorded(output: PlanOutput) -> list[Payload]:
    return await DataConverter.default.encode([output])


async def test_a_plan_reaches_the_workflow_as_it_did_untyped() -> None:
    chosen = a_plan()
    output = PlanOutput(plan=chosen.to_wire(), usage=None, notes=["n"])
    back = await through_history(output)
    [untyped] = await DataConverter.default.decode(await recorded(output), [UntypedPlanOutput])
    # The same bytes in the query answer and the events (go_json writes them; the converter's
    # JSON has its keys sorted, typed or not).
    assert go_json(back.plan) == go_json(untyped.plan)
    assert back.plan == chosen.to_wire()
    assert Plan.from_wire(back.plan) == chosen
    assert back.notes == ["n"]


async def test_the_converter_reads_a_float_key_as_a_float() -> None:
    # Why the plan's figures are floats where they are made (the vSphere adapter's reads): the
    # converter reads a TypedDict key by key, and a `float` key's 300 comes back as 300.0.
    as_int = Victim(VmRef("vm-1"), "a", 1, "r", Resources(300, None), Basis.MEASURED)
    chosen = Plan((as_int,), (), None, (), (), Criticality.LOW)
    back = await through_history(PlanOutput(plan=chosen.to_wire(), usage=None))
    assert back.plan["victims"][0]["share"]["cpuMhz"] == 300.0
    assert b'"cpuMhz":300.0' in go_json(back.plan)
