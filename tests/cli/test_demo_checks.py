"""The demo's checks of a preemption: the VMs stopped, the plan, the annotations, the event."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.cli.demo_fixtures import (
    ALARM,
    BATCHES,
    ELSEWHERE_VM,
    LEFT_OUT,
    ON,
    PROTECTED,
    RESUMED,
    RESUMED_NOTES,
    RESUMING,
    SELECTED,
    STAYED_OFF,
    _one_failure,
    annotation,
    expectations,
    extras,
    failures,
    good_observations,
    resumed_observations,
    the_plan,
)
from vsphere_preemption.devtools.demo.checks import Observations, verify
from vsphere_preemption.domain.plan import LeaveReason
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE


def test_everything_as_expected_passes_every_check() -> None:
    checks = verify(expectations(), good_observations())
    assert len(checks) == 12 and all(c.ok for c in checks), checks
    checks = verify(expectations(RESUMING), resumed_observations())
    assert len(checks) == 14 and all(c.ok for c in checks), checks
    # Each run is checked for what its policy says happens on clear.
    assert failures(resumed_observations()).keys() == {STAYED_OFF}
    assert set(failures(good_observations(), RESUMING)) == {RESUMED, BATCHES, RESUMED_NOTES}


def test_a_vm_left_on_or_an_extra_vm_off_fails() -> None:
    obs = good_observations()
    after = dict(obs.after)
    after[SELECTED[1]] = obs.before[SELECTED[1]]  # still on
    after[ON[3].ref] = replace(ON[3], power_state="poweredOff")  # not expected
    claim, why = _one_failure(replace(obs, after=after))
    assert claim == "exactly the 2 planned VMs on DC0_C0 were powered off"
    assert "still not off: DC0_C0_RP0_VM0 (vm-40)" in why
    assert "changed but not expected: DC0_C0_RP0_VM3 (vm-49)" in why


def test_a_protected_or_out_of_scope_vm_powered_off_fails() -> None:
    obs = good_observations()
    after = dict(obs.after)
    for state in (PROTECTED, ELSEWHERE_VM):
        after[state.ref] = replace(state, power_state="poweredOff")
    found = failures(replace(obs, after=after))
    assert set(found) == {
        "exactly the 2 planned VMs on DC0_C0 were powered off",
        "the protected VM and the tagged VMs out of scope are still on",
    }
    power = " | ".join(found["exactly the 2 planned VMs on DC0_C0 were powered off"])
    assert "off outside DC0_C0: DC0_C1_RP0_VM0 (vm-140)" in power
    assert found["the protected VM and the tagged VMs out of scope are still on"] == (
        "DC0_C0_RP0_VM2 (vm-46): poweredOff",
        "DC0_C1_RP0_VM0 (vm-140): poweredOff",
    )


PLAN_CLAIM = "the plan in the query answer: victims by priority, the others left out and why"


def with_extras(obs: Observations, **changes: Any) -> Observations:
    assert obs.state is not None
    return replace(obs, state=replace(obs.state, extra=extras(**changes)))


def test_a_plan_out_of_order_or_with_a_wrong_reason_fails() -> None:
    obs = good_observations()
    backwards = the_plan(victims=SELECTED[::-1], priorities=(5, 1))
    claim, why = _one_failure(with_extras(obs, plan=backwards))
    assert claim == PLAN_CLAIM
    assert "victims DC0_C0_RP0_VM0 (vm-40), DC0_C0_RP0_VM1 (vm-43) (expected " in why
    assert "victims' priorities not ascending: [5, 1]" in why
    wrong = the_plan(left_out={**LEFT_OUT, ELSEWHERE_VM.ref: LeaveReason.OVER_CAP})
    _, why = _one_failure(with_extras(obs, plan=wrong))
    assert why == "DC0_C1_RP0_VM0 (vm-140) left out as over_cap, not out_of_scope"
    fewer = the_plan(left_out={k: v for k, v in LEFT_OUT.items() if k != PROTECTED.ref})
    _, why = _one_failure(with_extras(obs, plan=fewer))
    assert why == "DC0_C0_RP0_VM2 (vm-46) left out as None, not protected"
    _, why = _one_failure(with_extras(obs, scope="vcenter", entity=None))
    assert why == "scope 'vcenter', entity None"
    _, why = _one_failure(with_extras(obs, plan={"error": "vCenter unreachable"}))
    assert why.startswith("no readable plan")


def test_the_query_and_the_event_must_follow_the_plans_order_and_carry_it() -> None:
    obs = good_observations()
    assert obs.state is not None
    state = replace(obs.state, virtual_machines=tuple(SELECTED[::-1]))
    claim, why = _one_failure(replace(obs, state=state))
    assert claim == "the workflow's current_state names the preempted VMs, in the plan's order"
    assert why.startswith("virtualMachines DC0_C0_RP0_VM0 (vm-40), DC0_C0_RP0_VM1 (vm-43)")
    data = {k: v for k, v in obs.events[1].data.items() if k != "plan"}
    claim, why = _one_failure(
        replace(obs, events=[obs.events[0], replace(obs.events[1], data=data)])
    )
    assert claim == f"the sink received the {PREEMPTED_EVENT_TYPE}, with the plan"
    assert "data: no readable plan" in why


def test_a_missing_or_wrong_annotation_fails() -> None:
    obs = good_observations()
    bad = annotation(forced_shutdown=False, workflow_id="other").to_json()
    claim, why = _one_failure(replace(obs, annotations={SELECTED[0]: bad, ON[2].ref: "{}"}))
    assert claim.startswith("each preempted VM carries a valid annotation")
    assert "DC0_C0_RP0_VM0 (vm-40): no annotation" in why
    assert "workflowID='other'" in why and "forcedShutdown=False" in why
    assert "annotated but not preempted: DC0_C0_RP0_VM2 (vm-46)" in why
    _, why = _one_failure(replace(obs, annotations={**obs.annotations, SELECTED[0]: "not json"}))
    assert "does not parse" in why


def test_a_missing_or_misnamed_event_fails() -> None:
    obs = good_observations()
    scheduled, preempted = obs.events
    claim, why = _one_failure(replace(obs, events=[scheduled]))
    assert claim == f"the sink received the {PREEMPTED_EVENT_TYPE}, with the plan"
    assert "nothing of that type arrived" in why
    wrong = replace(preempted, attributes={**preempted.attributes, "id": "x-1"})
    _, why = _one_failure(replace(obs, events=[scheduled, wrong]))
    assert f"expected '{ALARM}-4242'" in why
    fewer = replace(preempted, data={**preempted.data, "virtualMachines": []})
    _, why = _one_failure(replace(obs, events=[scheduled, fewer]))
    assert "virtualMachines none (expected DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0" in why


def test_replies_state_and_completion_are_checked() -> None:
    obs = good_observations()
    found = failures(
        replace(
            obs,
            raising_reply=(503, {"error": "failed to run preemption"}),
            state=None,
            lowering_reply=(200, {"decision": "ignore"}),
            final_status="running",
        )
    )
    assert set(found) == {
        "the function accepted the raising alarm event",
        PLAN_CLAIM,
        "the workflow's current_state names the preempted VMs, in the plan's order",
        "the function accepted the lowering alarm event",
        "the workflow completed after the lowering event",
    }
    assert found["the workflow completed after the lowering event"] == ("its status is running",)
