"""The acting-with-care activities on vcsim, called in Temporal's activity environment:
stop actions, the guest notice, resume, and heartbeats that stop when progress does."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests.temporal.rig import client_for, vcsim_args
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.temporal.activities import PreemptionActivities
from vsphere_preemption.temporal.contracts import (
    GUEST_NOTICE_KEY,
    GuestNoticeInput,
    PowerOffInput,
    PreemptionPolicy,
    ResumeInput,
)
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.wire import ANNOTATION_KEY

WF = "alarm-1-domain-c28"
PREEMPTED = json.dumps({"preempted": True, "workflowID": WF})
RESUMED = json.dumps({"preempted": True, "workflowID": WF, "resumed": True})


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def sim(vcsim_factory: Callable[..., Vcsim]) -> Vcsim:
    return vcsim_factory(*vcsim_args())


@pytest.fixture
def vcenter(sim: Vcsim) -> Iterator[VSphereClient]:
    with client_for(sim) as client:
        yield client


class Beats:
    """The heartbeats an activity sends, with when each was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def __call__(self, *details: Any) -> None:
        with self._lock:
            self.sent.append((time.monotonic(), details))

    def last(self) -> tuple[Any, ...]:
        return self.sent[-1][1]


def environment(beats: Beats | None = None, heartbeat_details: list[Any] | None = None) -> Any:
    env = ActivityEnvironment()
    if beats is not None:
        env.on_heartbeat = beats
    if heartbeat_details is not None:
        env.info = dataclasses.replace(env.info, heartbeat_details=heartbeat_details, attempt=2)
    return env


def acts(vcenter: VSphereClient, http: httpx.Client, **kwargs: Any) -> PreemptionActivities:
    return PreemptionActivities(vcenter, PreemptionPolicy(), "src", http, **kwargs)


def power_input(vms: list[VmRef], action: str, force: bool = False) -> PowerOffInput:
    return PowerOffInput(vms, force, 30.0, 3, action=action)


@pytest.mark.parametrize(
    ("action", "force", "end_state"),
    [
        ("suspend", False, "suspended"),
        ("poweroff", False, "poweredOff"),
        ("shutdown", True, "poweredOff"),
        ("", True, "poweredOff"),  # recorded before `action`: force says hard power-off
        ("", False, "poweredOff"),  # ... or guest shutdown
    ],
)
def test_power_off_vms_stops_as_the_action_says_and_marks(
    vcenter: VSphereClient, http: httpx.Client, action: str, force: bool, end_state: str
) -> None:
    vms = [s.ref for s in Inventory(vcenter).vms()[:3]]
    outcome = environment().run(acts(vcenter, http).power_off_vms, power_input(vms, action, force))
    assert outcome.powered_off == vms
    assert [(m.ref, m.power_state) for m in outcome.marks] == [(r, end_state) for r in vms]
    assert {s.power_state for s in vcenter.read_vms(vms).values()} == {end_state}


def test_an_unknown_action_fails_without_retry(vcenter: VSphereClient, http: httpx.Client) -> None:
    with pytest.raises(ApplicationError) as caught:
        environment().run(acts(vcenter, http).power_off_vms, power_input([], "hibernate"))
    assert caught.value.non_retryable and caught.value.type == "InvalidStopAction"


def test_set_guest_notice_writes_and_clears(vcenter: VSphereClient, http: httpx.Client) -> None:
    vms = [s.ref for s in Inventory(vcenter).vms()[:2]]
    notice = '{"action":"suspend","notBefore":"2026-11-30T12:00:00Z","workflowID":"wf"}'
    activity = acts(vcenter, http).set_guest_notice

    written = environment().run(activity, GuestNoticeInput(vms, notice, max_concurrency=2))
    assert written.written == vms
    assert vcenter.read_extra_config(vms, GUEST_NOTICE_KEY) == dict.fromkeys(vms, notice)

    cleared = environment().run(activity, GuestNoticeInput(vms, ""))
    assert cleared.written == vms
    assert vcenter.read_extra_config(vms, GUEST_NOTICE_KEY) == {}


def preempted(vcenter: VSphereClient, http: httpx.Client, vms: list[VmRef]) -> Any:
    stopped = environment().run(acts(vcenter, http).power_off_vms, power_input(vms, "poweroff"))
    vcenter.annotate(vms, ANNOTATION_KEY, PREEMPTED)
    return stopped.marks


