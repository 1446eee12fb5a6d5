"""The demo's preempt-until-relieved (--loop): the rounds it expects, checks and tells."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.cli.demo_fixtures import (
    ALARM,
    CLUSTER,
    ELSEWHERE_VM,
    NAMES,
    NOW,
    OFF_BEFORE,
    ON,
    PROTECTED,
    SELECTED,
    VCSIM,
    activity,
    annotation,
    as_vcenter_has_it,
    done,
    expectations,
    extras,
    fired,
    good_observations,
    the_plan,
    timer,
)
from vsphere_preemption.devtools.demo.checks import Expectations, Observations, verify
from vsphere_preemption.devtools.demo.inventory import (
    LOOP,
    RESUME,
    Expected,
    InventoryTooSmall,
    demo_policy,
    expect,
    expect_next_round,
    loop_memory_target,
    plan_demo,
    policy_yaml,
)
from vsphere_preemption.devtools.demo.progress import HistoryNarrator
from vsphere_preemption.devtools.demo.report import round_lines
from vsphere_preemption.devtools.sink import ReceivedEvent
from vsphere_preemption.domain.model import Criticality, EntityUsage, Resources
from vsphere_preemption.domain.plan import LeaveReason, plan
from vsphere_preemption.domain.policy import policy_from_mapping
from vsphere_preemption.wire import (
    PREEMPTED_EVENT_TYPE,
    SCHEDULED_EVENT_TYPE,
    preempted_event_data,
    vm_ref_to_wire,
)

LOOP_TARGET = 1.43
# vcsim's alarmed cluster once the demo prepared it: 11 VMs of 32 MB on, 12 GB of memory.
CAPACITY = Resources(cpu_mhz=6882.0, memory_mb=12286.46)


def usage_with(memory_mb: float) -> EntityUsage:
    return EntityUsage(CLUSTER, CAPACITY, Resources(memory_mb=memory_mb))


def test_round_two_takes_the_newest_remaining_vm_and_the_target_needs_both_rounds() -> None:
    demo = plan_demo(VCSIM)
    boot = {s.ref: NOW + timedelta(seconds=i) for i, s in enumerate(VCSIM)}
    first = expect(demo, boot)
    second = expect_next_round(demo, boot, first)
    # The highs are left: VM6 booted after VM2, so it goes; VM2 is then not needed.
    assert [NAMES[r] for r in second.victims] == ["DC0_C0_RP0_VM6"]
    reasons = {NAMES.get(r, r.value): why for r, why in second.left_out.items()}
    assert reasons["DC0_C0_RP0_VM2"] == LeaveReason.NOT_NEEDED
    assert {reasons[NAMES[r]] for r in first.victims} == {LeaveReason.NOT_RUNNING}
    assert len(reasons) == len(first.left_out) + len(first.victims) - len(second.victims)
    sizes = {s.ref: 32.0 for s in VCSIM}
    target = loop_memory_target(usage_with(11 * 32.0), sizes, (first, second))
    assert target == LOOP_TARGET  # (352 - 5 x 32 - 16) MB of 12286 MB
    policy = demo_policy(loop_target=target)
    # The worker's plans agree: round 1 takes maxVMs and falls short of the target ...
    facts = as_vcenter_has_it(demo, boot)
    one = plan(facts, usage_with(11 * 32.0), policy, Criticality.HIGH, non_vms=[demo.host])
    assert tuple(one.refs) == first.victims
    assert one.target is not None and not one.target.reached
    # ... round 2, with those off and the use read anew, takes one more and reaches it.
    off = [replace(f, power_state="poweredOff") if f.ref in first.victims else f for f in facts]
    two = plan(off, usage_with(6 * 32.0), policy, Criticality.HIGH, non_vms=[demo.host])
    assert tuple(two.refs) == second.victims
    assert {o.ref: o.reason for o in two.left_out} == second.left_out
    assert two.target is not None and two.target.reached


def test_a_loop_needs_a_second_round_to_plan_and_the_clusters_memory_figures() -> None:
    demo = plan_demo(VCSIM)
    boot = {s.ref: NOW + timedelta(seconds=i) for i, s in enumerate(VCSIM)}
    everyone = Expected(tuple(s.ref for s in demo.running), {})
    with pytest.raises(InventoryTooSmall, match="more than 5 candidates"):
        expect_next_round(demo, boot, everyone)
    rounds = (expect(demo, boot), expect_next_round(demo, boot, expect(demo, boot)))
    sizes = {s.ref: 32.0 for s in VCSIM}
    with pytest.raises(InventoryTooSmall, match="memory capacity and use"):
        loop_memory_target(None, sizes, rounds)
    with pytest.raises(InventoryTooSmall, match="the memory size of vm-"):
        loop_memory_target(usage_with(352.0), {}, rounds)


def test_the_loop_policy_file_has_the_target_on_the_allocation_basis_and_the_loop() -> None:
    import yaml

    text = policy_yaml(loop_target=LOOP_TARGET)
    assert "targets: {memory: 1.43, basis: allocation}" in text
    assert "loop: {settle: 2s, maxRounds: 3}" in text
    looping = demo_policy(loop_target=LOOP_TARGET)
    assert policy_from_mapping(yaml.safe_load(text)) == looping
    assert looping.loop == LOOP and looping.loop.enabled
    assert demo_policy(resume=True, loop_target=LOOP_TARGET).resume == RESUME
    assert "loop" not in policy_yaml()  # without --loop: one round, as before


ROUND_2 = ON[3]  # over the cap in round 1
LEFT_IN_ROUND_2 = {
    PROTECTED.ref: LeaveReason.PROTECTED,
    OFF_BEFORE.ref: LeaveReason.NOT_RUNNING,
    ELSEWHERE_VM.ref: LeaveReason.OUT_OF_SCOPE,
    **dict.fromkeys(SELECTED, LeaveReason.NOT_RUNNING),
}
ALL_STOPPED = [*SELECTED, ROUND_2.ref]
ROUND_1_EXTRAS = {"round": 1, "maxRounds": 3, "achieved": {"reached": False}}
ROUND_2_EXTRAS = {
    "round": 2,
    "maxRounds": 3,
    "loopStopped": "target met",
    "achieved": {"reached": True},
}


def loop_expectations() -> Expectations:
    return replace(
        expectations(),
        later=(Expected((ROUND_2.ref,), LEFT_IN_ROUND_2),),
        max_rounds=3,
        loop_stopped="target met",
    )


def loop_record(**changes: Any) -> dict[str, Any]:
    return {
        "outcome": "acted",
        "loop": {"rounds": 2, "maxRounds": 3, "stopped": "target met"},
        "rounds": [
            {"round": 1, "stopped": [r.value for r in SELECTED], "achieved": {"reached": False}},
            {"round": 2, "stopped": [ROUND_2.ref.value], "achieved": {"reached": True}},
        ],
        **changes,
    }


def loop_observations(
    round_2: dict[str, Any] = ROUND_2_EXTRAS, record: dict[str, Any] | None = None
) -> Observations:
    """As good_observations, then round 2: ROUND_2 announced, stopped, reported."""
    obs = good_observations()
    scheduled, first = obs.events
    note = annotation()
    plan_2 = extras(plan=the_plan([ROUND_2.ref], (9,), LEFT_IN_ROUND_2))
    second_notice = ReceivedEvent(
        {**scheduled.attributes, "id": f"{ALARM}-4242-round-2-scheduled"},
        {**scheduled.data, "virtualMachines": [vm_ref_to_wire(ROUND_2.ref)]},
        "binary",
    )
    second = ReceivedEvent(
        {**first.attributes, "id": f"{ALARM}-4242-round-2"},
        {**preempted_event_data(note, [ROUND_2.ref]), **plan_2, **round_2},
        "binary",
    )
    first = replace(first, data={**first.data, **ROUND_1_EXTRAS})
    after = {**obs.after, ROUND_2.ref: replace(ROUND_2, power_state="poweredOff")}
    assert obs.state is not None
    return replace(
        obs,
        after=after,
        state=replace(obs.state, virtual_machines=tuple(ALL_STOPPED), extra=plan_2),
        annotations={ref: note.to_json() for ref in ALL_STOPPED},
        events=[scheduled, first, second_notice, second],
        after_lowering=after,
        runs=[loop_record() if record is None else record],
    )


ROUNDS_CLAIM = (
    "the run's record: 2 rounds, each with the VMs it stopped and what it achieved; "
    "the loop stopped: target met"
)
EVENT_PER_ROUND = (
    f"the sink received a {PREEMPTED_EVENT_TYPE} per round (2), each with its round's VMs "
    "and plan, the last saying why the loop stopped"
)


def loop_failures(obs: Observations) -> dict[str, str]:
    checks = verify(loop_expectations(), obs)
    return {c.claim: " | ".join(c.problems) for c in checks if not c.ok}


def test_two_rounds_that_met_the_target_pass_every_check_of_a_loop() -> None:
    checks = verify(loop_expectations(), loop_observations())
    assert len(checks) == 13 and all(c.ok for c in checks), checks
    assert ROUNDS_CLAIM in [c.claim for c in checks]
    # A single round is not what a loop that needs two rounds did.
    found = loop_failures(good_observations())
    assert {ROUNDS_CLAIM, EVENT_PER_ROUND} <= set(found)
    assert "no run record was read" in found[ROUNDS_CLAIM]
    assert "round 2: none with id" in found[EVENT_PER_ROUND]


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (
            loop_record(loop={"rounds": 2, "maxRounds": 3, "stopped": "maxRounds"}),
            "'stopped': 'maxRounds'",
        ),
        (loop_record(rounds=loop_record()["rounds"][:1]), "rounds [1]"),
        (
            loop_record(
                rounds=[
                    loop_record()["rounds"][0],
                    {"round": 2, "stopped": [ROUND_2.ref.value], "achieved": {"reached": False}},
                ]
            ),
            "round 2: achieved.reached False",
        ),
        (
            loop_record(
                rounds=[
                    {"round": 1, "stopped": [SELECTED[0].value], "achieved": {"reached": False}},
                    loop_record()["rounds"][1],
                ]
            ),
            f"round 1 stopped [{SELECTED[0].value!r}]",
        ),
    ],
)
def test_a_record_that_does_not_show_both_rounds_and_the_target_met_fails(
    record: dict[str, Any], problem: str
) -> None:
    found = loop_failures(loop_observations(record=record))
    assert set(found) == {ROUNDS_CLAIM} and problem in found[ROUNDS_CLAIM], found


def test_the_last_rounds_event_must_say_the_loop_stopped_and_the_target_met() -> None:
    silent = {k: v for k, v in ROUND_2_EXTRAS.items() if k != "loopStopped"}
    found = loop_failures(loop_observations(round_2=silent))
    assert set(found) == {EVENT_PER_ROUND}
    assert "round 2: round, maxRounds, loopStopped: (2, 3, None)" in found[EVENT_PER_ROUND]
    unmet = {**ROUND_2_EXTRAS, "achieved": {"reached": False}}
    found = loop_failures(loop_observations(round_2=unmet))
    assert found[EVENT_PER_ROUND] == "round 2: achieved.reached False"


def test_the_rounds_are_shown_with_what_each_stopped_achieved_and_why_the_loop_stopped() -> None:
    achieved = {
        "memory": {"achievedAfterPercent": 1.56, "targetPercent": 1.43, "reached": False},
        "reached": False,
    }
    record = loop_record()
    record["rounds"][0]["achieved"] = achieved
    record["rounds"][1]["achieved"] = {
        "memory": {"achievedAfterPercent": 1.3, "targetPercent": 1.43, "reached": True},
        "reached": True,
    }
    obs = loop_observations()
    events = [e for e in obs.events if e.type == PREEMPTED_EVENT_TYPE]
    assert round_lines(record, events, obs.before) == [
        "  the rounds (the run's record, as `preemptctl history` reads it, and the sink):",
        "    round 1: stopped DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0 (vm-40); "
        "memory after it 1.56% (target 1.43%): not met",
        f"      event {ALARM}-4242: round 1 of at most 3, 2 VM(s)",
        "    round 2: stopped DC0_C0_RP0_VM3 (vm-49); memory after it 1.3% (target 1.43%): met",
        f"      event {ALARM}-4242-round-2: round 2 of at most 3, 1 VM(s), "
        "loopStopped 'target met'",
        "  the loop stopped after 2 round(s) of at most 3: target met",
    ]
    assert round_lines(None, events, obs.before)[-1] == "    (no run record was read)"


def test_a_timer_after_a_rounds_report_is_told_as_the_settle_and_its_event_as_the_round() -> None:
    round_1 = json.dumps({"round": 1, "maxRounds": 3, "achieved": {"reached": False}})
    use = {
        "entity": vm_ref_to_wire(CLUSTER),
        "capacity": {"cpu_mhz": None, "memory_mb": 12286.0},
        "used": {"cpu_mhz": None, "memory_mb": 192.0},
    }
    history = [
        activity(1, "ReadEntityUse", 0.0, {"entity": vm_ref_to_wire(CLUSTER)}),
        done(2, 1, 0.1, use),
        activity(3, "SendPreemptedEvent", 0.2, {"data_json": round_1}),
        done(4, 3, 0.3, None),
        timer(5, 0.4, 2),
        fired(6, 5, 2.4),
        activity(7, "SendPreemptedEvent", 2.5, {"event_type": SCHEDULED_EVENT_TYPE}),
        timer(8, 2.6, 5),
        fired(9, 8, 7.6),
    ]
    assert HistoryNarrator(NAMES).lines(history) == [
        "[  0.0s] activity ReadEntityUse: read the alarmed entity's use again, on the policy's "
        "basis",
        "[  0.1s]   in use now: 192 of 12286 MB (1.56%)",
        "[  0.2s] activity SendPreemptedEvent: send the VmPreemptedEvent of round 1 (of at most "
        "3; target not met) to K_SINK",
        "[  0.3s]   the sink acknowledged it",
        "[  0.4s] settle: a durable timer of 2s; then the use is read again and the plan made anew",
        "[  2.4s]   settled: the next round plans again",
        "[  2.5s] activity SendPreemptedEvent: send the VmPreemptionScheduledEvent to K_SINK",
        "[  2.6s] notice: a durable timer of 5s; nothing is stopped before it fires",
        "[  7.6s]   notice over: acting now",
    ]
