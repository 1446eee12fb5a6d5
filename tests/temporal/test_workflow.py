"""PreemptVMsWorkflow's logic on the real Temporal dev server, with stand-in activities.

The stand-ins are registered under the real activity names and record what the
workflow asked for; the end-to-end tests (tests/e2e/test_worker_e2e.py) run the same
workflow against the real vSphere activities on vcsim.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from tests.conftest import fixture_json
from tests.temporal.helpers import (
    ANNOTATION_FIXTURE,
    SIGNAL_FIXTURE,
    eventually,
    query_state,
    signal_payload,
    signal_with_start,
    unique,
    wait_for,
)
from vsphere_preemption.domain.model import (
    AnnotateOutcome,
    Criticality,
    EntityUsage,
    MoRef,
    PowerOffOutcome,
    Selection,
    VmFacts,
    VmIssue,
    VmRef,
)
from vsphere_preemption.domain.plan import plan
from vsphere_preemption.domain.policy import Policy, policy_from_mapping
from vsphere_preemption.temporal.contracts import (
    ANNOTATE_VMS,
    GET_POLICY,
    GET_PREEMPTIBLE_VMS,
    PLAN_PREEMPTION,
    POWER_OFF_VMS,
    READ_ENTITY_USAGE,
    READ_PAUSES,
    SEND_PREEMPTED_EVENT,
    AnnotateInput,
    FindVmsInput,
    PauseBook,
    PlanInput,
    PlanOutput,
    PowerOffInput,
    PreemptionPolicy,
    ReadPausesInput,
    SendEventInput,
)
from vsphere_preemption.temporal.workflow import FOLDED_PATCH, PreemptVMsWorkflow
from vsphere_preemption.wire import (
    EMPTY_EVENT,
    PLANNED_EVENT_TYPE,
    PREEMPTED_EVENT_TYPE,
    SIGNAL_NAME,
    WORKFLOW_TYPE,
    Annotation,
    WorkflowResponse,
    go_json,
    pauses_workflow_id,
)

VM1, VM2, VM3 = VmRef("vm-1"), VmRef("vm-2"), VmRef("vm-3")
# Acted on at once, whatever the criticality (the notice has tests of its own).
NO_NOTICE = policy_from_mapping({"notice": {"LOW": 0, "MEDIUM": 0, "HIGH": 0}}).to_wire()
GO_RESPONSE_ORDER = [
    "workflowID", "workflowRunID", "workflowName", "lastPreemptionTime", "virtualMachines",
    "tag", "criticality", "event", "replyTo",
]  # fmt: skip
GO_RESPONSE_KEYS = set(GO_RESPONSE_ORDER)
OUR_KEYS = ("entity", "scope", "dryRun", "plan")


@dataclass
class StandIns:
    """Activities under the real names; what they answer is set per test."""

    policy: PreemptionPolicy = field(
        default_factory=lambda: PreemptionPolicy(cooldown_seconds=60, selection=NO_NOTICE)
    )
    tagged: dict[str, list[VmRef]] = field(default_factory=lambda: {"preemptible": [VM1, VM2]})
    power_off_fails_first: int = 0
    forced_after_grace: list[VmRef] = field(default_factory=list)
    failing_vm: VmRef | None = None
    annotate_fails: bool = False
    policy_fails: bool = False
    plan_fails: bool = False
    # The plan reads the pauses it is asked to (pauses-in-plan); False: as a worker from before
    # the patch, which ignores PlanInput.pauses_registry.
    plan_reads_pauses: bool = True
    gate: asyncio.Event | None = None  # the power-off waits for it when set
    calls: list[tuple[str, Any]] = field(default_factory=list)
    attempts: list[tuple[int, PowerOffInput]] = field(default_factory=list)

    def named(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=GET_POLICY)
        async def get_policy() -> PreemptionPolicy:
            self.calls.append((GET_POLICY, None))
            if self.policy_fails:
                raise ApplicationError("no policy", non_retryable=True)
            return self.policy

        @activity.defn(name=GET_PREEMPTIBLE_VMS)
        async def find(arg: FindVmsInput) -> Selection:
            self.calls.append((GET_PREEMPTIBLE_VMS, arg))
            return Selection(selected=self.tagged.get(arg.tag, [])[: arg.max_vms])

        @activity.defn(name=PLAN_PREEMPTION)
        async def plan_preemption(arg: PlanInput) -> PlanOutput:
            # The real choice over stand-in facts: the tagged VMs, running, in scope.
            self.calls.append((PLAN_PREEMPTION, arg))
            if self.plan_fails:
                raise ApplicationError("tag 'preemptible' not found", non_retryable=True)
            facts = [
                VmFacts(ref=vm, name=vm.value, power_state="poweredOn", in_scope=True)
                for vm in self.tagged.get(arg.tag, [])
            ]
            chosen = plan(facts, None, Policy.from_wire(arg.policy), arg.criticality)
            # Nothing paused (tests/e2e/test_pause_e2e.py pauses for real).
            book = PauseBook() if arg.pauses_registry and self.plan_reads_pauses else None
            return PlanOutput(
                plan=chosen.to_wire(), usage=None, notes=["stand-in facts"], pauses=book
            )

        @activity.defn(name=READ_ENTITY_USAGE)
        async def read_usage(entity: MoRef) -> EntityUsage | None:
            self.calls.append((READ_ENTITY_USAGE, entity))
            return None

        @activity.defn(name=POWER_OFF_VMS)
        async def power_off(arg: PowerOffInput) -> PowerOffOutcome:
            self.attempts.append((activity.info().attempt, arg))
            if len(self.attempts) <= self.power_off_fails_first:
                raise RuntimeError("vCenter went away mid-way")
            self.calls.append(("power_off_started", arg))
            if self.gate is not None:
                while not self.gate.is_set():
                    activity.heartbeat()
                    await asyncio.sleep(0.2)
            self.calls.append((POWER_OFF_VMS, arg))
            off = [vm for vm in arg.vms if vm != self.failing_vm]
            failed = [VmIssue(vm, "InvalidPowerState") for vm in arg.vms if vm == self.failing_vm]
            forced = [vm for vm in self.forced_after_grace if vm in off]
            return PowerOffOutcome(powered_off=off, failed=failed, forced_after_grace=forced)

        @activity.defn(name=ANNOTATE_VMS)
        async def annotate(arg: AnnotateInput) -> AnnotateOutcome:
            self.calls.append((ANNOTATE_VMS, arg))
            if self.annotate_fails:
                raise ApplicationError("custom field manager unavailable", non_retryable=True)
            return AnnotateOutcome(annotated=list(arg.vms))

        @activity.defn(name=SEND_PREEMPTED_EVENT)
        async def send(arg: SendEventInput) -> None:
            self.calls.append((SEND_PREEMPTED_EVENT, arg))

        @activity.defn(name=READ_PAUSES)
        async def read_pauses(arg: ReadPausesInput) -> PauseBook:
            self.calls.append((READ_PAUSES, arg))
            return PauseBook()  # nothing paused

        return [
            get_policy, find, plan_preemption, read_usage, power_off, annotate, send, read_pauses
        ]  # fmt: skip


@dataclass
class Rig:
    client: Client
    task_queue: str
    stand_ins: StandIns
    handles: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    async def signal_with_start(self, payload: Any) -> WorkflowHandle[Any, Any]:
        handle = await signal_with_start(self.client, unique("alarm"), self.task_queue, payload)
        self.handles.append(handle)
        return handle


@pytest.fixture
async def rig(temporal_client: Client, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    # Parametrized tests hand in a factory, so each run gets fresh stand-ins.
    make: Callable[[], StandIns] = getattr(request, "param", StandIns)
    stand_ins = make()
    rig = Rig(temporal_client, unique("wf-logic"), stand_ins)
    async with Worker(
        temporal_client,
        task_queue=rig.task_queue,
        workflows=[PreemptVMsWorkflow],
        activities=stand_ins.activities(),
    ):
        yield rig
        for handle in rig.handles:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


async def has_run(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        return await query_state(handle)

    return await eventually(probe, lambda s: s["virtualMachines"] is not None, what="a run")


def skipped(caplog: pytest.LogCaptureFixture) -> int:
    return sum("skipping run" in r.getMessage() for r in caplog.records)


async def test_query_before_any_run_answers_go_zero_values(rig: Rig) -> None:
    handle = await rig.client.start_workflow(
        WORKFLOW_TYPE, id=unique("alarm"), task_queue=rig.task_queue
    )
    rig.handles.append(handle)
    state = await query_state(handle)
    assert set(state) == GO_RESPONSE_KEYS
    assert state["workflowID"] == handle.id
    assert state["workflowRunID"] == handle.result_run_id
    assert state["workflowName"] == "PreemptVMsWorkflow"
    assert state["lastPreemptionTime"] == "0001-01-01T00:00:00Z"
    assert state["virtualMachines"] is None
    assert (state["tag"], state["criticality"], state["replyTo"]) == ("", "", "")
    assert state["event"] == EMPTY_EVENT
    assert rig.stand_ins.calls == []


async def test_go_signal_runs_find_power_off_annotate_send(rig: Rig) -> None:
    payload = fixture_json(SIGNAL_FIXTURE)
    handle = await rig.signal_with_start(payload)
    state = await has_run(handle)
    await wait_for(lambda: bool(rig.stand_ins.named(SEND_PREEMPTED_EVENT)), what="the event")

    names = [n for n, _ in rig.stand_ins.calls if n != "power_off_started"]
    assert names == [GET_POLICY, PLAN_PREEMPTION, POWER_OFF_VMS, ANNOTATE_VMS,
                     SEND_PREEMPTED_EVENT]  # fmt: skip
    planned: PlanInput = rig.stand_ins.named(PLAN_PREEMPTION)[0]
    # The alarm fired on host-21: its VMs are the candidates (scope entity by default).
    assert (planned.tag, planned.entity) == ("preemptible", MoRef("host-21", "HostSystem"))
    assert planned.policy == NO_NOTICE and planned.criticality is Criticality.HIGH
    power_off: PowerOffInput = rig.stand_ins.named(POWER_OFF_VMS)[0]
    assert (power_off.vms, power_off.force) == ([VM1, VM2], True)  # HIGH: hard power-off
    assert (power_off.max_concurrency, power_off.soft_shutdown_grace_seconds) == (5, 120)

    # The annotation has the reference shape, and says what happened.
    annotate: AnnotateInput = rig.stand_ins.named(ANNOTATE_VMS)[0]
    assert annotate.vms == [VM1, VM2]
    written = json.loads(annotate.annotation_json)
    # The reference shape, field for field and in the Go struct's order; then ours.
    assert list(written) == [*fixture_json(ANNOTATION_FIXTURE), "action"]
    assert written["action"] == "poweroff"
    assert list(written["event"]) == list(payload["event"]), "the event as it came, in order"
    note = Annotation.from_wire(annotate.annotation_json)
    described = await handle.describe()
    assert (note.preempted, note.forced_shutdown, note.tag) == (True, True, "preemptible")
    assert (note.workflow_id, note.event) == (handle.id, payload["event"])
    assert note.workflow_started == described.start_time

    send: SendEventInput = rig.stand_ins.named(SEND_PREEMPTED_EVENT)[0]
    assert send.reply_to == payload["replyTo"]
    assert send.event_id == f"{handle.id}-d65a8ad1-7d3c-4f72-ace4-e3f2883c4475"
    sent = json.loads(send.data_json)
    # Go's fields first, in Go's order; ours after them.
    go_annotation = {k: v for k, v in written.items() if k != "action"}
    go_fields = list(sent)[: len(go_annotation) + 1]
    assert go_fields[-1] == "virtualMachines"
    assert {k: sent[k] for k in go_fields} == {
        **go_annotation,
        "virtualMachines": [{"Type": "VirtualMachine", "Value": v} for v in ("vm-1", "vm-2")],
    }
    assert list(sent)[len(go_fields) :] == ["action", *OUR_KEYS]
    assert sent["entity"] == {"Type": "HostSystem", "Value": "host-21"}
    assert [v["ref"]["Value"] for v in sent["plan"]["victims"]] == ["vm-1", "vm-2"]
    assert "stand-in facts" in sent["plan"]["notes"]

    # The query answers in the Go worker's shape (VM references spelled as govmomi's), then ours.
    assert list(state)[: len(GO_RESPONSE_KEYS)] == GO_RESPONSE_ORDER
    assert list(state)[len(GO_RESPONSE_KEYS) :] == [*OUR_KEYS, "lastRun"]
    assert (state["lastRun"]["run"], state["lastRun"]["outcome"]) == (1, "acted")
    assert state["plan"] == sent["plan"]
    assert state["virtualMachines"] == sent["virtualMachines"]
    assert (state["tag"], state["criticality"]) == ("preemptible", "HIGH")
    assert (state["event"], state["replyTo"]) == (payload["event"], payload["replyTo"])
    assert WorkflowResponse.from_wire(json.dumps(state)).run_id == handle.result_run_id


@pytest.mark.parametrize(
    "rig",
    [
        lambda: StandIns(
            forced_after_grace=[VM2], failing_vm=VM3, tagged={"preemptible": [VM1, VM2, VM3]}
        )
    ],
    indirect=True,
)
async def test_low_is_soft_and_vms_forced_after_the_grace_are_annotated_as_forced(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload(criticality="LOW", replyTo=""))
    state = await has_run(handle)
    await wait_for(lambda: len(rig.stand_ins.named(ANNOTATE_VMS)) == 2, what="two annotations")

    assert rig.stand_ins.named(POWER_OFF_VMS)[0].force is False
    # Only VMs confirmed off are recorded and annotated; vm-3 failed.
    assert state["virtualMachines"] == [{"Type": "VirtualMachine", "Value": "vm-1"},
                                        {"Type": "VirtualMachine", "Value": "vm-2"}]  # fmt: skip
    notes = {tuple(a.vms): json.loads(a.annotation_json) for a in rig.stand_ins.named(ANNOTATE_VMS)}
    assert notes[(VM1,)]["forcedShutdown"] is False
    assert notes[(VM2,)]["forcedShutdown"] is True
    assert rig.stand_ins.named(SEND_PREEMPTED_EVENT) == []  # no replyTo, no event


async def test_undecodable_signals_are_dropped_and_the_workflow_keeps_waiting(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    handle = await rig.signal_with_start("not a WorkflowRequest")
    bad: list[list[Any]] = [
        [{"tag": "", "criticality": "HIGH", "event": {}}],
        [signal_payload(criticality="EXTREME")],
        [{"criticality": "HIGH"}],
        [],
        [signal_payload(), signal_payload()],
        [RawValue(Payload(metadata={"encoding": b"binary/unknown"}, data=b"\x00\xff"))],
        [RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b"{not json"))],
    ]
    for args in bad:
        await handle.signal(SIGNAL_NAME, args=args)
    await handle.signal("SomeOtherSignal", signal_payload())
    await wait_for(
        lambda: sum("dropping" in r.getMessage() for r in caplog.records) == len(bad) + 2,
        what="every bad signal dropped",
    )
    assert rig.stand_ins.calls == []
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    # Still listening: a good signal after the bad ones runs.
    await handle.signal(SIGNAL_NAME, signal_payload(replyTo=""))
    state = await has_run(handle)
    assert state["tag"] == "preemptible"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


def _without(mapping: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != name}


def _bad_signals() -> list[tuple[str, dict[str, Any]]]:
    """A signal of each kind the rule refuses (docs/wire.md), from the Go function's signal."""
    event = signal_payload()["event"]
    return [
        ("no event id", signal_payload(event=_without(event, "id"))),
        ("an empty event id", signal_payload(event={**event, "id": ""})),
        ("a numeric event id", signal_payload(event={**event, "id": 42})),
        ("an object for an event id", signal_payload(event={**event, "id": {"a": 1}})),
        ("no CloudEvent attributes", signal_payload(event={"data": event["data"]})),
        ("no source", signal_payload(event=_without(event, "source"))),
        ("no type", signal_payload(event=_without(event, "type"))),
        ("another specversion", signal_payload(event={**event, "specversion": "2.0"})),
        ("a replyTo that is not a URL", signal_payload(replyTo="default-broker")),
        ("a replyTo of another scheme", signal_payload(replyTo="file:///etc/passwd")),
        ("a 1.5 MB tag", signal_payload(tag="t" * 1_500_000)),
        ("a tag over vSphere's limit", signal_payload(tag="t" * 257)),
        ("a signal over 1 MiB", signal_payload(event={**event, "data": "x" * (1024 * 1024)})),
    ]