def test_resume_vms_powers_on_and_annotates(vcenter: VSphereClient, http: httpx.Client) -> None:
    vms = [s.ref for s in Inventory(vcenter).vms()[:3]]
    marks = preempted(vcenter, http, vms)

    outcome = environment().run(
        acts(vcenter, http).resume_vms, ResumeInput(marks, WF, RESUMED, max_concurrency=2)
    )

    assert outcome.resumed == vms and outcome.skipped == [] and outcome.failed == []
    assert {s.power_state for s in vcenter.read_vms(vms).values()} == {"poweredOn"}
    assert vcenter.read_custom_field(vms, ANNOTATION_KEY) == dict.fromkeys(vms, RESUMED)


def test_a_retry_takes_the_vms_its_last_attempt_powered_on_for_its_own(
    vcenter: VSphereClient, http: httpx.Client
) -> None:
    ours, by_hand = (s.ref for s in Inventory(vcenter).vms()[:2])
    marks = preempted(vcenter, http, [ours, by_hand])
    Inventory(vcenter).power_on([ours, by_hand])  # the first attempt's, and someone's
    last_beat = ["power-on: 0 of 1 calls done", [ours.value]]

    outcome = environment(heartbeat_details=last_beat).run(
        acts(vcenter, http).resume_vms, ResumeInput(marks, WF, RESUMED)
    )

    assert outcome.resumed == [ours]
    assert [(i.vm, i.reason) for i in outcome.skipped] == [(by_hand, "powered on by hand")]


def test_a_hung_call_stops_the_heartbeats_and_the_retry_finishes_the_work(
    vcsim_factory: Callable[..., Vcsim], http: httpx.Client
) -> None:
    # vcsim answers PowerOnVM_Task after 4 s: well past the stall bound (1.5 s), which is
    # loose enough for the calls before it (the claim's annotation) on a loaded machine.
    sim = vcsim_factory(*vcsim_args("-method-delay", "PowerOnVM_Task:4000"))
    with client_for(sim) as vcenter:
        vms = [s.ref for s in Inventory(vcenter).vms()[:2]]
        marks = preempted(vcenter, http, vms)
        beats = Beats()
        attempt = acts(vcenter, http, heartbeat_every=0.05, stall_after=1.5)

        started = time.monotonic()
        with pytest.raises(VSphereError, match="no progress for"):
            environment(beats).run(
                attempt.resume_vms, ResumeInput(marks, WF, RESUMED, max_concurrency=1)
            )
        ended = time.monotonic()

        # Heartbeats while the work moved, none after the stall bound: the server's
        # heartbeat timeout ends the attempt.
        assert ended - started >= 4.0
        last_sent = beats.sent[-1][0]
        assert last_sent - started < 3.0, "no heartbeat during the hung call"
        # The last heartbeat told which VM it set out to power on.
        details = beats.last()
        assert details[1] == [vms[0].value]
        # The hung call powered the first VM on after all; the attempt, abandoned, never
        # asked for the second.
        states = {r: s.power_state for r, s in vcenter.read_vms(vms).items()}
        assert states == {vms[0]: "poweredOn", vms[1]: "poweredOff"}

        retry = environment(heartbeat_details=list(details)).run(
            acts(vcenter, http).resume_vms, ResumeInput(marks, WF, RESUMED, max_concurrency=1)
        )

        assert retry.resumed == vms and retry.skipped == [] and retry.failed == []
        assert {s.power_state for s in vcenter.read_vms(vms).values()} == {"poweredOn"}
        assert vcenter.read_custom_field(vms, ANNOTATION_KEY) == dict.fromkeys(vms, RESUMED)


def test_a_slow_but_moving_activity_keeps_heartbeating(
    vcsim_factory: Callable[..., Vcsim], http: httpx.Client
) -> None:
    # Each power-off call takes 0.3 s, under the stall bound (1 s): every call that
    # completes is progress, so heartbeats never stop.
    sim = vcsim_factory(*vcsim_args("-method-delay", "PowerOffVM_Task:300"))
    with client_for(sim) as vcenter:
        vms = [s.ref for s in Inventory(vcenter).vms()[:8]]
        beats = Beats()
        outcome = environment(beats).run(
            acts(vcenter, http, heartbeat_every=0.05, stall_after=1.0).power_off_vms,
            PowerOffInput(vms, True, 30.0, 1, action="poweroff"),
        )
    assert outcome.powered_off == vms
    times = [t for t, _ in beats.sent]
    assert times and max(b - a for a, b in itertools.pairwise(times)) < 0.5
    # ... and what it sends moves with each call done, not once a second.
    assert len({d[0] for _, d in beats.sent if str(d[0]).endswith("calls done")}) >= 4
