"""The acting-with-care activities on vcsim, called in Temporal's activity environment:
stop actions, the guest notice, resume, and heartbeats that stop when progress does."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
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
from vsphere_preemption.vsphere.tasks import Fanout
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


class Timeline:
    """What happened, in order, from any thread (heartbeats, the ticker's stall, the
    test's own steps); and a wait for what has not happened yet."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = threading.Condition()

    def add(self, kind: str, detail: Any = None) -> None:
        with self._changed:
            self.events.append((kind, detail))
            self._changed.notify_all()

    def beat(self, *details: Any) -> None:  # ActivityEnvironment.on_heartbeat
        self.add("beat", details)

    def kinds(self) -> list[str]:
        with self._changed:
            return [kind for kind, _ in self.events]

    def since(self, kind: str, detail: Any = None) -> list[tuple[str, Any]]:
        """The events after the last (kind, detail); all of them if there is none."""
        with self._changed:
            for index in range(len(self.events) - 1, -1, -1):
                if self.events[index] == (kind, detail):
                    return self.events[index + 1 :]
            return list(self.events)

    def wait_for(self, happened: Callable[[], bool], what: str) -> None:
        # The bound only ends a test that would otherwise hang: nothing is timed.
        with self._changed:
            assert self._changed.wait_for(happened, timeout=60), f"never happened: {what}"


class Clock:
    """The stall bound's clock: it stands still, but for the test moving it."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@pytest.fixture
def timeline() -> Iterator[Timeline]:
    """A timeline that also hears the heartbeat ticker say it stopped (its warning)."""
    events = Timeline()

    class StallHeard(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("no progress for"):
                events.add("stalled")

    handler = StallHeard(logging.WARNING)
    logger = logging.getLogger("temporalio.activity")
    logger.addHandler(handler)
    yield events
    logger.removeHandler(handler)


def environment(
    timeline: Timeline | None = None, heartbeat_details: list[Any] | None = None
) -> Any:
    env = ActivityEnvironment()
    if timeline is not None:
        env.on_heartbeat = timeline.beat
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
    vcenter: VSphereClient,
    http: httpx.Client,
    timeline: Timeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first power-on hangs past the stall bound of a clock that only the test moves:
    # what the attempt does is told by the order of events, whatever the machine's speed.
    stall_after = 30.0
    vms = [s.ref for s in Inventory(vcenter).vms()[:2]]
    marks = preempted(vcenter, http, vms)
    clock = Clock()
    resume = vcenter.resume

    def hanging_resume(*args: Any, on_powering_on: Callable[[VmRef], None], **kw: Any) -> Any:
        def before_power_on(ref: VmRef) -> None:
            on_powering_on(ref)  # said before acting: the heartbeats carry it
            if ref != vms[0]:
                return
            timeline.add("hang")
            # Still within the bound: the ticker goes on heartbeating ...
            timeline.wait_for(
                lambda: any(k == "beat" for k, _ in timeline.since("hang")), "a beat in the hang"
            )
            clock.advance(stall_after + 1)  # ... and past it: it stops, and says so
            timeline.wait_for(lambda: "stalled" in timeline.kinds(), "the ticker's stall")
            timeline.add("call returns")  # then the power-on call is made after all

        return resume(*args, on_powering_on=before_power_on, **kw)

    monkeypatch.setattr(vcenter, "resume", hanging_resume)
    attempt = acts(vcenter, http, heartbeat_every=0.05, stall_after=stall_after, clock=clock)
    with pytest.raises(VSphereError, match="no progress for 31s"):
        environment(timeline).run(
            attempt.resume_vms, ResumeInput(marks, WF, RESUMED, max_concurrency=1)
        )
    monkeypatch.undo()

    # Heartbeats while the hung call was within the bound, none once it was past: the
    # server's heartbeat timeout ends the attempt. The hang's end finds it abandoned.
    kinds = timeline.kinds()
    hang, stalled = kinds.index("hang"), kinds.index("stalled")
    assert "beat" in kinds[hang:stalled]
    assert kinds[stalled:] == ["stalled", "call returns"]
    # The last heartbeat told which VM it set out to power on.
    details = next(d for k, d in reversed(timeline.events) if k == "beat")
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
    vcenter: VSphereClient,
    http: httpx.Client,
    timeline: Timeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each report comes 0.9 s after the one before on the stall bound's clock (1 s): the
    # bound is passed in all, never between two reports, so the heartbeats never stop.
    stall_after, step = 1.0, 0.9
    vms = [s.ref for s in Inventory(vcenter).vms()[:8]]
    clock = Clock()
    stop = vcenter.stop
    one_at_a_time = threading.Lock()

    def said(detail: str) -> bool:
        return any(k == "beat" and d[0] == detail for k, d in timeline.since("report", detail))

    def slow_stop(*args: Any, fanout: Fanout, **kw: Any) -> Any:
        def report(detail: str) -> None:
            with one_at_a_time:
                clock.advance(step)
                fanout.heartbeat(detail)
                timeline.add("report", detail)
                # Each report goes out in a heartbeat before the next: what the
                # heartbeats send moves with each call done.
                timeline.wait_for(lambda: said(detail) or "stalled" in timeline.kinds(), detail)
                assert said(detail), f"the heartbeats stopped before saying {detail!r}"

        return stop(*args, fanout=dataclasses.replace(fanout, heartbeat=report), **kw)

    monkeypatch.setattr(vcenter, "stop", slow_stop)
    activities = acts(vcenter, http, heartbeat_every=0.05, stall_after=stall_after, clock=clock)
    outcome = environment(timeline).run(
        activities.power_off_vms, PowerOffInput(vms, True, 30.0, 1, action="poweroff")
    )

    assert outcome.powered_off == vms
    reports = [d for k, d in timeline.events if k == "report"]
    assert step * len(reports) > 2 * stall_after  # the bound passed in all, twice over
    # The calls were reported as they completed (several at once when they came together).
    calls = [int(d.split(": ")[1].split(" of ")[0]) for d in reports if d.endswith("calls done")]
    assert calls == sorted(set(calls)) and calls[-1] == len(vms)
    assert "stalled" not in timeline.kinds()