async def test_signals_that_break_the_rule_are_dropped_and_only_the_good_one_runs(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    bad = _bad_signals()
    # The first bad one starts the workflow, as the function's signal-with-start would.
    handle = await rig.signal_with_start(bad[0][1])
    for _, payload in bad[1:]:
        await handle.signal(
            SIGNAL_NAME,
            RawValue(Payload(metadata={"encoding": b"json/plain"}, data=go_json(payload))),
        )

    def dropped() -> list[str]:
        return [r.getMessage() for r in caplog.records if "dropping undecodable" in r.getMessage()]

    # At least once each: a workflow task retried under load runs the handler again.
    await wait_for(lambda: len(dropped()) >= len(bad), what="every bad signal dropped")
    reasons = dropped()
    for (kind, _), expected in zip(bad, [
        "event has no id", "event id is empty", "event id must be a string, got a number",
        "event id must be a string, got an object", "event has no specversion",
        "event has no source", "event has no type", "event specversion must be 1.0 or 0.3",
        "replyTo must be an http:// or https:// URL", "replyTo must be an http:// or https://",
        # The 1.5 MB tag: its payload is measured before it is parsed.
        "the signal is 1501", "tag is 257 characters long", "the signal is 1048",
    ], strict=True):  # fmt: skip
        assert any(expected in reason for reason in reasons), (kind, reasons)
    assert rig.stand_ins.calls == [], "a refused signal acted on nothing"
    assert (await query_state(handle))["virtualMachines"] is None
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    good = signal_payload(replyTo="")
    await handle.signal(SIGNAL_NAME, good)
    state = await has_run(handle)
    assert state["event"]["id"] == good["event"]["id"]
    assert len(rig.stand_ins.named(POWER_OFF_VMS)) == 1
    assert len(rig.stand_ins.named(PLAN_PREEMPTION)) == 1, "only the good signal ran"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_vm_references_and_field_names_read_in_any_case(rig: Rig) -> None:
    # Go's decoder matches names in any case; a request written by another client still runs.
    event = {"specversion": "1.0", "id": "e-1", "source": "s", "type": "t"}
    payload = {"Tag": "preemptible", "CRITICALITY": "medium", "Event": event}
    handle = await rig.signal_with_start(payload)
    state = await has_run(handle)
    assert (state["criticality"], state["replyTo"], state["event"]) == ("MEDIUM", "", event)
    assert rig.stand_ins.named(POWER_OFF_VMS)[0].force is True


async def test_a_signal_within_the_cooldown_is_skipped_and_keeps_the_last_state(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    handle = await rig.signal_with_start(signal_payload(replyTo=""))
    first = await has_run(handle)

    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo="http://x"))
    await wait_for(lambda: skipped(caplog) == 1, what="the skip")
    state = await query_state(handle)
    # Not blanked, not moved: only `lastRun` says that a newer run was skipped.
    assert (first.pop("lastRun")["outcome"], state.pop("lastRun")["outcome"]) == (
        "acted",
        "skipped",
    )
    assert state == first
    assert len(rig.stand_ins.named(POWER_OFF_VMS)) == 1

    # A second skipped signal: the cooldown still counts from the first run.
    await handle.signal(SIGNAL_NAME, signal_payload(replyTo=""))
    await wait_for(lambda: skipped(caplog) == 2, what="the second skip")
    state = await query_state(handle)
    assert state.pop("lastRun")["run"] == 3
    assert state == first
    # Skipped on the cooldown the first run read: the policy is not read again for each.
    assert len(rig.stand_ins.named(GET_POLICY)) == 1
    outcomes = [r["outcome"] for r in json.loads(await handle.query("history"))]
    assert outcomes == ["acted", "skipped", "skipped"]


