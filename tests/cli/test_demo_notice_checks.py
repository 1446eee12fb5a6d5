"""The demo's checks of the notice before a preemption and of the resume after it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.cli.demo_fixtures import (
    BATCHES,
    DURING,
    GUEST,
    NAMES,
    NOT_BEFORE,
    NOW,
    ON,
    RESUMED,
    RESUMED_NOTES,
    RESUMING,
    SCHEDULED,
    SELECTED,
    STAYED_OFF,
    _one_failure,
    annotation,
    failures,
    good_observations,
    resumed_observations,
)
from vsphere_preemption.devtools.demo.checks import NoticeSeen
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE, format_time


def test_the_notice_must_come_first_name_the_victims_and_precede_the_stop() -> None:
    obs = good_observations()
    scheduled, preempted = obs.events
    claim, why = _one_failure(replace(obs, events=[preempted]))
    assert claim == SCHEDULED and "nothing of that type arrived" in why
    claim, why = _one_failure(replace(obs, events=[preempted, scheduled]))
    assert claim == SCHEDULED and why == f"it arrived after the {PREEMPTED_EVENT_TYPE}"
    early = replace(
        preempted, attributes={**preempted.attributes, "time": NOW + timedelta(seconds=3)}
    )
    _, why = _one_failure(replace(obs, events=[scheduled, early]))
    assert (
        why.startswith("the VMs were reported stopped at 2026-03-01 12:00:03")
        and "before notBefore" in why
    )
    data = {**scheduled.data, "virtualMachines": [], "action": "shutdown"}
    _, why = _one_failure(replace(obs, events=[replace(scheduled, data=data), preempted]))
    assert "virtualMachines none (expected DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0 (vm-40))" in why
    assert "action 'shutdown', noticeSeconds 5.0" in why
    short = {**scheduled.data, "notBefore": format_time(NOW + timedelta(seconds=1))}
    found = failures(replace(obs, events=[replace(scheduled, data=short), preempted]))
    assert "notBefore is 0.9s after the event's time" in found[SCHEDULED]
    # The guests' notice names another notBefore than the event's, which the read did not precede.
    assert found[DURING][0].endswith("proves nothing")
    assert found[DURING][1:] == tuple(
        f"{NAMES[ref]} ({ref.value}): notBefore {format_time(NOT_BEFORE)!r}" for ref in SELECTED
    )


def test_during_the_notice_the_victims_must_be_on_and_told_and_no_other_vm() -> None:
    obs = good_observations()
    assert obs.notice is not None
    claim, why = _one_failure(replace(obs, notice=None))
    assert claim == DURING and why.startswith("the demo saw no notice")
    states = {**obs.notice.states, SELECTED[0]: replace(ON[1], power_state="poweredOff")}
    guest = {SELECTED[1]: "", ON[3].ref: GUEST}
    claim, why = _one_failure(replace(obs, notice=NoticeSeen(obs.notice.at, states, guest)))
    assert claim == DURING
    assert why.split(" | ") == [
        "DC0_C0_RP0_VM1 (vm-43): poweredOff",
        "DC0_C0_RP0_VM1 (vm-43): guestinfo None",
        "DC0_C0_RP0_VM0 (vm-40): guestinfo ''",
        "a notice on VMs that are no victims: DC0_C0_RP0_VM3 (vm-49)",
    ]
    late = replace(obs.notice, at=NOT_BEFORE + timedelta(seconds=0.1))
    _, why = _one_failure(replace(obs, notice=late))
    assert why.endswith("proves nothing")


def test_without_resume_the_preempted_vms_must_stay_off() -> None:
    obs = good_observations()
    claim, why = _one_failure(replace(obs, after_lowering={**obs.after, SELECTED[0]: ON[1]}))
    assert claim == STAYED_OFF and why == "DC0_C0_RP0_VM1 (vm-43): poweredOn"


def test_a_resume_must_bring_all_back_highest_priority_first_in_the_batches_configured() -> None:
    obs = resumed_observations()
    claim, why = _one_failure(replace(obs, after_lowering=obs.after), RESUMING)
    assert claim == RESUMED
    assert why == "DC0_C0_RP0_VM1 (vm-43): poweredOff | DC0_C0_RP0_VM0 (vm-40): poweredOff"
    other = {**obs.after_lowering, ON[3].ref: replace(ON[3], power_state="poweredOff")}
    _, why = _one_failure(replace(obs, after_lowering=other), RESUMING)
    assert why == "changed but not preempted: DC0_C0_RP0_VM3 (vm-49)"

    *first, one, two = obs.events
    swapped = [
        replace(one, data={**one.data, "virtualMachines": two.data["virtualMachines"]}),
        replace(two, data={**two.data, "virtualMachines": one.data["virtualMachines"]}),
    ]
    claim, why = _one_failure(replace(obs, events=[*first, *swapped]), RESUMING)
    assert claim == BATCHES
    assert why == (
        "powered on DC0_C0_RP0_VM1 (vm-43), DC0_C0_RP0_VM0 (vm-40) "
        "(expected DC0_C0_RP0_VM0 (vm-40), DC0_C0_RP0_VM1 (vm-43))"
    )
    hasty = replace(
        two, attributes={**two.attributes, "time": one.attributes["time"] + timedelta(seconds=1)}
    )
    _, why = _one_failure(replace(obs, events=[*first, one, hasty]), RESUMING)
    assert why == "batch 2 came 1.0s after the one before"
    together = replace(
        one,
        data={
            **one.data,
            "virtualMachines": one.data["virtualMachines"] + two.data["virtualMachines"],
        },
    )
    _, why = _one_failure(replace(obs, events=[*first, together]), RESUMING)
    assert why == "batch sizes [2]"
    _, why = _one_failure(replace(obs, events=first), RESUMING)
    assert why.startswith("nothing of that type arrived")


def test_a_resumed_vm_must_say_so_in_its_annotation_and_lose_its_guest_notice() -> None:
    obs = resumed_observations()
    notes = {**obs.annotations_after_lowering, SELECTED[0]: annotation().to_json()}
    claim, why = _one_failure(
        replace(obs, annotations_after_lowering=notes, guest_after_lowering={SELECTED[1]: GUEST}),
        RESUMING,
    )
    assert claim == RESUMED_NOTES
    assert why.split(" | ") == [
        "DC0_C0_RP0_VM1 (vm-43): resumed=None",
        f"DC0_C0_RP0_VM0 (vm-40): guestinfo still {GUEST!r}",
    ]