async def test_the_cooldown_starts_only_after_a_run_that_acted(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload(tag="nothing-tagged", replyTo=""))
    await wait_for(lambda: len(rig.stand_ins.named(PLAN_PREEMPTION)) == 1, what="run 1")
    assert (await query_state(handle))["virtualMachines"] is None  # it did nothing

    await handle.signal(SIGNAL_NAME, signal_payload(replyTo=""))  # well within 60 s
    state = await has_run(handle)
    assert state["tag"] == "preemptible"
    assert len(rig.stand_ins.named(POWER_OFF_VMS)) == 1


@pytest.mark.parametrize(
    "rig",
    [
        lambda: StandIns(
            policy=PreemptionPolicy(cooldown_seconds=0, selection=NO_NOTICE), gate=asyncio.Event()
        )
    ],
    indirect=True,
)
async def test_signals_during_a_run_wait_for_it(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    # Each signal's line is a debug line (a storm brings thousands).
    caplog.set_level(logging.DEBUG, logger="temporalio.workflow")
    gate = rig.stand_ins.gate
    assert gate is not None
    handle = await rig.signal_with_start(signal_payload(replyTo=""))
    await wait_for(lambda: bool(rig.stand_ins.named("power_off_started")), what="run 1")

    def received() -> int:
        return sum("received preemption request" in r.getMessage() for r in caplog.records)

    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo=""))
    await wait_for(lambda: received() == 2, what="the second signal received")
    assert len(rig.stand_ins.named(PLAN_PREEMPTION)) == 1  # queued, not started

    gate.set()
    await wait_for(lambda: len(rig.stand_ins.named(ANNOTATE_VMS)) == 2, what="run 2")
    names = [n for n, _ in rig.stand_ins.calls if n != GET_POLICY]
    run = [PLAN_PREEMPTION, "power_off_started", POWER_OFF_VMS, ANNOTATE_VMS]
    assert names == run + run  # one after the other, never interleaved
    assert (await query_state(handle))["criticality"] == "LOW"


async def test_cancel_completes_the_workflow_with_its_state(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload(replyTo=""))
    state = await has_run(handle)
    await handle.cancel()
    result = await handle.result()
    # The last state, and the runs this workflow remembers.
    assert {k: v for k, v in result.items() if k != "history"} == state
    assert [(r["run"], r["outcome"]) for r in result["history"]] == [(1, "acted")]
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.parametrize("rig", [lambda: StandIns(gate=asyncio.Event())], indirect=True)
async def test_cancel_mid_run_lets_the_run_finish_then_completes(rig: Rig) -> None:
    gate = rig.stand_ins.gate
    assert gate is not None
    handle = await rig.signal_with_start(signal_payload())
    await wait_for(lambda: bool(rig.stand_ins.named("power_off_started")), what="the power-off")
    await handle.cancel()
    await wait_for(
        lambda: len(rig.stand_ins.attempts) == 1 and not rig.stand_ins.named(POWER_OFF_VMS),
        what="the cancel to land",
    )
    gate.set()
    result = await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert result["virtualMachines"] == [{"Type": "VirtualMachine", "Value": "vm-1"},
                                         {"Type": "VirtualMachine", "Value": "vm-2"}]  # fmt: skip
    # The VMs that went off were still annotated and reported.
    assert rig.stand_ins.named(ANNOTATE_VMS)[0].vms == [VM1, VM2]
    assert len(rig.stand_ins.named(SEND_PREEMPTED_EVENT)) == 1


@pytest.mark.parametrize("rig", [lambda: StandIns(power_off_fails_first=2)], indirect=True)
async def test_a_retried_power_off_gets_the_same_selection(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload(replyTo=""))
    await has_run(handle)
    attempts = rig.stand_ins.attempts
    assert [n for n, _ in attempts] == [1, 2, 3]
    assert attempts[0][1] == attempts[1][1] == attempts[2][1]
    history = await handle.fetch_history()
    started = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert [e.activity_task_scheduled_event_attributes.activity_type.name for e in started] == [
        PLAN_PREEMPTION,  # pauses-in-plan: it read the pauses too, nothing paused: the run acts
        POWER_OFF_VMS,
        ANNOTATE_VMS,
    ]  # fmt: skip (one scheduled power-off; the server retried it)
    planned: PlanInput = rig.stand_ins.named(PLAN_PREEMPTION)[0]
    assert planned.pauses_registry == pauses_workflow_id(rig.task_queue)


UPSERT_SEARCH_ATTRIBUTES = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES


async def test_a_new_workflow_records_one_patch_marker_for_all_it_takes(rig: Rig) -> None:
    """folded-patches: a workflow begun now writes one marker (and one TemporalChangeVersion
    upsert) in its first task, not one of each per patch, and still takes every patch's way."""
    handle = await rig.signal_with_start(signal_payload(replyTo=""))
    await has_run(handle)
    events = (await handle.fetch_history()).events
    markers = [
        e.marker_recorded_event_attributes for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]  # fmt: skip
    patches = [
        json.loads(m.details["patch-data"].payloads[0].data)["id"]
        for m in markers
        if m.marker_name == "core_patch"
    ]
    assert patches == [FOLDED_PATCH]
    upserts = [e for e in events if e.event_type == UPSERT_SEARCH_ATTRIBUTES]
    assert len(upserts) == 1
    # pauses-in-plan, one of the folded patches: the plan read the pauses, no ReadPauses.
    names = [n for n, _ in rig.stand_ins.calls if n != "power_off_started"]
    assert names[:3] == [GET_POLICY, PLAN_PREEMPTION, POWER_OFF_VMS]


@pytest.mark.parametrize("rig", [lambda: StandIns(plan_reads_pauses=False)], indirect=True)
async def test_a_plan_answered_without_the_pauses_is_followed_by_read_pauses(rig: Rig) -> None:
    """A worker from before pauses-in-plan (an upgrade under way) ignores the registry it is
    asked to read: the run reads the pauses itself before it acts, as before the patch."""
    handle = await rig.signal_with_start(signal_payload(replyTo=""))
    await has_run(handle)
    names = [n for n, _ in rig.stand_ins.calls if n != "power_off_started"]
    assert names[:4] == [GET_POLICY, PLAN_PREEMPTION, READ_PAUSES, POWER_OFF_VMS]


@pytest.mark.parametrize("rig", [lambda: StandIns(annotate_fails=True)], indirect=True)
async def test_an_annotation_failure_is_logged_and_the_run_goes_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    handle = await rig.signal_with_start(signal_payload())
    await wait_for(lambda: bool(rig.stand_ins.named(SEND_PREEMPTED_EVENT)), what="the event")
    assert any("annotating VMs failed" in r.getMessage() for r in caplog.records)
    assert (await query_state(handle))["virtualMachines"] is not None
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


@pytest.mark.parametrize("rig", [lambda: StandIns(policy_fails=True)], indirect=True)
async def test_a_policy_that_cannot_be_read_drops_the_run_not_the_workflow(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    handle = await rig.signal_with_start(signal_payload())
    await wait_for(
        lambda: any("reading the worker's policy failed" in r.getMessage() for r in caplog.records),
        what="the failure logged",
    )
    assert rig.stand_ins.named(PLAN_PREEMPTION) == []
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def state_with_plan(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    return await eventually(
        lambda: query_state(handle), lambda s: s.get("plan") is not None, what="a plan"
    )


async def test_a_dry_run_plans_announces_and_acts_on_nothing(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload(dryRun=True))
    state = await state_with_plan(handle)
    await wait_for(lambda: bool(rig.stand_ins.named(SEND_PREEMPTED_EVENT)), what="the plan event")
    assert rig.stand_ins.named(POWER_OFF_VMS) == [] and rig.stand_ins.named(ANNOTATE_VMS) == []
    assert state["dryRun"] is True
    assert [v["ref"]["Value"] for v in state["plan"]["victims"]] == ["vm-1", "vm-2"]
    assert state["virtualMachines"] is None  # nothing acted on: Go's fields say no run
    send: SendEventInput = rig.stand_ins.named(SEND_PREEMPTED_EVENT)[0]
    assert send.event_type == PLANNED_EVENT_TYPE
    assert send.event_id == f"{handle.id}-d65a8ad1-7d3c-4f72-ace4-e3f2883c4475-plan"
    data = json.loads(send.data_json)
    assert data["plan"] == state["plan"] and data["dryRun"] is True


async def test_a_request_override_changes_the_run_and_only_that_run(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload(policy={"maxVMs": 1}))
    state = await has_run(handle)
    assert state["virtualMachines"] == [{"Type": "VirtualMachine", "Value": "vm-1"}]
    planned: PlanInput = rig.stand_ins.named(PLAN_PREEMPTION)[0]
    assert planned.policy["maxVMs"] == 1
    assert [(x["ref"]["Value"], x["reason"]) for x in state["plan"]["leftOut"]] == [
        ("vm-2", "over_cap")
    ]


async def test_a_refused_override_drops_the_run_and_says_why_in_the_state(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload(policy={"maxVMs": 0, "scope": "galaxy"}))
    state = await state_with_plan(handle)
    assert "maxVMs" in state["plan"]["error"] and "scope" in state["plan"]["error"]
    assert rig.stand_ins.named(PLAN_PREEMPTION) == []
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_a_request_naming_no_entity_acts_on_the_whole_vcenter_and_says_so(rig: Rig) -> None:
    event = {
        "specversion": "1.0",
        "id": "cli-1",
        "source": "preemptctl",
        "type": "PreempctlRunEvent",
    }
    handle = await rig.signal_with_start(signal_payload(event=event))
    state = await has_run(handle)
    planned: PlanInput = rig.stand_ins.named(PLAN_PREEMPTION)[0]
    assert planned.entity is None
    assert (state["scope"], state["entity"]) == ("vcenter", None)
    assert any("whole vCenter" in note for note in state["plan"]["notes"])


async def test_the_signals_own_entity_wins_over_the_alarm_events(rig: Rig) -> None:
    entity = {"Type": "ClusterComputeResource", "Value": "domain-c9"}
    handle = await rig.signal_with_start(signal_payload(entity=entity))
    state = await has_run(handle)
    assert rig.stand_ins.named(PLAN_PREEMPTION)[0].entity == MoRef("domain-c9", entity["Type"])
    assert (state["scope"], state["entity"]) == ("entity", entity)


@pytest.mark.parametrize("rig", [lambda: StandIns(plan_fails=True)], indirect=True)
async def test_a_plan_that_fails_is_said_in_the_state_and_the_workflow_waits_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    handle = await rig.signal_with_start(signal_payload())
    state = await state_with_plan(handle)
    assert "not found" in state["plan"]["error"]
    assert rig.stand_ins.named(POWER_OFF_VMS) == []
    assert any("planning the preemption failed" in r.getMessage() for r in caplog.records)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_a_sent_event_is_a_preempted_event(rig: Rig) -> None:
    handle = await rig.signal_with_start(signal_payload())
    await has_run(handle)
    await wait_for(lambda: bool(rig.stand_ins.named(SEND_PREEMPTED_EVENT)), what="the event")
    assert rig.stand_ins.named(SEND_PREEMPTED_EVENT)[0].event_type == PREEMPTED_EVENT_TYPE


@pytest.mark.parametrize(
    "rig",
    [
        lambda: StandIns(
            policy=PreemptionPolicy(cooldown_seconds=0, selection=NO_NOTICE), gate=asyncio.Event()
        )
    ],
    indirect=True,
)
async def test_raising_signals_that_wait_together_make_one_run_at_the_worst_criticality(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # Each signal's line is a debug line (a storm brings thousands).
    caplog.set_level(logging.DEBUG, logger="temporalio.workflow")
    gate = rig.stand_ins.gate
    assert gate is not None
    handle = await rig.signal_with_start(signal_payload(replyTo=""))
    await wait_for(lambda: bool(rig.stand_ins.named("power_off_started")), what="run 1")
    for number, criticality in enumerate(["LOW", "MEDIUM", "LOW"]):
        event = {**signal_payload()["event"], "id": f"storm-{number}"}
        await handle.signal(SIGNAL_NAME, signal_payload(criticality=criticality, event=event))

    def received() -> int:
        return sum("received preemption request" in r.getMessage() for r in caplog.records)

    await wait_for(lambda: received() == 4, what="every signal received")
    gate.set()
    await wait_for(lambda: len(rig.stand_ins.named(ANNOTATE_VMS)) == 2, what="run 2")
    history = json.loads(await handle.query("history"))
    assert [r["run"] for r in history] == [1, 2]  # three signals, one run
    assert history[1]["criticality"] == "MEDIUM" and history[1]["eventID"] == "storm-2"
    assert len(rig.stand_ins.named(PLAN_PREEMPTION)) == 2
