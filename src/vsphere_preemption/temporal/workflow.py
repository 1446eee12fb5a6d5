"""PreemptVMsWorkflow: a long-lived loop that preempts tagged VMs on each signal.

Deterministic workflow code: no I/O, no clock but `workflow.now()`, every outside
fact (the worker's policy, vCenter, HTTP) comes through an activity and so sits in
the history. The Go worker's wire names are kept (`PreemptVMsWorkflow`,
`PreemptVMsChan`, `current_state`) and it takes no arguments, as the Go function
and `preemptctl` start it without any.

Where this differs from the Go worker, on purpose:
- the cooldown starts only after a run that acted (at least one VM confirmed off);
  a signal skipped by the cooldown neither extends it nor blanks the last run's state;
- the query answers the last run that acted, so `lastPreemptionTime` is what it says;
- a signal that cannot be decoded is logged and dropped (it never fails the workflow);
- signals that arrive during a run wait in a queue: one run at a time;
- a cancel that arrives mid-run lets that run finish (VMs being powered off still get
  annotated and reported), then the workflow completes with its state;
- it lives as long as its alarm (no execution timeout in the per-entity form, see
  `_wait_for_request`), or until the policy's `maxLifetime`, after which it ends with an
  `ended` state and a VmPreemptionExpiredEvent naming the VMs it leaves off.

Changing what this workflow does: the sequence of activities and timers is part of
every open workflow's history. Guard a change with `self._patched("<id>")` (see FOLDED_PATCH)
and keep the old branch until no history recorded without it is open; the replay test
(tests/temporal/test_replay.py) over tests/fixtures/histories/ catches a change that
breaks an existing history.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, NoReturn, cast

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    # Pure modules (standard library only): no need to re-import them per run.
    from vsphere_preemption.domain.achieved import planned_vs_achieved
    from vsphere_preemption.domain.durations import format_seconds
    from vsphere_preemption.domain.model import (
        Criticality,
        EntityUsage,
        GuestNoticeOutcome,
        MoRef,
        PowerOffOutcome,
        ResumeOutcome,
        StopAction,
        VmRef,
    )
    from vsphere_preemption.domain.overrides import Refusal, apply_request
    from vsphere_preemption.domain.pauses import Hold, Pause, hold_for
    from vsphere_preemption.domain.plan import Plan
    from vsphere_preemption.domain.policy import Policy, ResumePolicy, Scope, UseBasis
    from vsphere_preemption.domain.resume_room import fit
    from vsphere_preemption.domain.shapes import (
        AchievedWire,
        AnnotationExtras,
        CancelledEventData,
        EndedWire,
        EventAbout,
        EventData,
        ExpiredEventData,
        HeldEventData,
        HoldEntry,
        LatestRunWire,
        NoticeData,
        PlannedEventData,
        PlannedExtras,
        PreemptedRoundEventData,
        ReleasedEventData,
        ResponseExtras,
        ResponseWire,
        ResultWire,
        ResumedEventData,
        RoundEntry,
        RoundExtras,
        RunRecord,
        ScheduledEventData,
        StayOffEntry,
        VmIssueWire,
        moref_to_wire,
    )
    from vsphere_preemption.domain.workflow_ids import parse_workflow_id

    # The activities' class, for typed references (mypy checks what goes in and out); the
    # activity names on the wire are theirs (contracts.py), so histories read the same.
    from vsphere_preemption.temporal.activities import PreemptionActivities
    from vsphere_preemption.temporal.contracts import (
        AnnotateInput,
        FindVmsInput,
        GuestNoticeInput,
        PauseBook,
        PlanInput,
        PlanOutput,
        PowerOffInput,
        PreemptionPolicy,
        ReadPausesInput,
        ResumeInput,
        SendEventInput,
        UseInput,
    )
    from vsphere_preemption.temporal.log_context import bind_event
    from vsphere_preemption.temporal.records import (
        LastRun,
        Memory,
        Planned,
        Room,
        RunFields,
        RunPlan,
        Stopped,
        joined,
        resume_order,
    )
    from vsphere_preemption.temporal.run_metrics import record_run
    from vsphere_preemption.wire import (
        CANCELLED_EVENT_TYPE,
        EXPIRED_EVENT_TYPE,
        HELD_EVENT_TYPE,
        HISTORY_QUERY,
        PAUSES_CHANGED_SIGNAL,
        PLANNED_EVENT_TYPE,
        QUERY_NAME,
        RELEASED_EVENT_TYPE,
        RESUMED_EVENT_TYPE,
        SCHEDULED_EVENT_TYPE,
        SIGNAL_NAME,
        WATCH_SIGNAL,
        WORKFLOW_TYPE,
        Annotation,
        WorkflowRequest,
        WorkflowResponse,
        append_fields,
        format_time,
        go_json,
        pauses_workflow_id,
        preempted_event_data,
        preempted_event_id,
    )

# The Go worker's activity options (docs/wire.md), but for the heartbeat and retry below.
ACTIVITY_TIMEOUT = timedelta(minutes=5)
# A killed worker's activity is retried only once its heartbeat times out, then after the
# retry's first interval: 3 s + 1 s bound how long a run waits for a dead worker (was 5 s + 2 s;
# bench/kill_resume.py, BENCHMARKS.md). The activities heartbeat every second (activities.py)
# and the worker sends each at once (worker.HEARTBEAT_THROTTLE), so 3 s leaves two beats of slack.
# Changing these options does not break replay (activity type and id are what it compares).
HEARTBEAT_TIMEOUT = timedelta(seconds=3)
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)
POLICY_TIMEOUT = timedelta(seconds=10)

# workflow.patched IDs. Histories recorded before a patch replay the old branch.
# select-by-plan: victims chosen by domain.plan (scope, priority, target, budgets) through
# PlanPreemption, instead of the first N tagged VMs by name through GetPreemptibleVMs.
PLAN_PATCH = "select-by-plan"


# act-with-care: a notice before acting (events, a durable timer, optionally the guest),
# the stop action per criticality, resume on clear, coalesced signals, continue-as-new.
CARE_PATCH = "act-with-care"
# strict-signals: a signal must meet WorkflowRequest.check (docs/wire.md); runs started
# before took looser ones, and replay them as they were.
STRICT_SIGNALS_PATCH = "strict-signals"
# known-cooldown: a run that would start within the cooldown of the last run that acted, as
# the last policy read gave it, is skipped without reading the policy again. A storm of raising
# signals that come one by one after a run (too far apart to wait together and coalesce) each
# made a run that read the policy (a local activity, its marker in history) only to skip it.
KNOWN_COOLDOWN_PATCH = "known-cooldown"
# safe-overrides: a request's policy overrides are taken only where they make the run safer
# (domain.overrides); runs before merged them over the worker's policy whatever they did.
SAFE_OVERRIDES_PATCH = "safe-overrides"
# alarm-lifetime: the workflow ends itself once the policy's maxLifetime has passed since its
# first run started (counted across continue-as-new, which Temporal's execution timeout also
# is, but silently: the function no longer sets one in the per-entity form). Runs before waited
# for signals with no bound of their own.
LIFETIME_PATCH = "alarm-lifetime"
# storm-proof: a signal costs the workflow little (its entity read once, not per comparison;
# no info line per signal), and the workflow continues as new when its history is long also
# before a run and while it waits, not only after a run: a storm that keeps a run from ending
# (or signals that come one by one, each skipped) no longer grows a run's history without end.
# Continuing before a run hands the waiting requests to the next run (Memory.pending).
STORM_PATCH = "storm-proof"
# preempt-until-relieved: after a round that acted, the policy's `loop` waits its settle, plans
# again with what was stopped counted and acts, until the target is met, the alarm lowers, no
# candidate is left or maxRounds (one round: as before). With it, a run on the allocation basis
# reads the entity's use through ReadEntityUse. Runs before acted on one plan only.
LOOP_PATCH = "until-relieved"
# pause-switch: before acting (before the notice, and again after it), a run reads the pauses
# of its task queue's registry (ReadPauses) and the policy's quiet windows; while they cover its
# alarm and entity the run is held: planned and shown, nothing acted on, until they end (then
# it plans again and goes on) or the alarm lowers (then nothing happens). Runs before the patch
# never read pauses, and replay so.
PAUSE_PATCH = "pause-switch"
# pause-rounds: rounds 2 and later of a preempt-until-relieved loop read the pauses too, before
# they plan, and are held as the first round is; a lowering while held ends the loop. Loops
# before it acted in every round whatever the pauses said after the first.
PAUSE_ROUNDS_PATCH = "pause-rounds"
# pauses-in-plan: a run that may act has PlanPreemption read the pauses too (PlanInput's
# pauses_registry; the query runs while the plan reads vCenter), instead of a ReadPauses
# activity after the plan: one activity and one workflow task fewer before a run acts (issue
# 20). What holds the run is the same registry's answer. A plan answered without the pauses (a
# worker from before, during an upgrade) is followed by ReadPauses, as before the patch. Runs
# before the patch read the pauses after the plan, and replay so.
PAUSES_IN_PLAN_PATCH = "pauses-in-plan"
# resume-headroom: a run that acted on an entity with a target remembers that target and what
# each victim freed; its resume then re-reads the entity's use before each batch and powers on
# only the VMs that keep the entity at or below the target less resume.headroom, waiting for
# room up to resume.maxWait (domain/resume_room.py). Resumes before powered all on in batches.
RESUME_ROOM_PATCH = "resume-headroom"
# folded-patches (issue 20): one marker for every patch above, in a workflow that begins after
# it. The SDK's core records each patch asked with a marker and an upsert of the
# TemporalChangeVersion search attribute, so a new workflow's first task wrote 20 events
# before its plan could be scheduled (the server took ~4 ms for them on the development
# machine), and each run it continued as new wrote them again. A workflow whose history has
# this marker takes every patch FOLDED folds as on without asking; one whose history has not
# (begun before it) asks each as it did. TemporalChangeVersion names `folded-patches` alone
# for the new ones. A later patch is asked for itself: never add it to FOLDED.
FOLDED_PATCH = "folded-patches"
FOLDED = frozenset({
    PLAN_PATCH, CARE_PATCH, STRICT_SIGNALS_PATCH, KNOWN_COOLDOWN_PATCH, SAFE_OVERRIDES_PATCH,
    LIFETIME_PATCH, STORM_PATCH, LOOP_PATCH, PAUSE_PATCH, PAUSE_ROUNDS_PATCH,
    PAUSES_IN_PLAN_PATCH, RESUME_ROOM_PATCH,
})  # fmt: skip
# A held run re-reads the pauses at least this often, in case the registry's word that they
# changed never came (a registry replaced by hand, a watcher lost): long, so that a pause of
# days costs its workflow's history a few events an hour.
HOLD_RECHECK = timedelta(hours=1)
# ... and this soon after a read of the pauses failed (the registry unreachable: still held).
HOLD_RETRY = timedelta(seconds=30)
HELD_LOWERED = "the alarm lowered while the run was held: nothing was acted on"
# Continue as new past this many history events even if the server does not suggest it yet:
# a replay of a long-lived alarm's workflow stays quick, far below Temporal's limits.
MAX_HISTORY_EVENTS = 2_000
# ... and a storm-proof one past this many. A storm's run is mostly signals, each taken in a
# workflow task of its own when paced; replaying it costs the SDK a round trip per task more
# than it costs our code: 1,000 such events replayed in 0.39 s on a quiet machine, 0.62-0.68 s
# on a loaded one (bench/signal_storm.py, BENCHMARKS.md). 600 replayed faster but doubled the
# continue-as-new attempts a storm makes, and with them the ones a signal refuses (a failed
# workflow task) and the queries that wait over a second while the run is rebuilt.
STORM_MAX_HISTORY_EVENTS = 1_000
# The newest run's record as the query answer's `lastRun` carries it.
LATEST_RUN_FIELDS = ("run", "kind", "outcome", "startedAt", "endedAt", "reason", "loop")
# Why a preempt-until-relieved loop stopped (the run record's `loop.stopped`).
TARGET_MET = "target met"
ALARM_LOWERED = "alarm lowered"
NO_CANDIDATES = "no candidates"
MAX_ROUNDS = "maxRounds"
LOWERED = "the alarm lowered during the notice: nothing was acted on"
# A resume's outcomes.
RESUMED = "resumed"
RESUMED_IN_PART = "resumed in part"  # maxWait passed with VMs still waiting for room
INTERRUPTED = "interrupted"


@workflow.defn(name=WORKFLOW_TYPE)
class PreemptVMsWorkflow:
    def __init__(self) -> None:
        self._pending: deque[WorkflowRequest] = deque()
        self._mem = Memory()
        self._lowered = False  # the alarm lowered (the workflow was asked to cancel)
        self._care = False  # this workflow acts with care (memoized patch)
        self._safe_overrides = False  # memoized patch, as _care
        self._life: bool | None = None  # memoized alarm-lifetime patch (None: not asked yet)
        self._ended: EndedWire | None = None  # how it ended by itself, for the state
        # The cooldown of the last policy read (none yet in this run of the workflow).
        self._cooldown: timedelta | None = None
        self._storm: bool | None = None  # this workflow is storm-proof (memoized patch)
        self._folded: bool | None = None  # folded-patches (None: not asked yet)
        self._relieve = False  # this workflow may preempt until relieved (memoized patch)
        self._pausable = False  # this run reads pauses (pause-switch patch)
        self._pauses_in_plan = False  # ... with its plan (memoized patch)
        self._held: HoldEntry | None = None  # the hold in progress, for the state
        self._pauses_changed = False  # the registry said the pauses changed

    @workflow.run
    async def run(self, carried: str | None = None) -> RawValue:
        # Go returns *WorkflowResponse: the JSON object in the Go struct's field order. A
        # dict would reach the history with its keys sorted by Temporal's JSON converter,
        # so the result is the encoded payload itself. `carried`: what the previous run
        # handed over when continuing as new (the Go function starts it with nothing).
        if carried is not None:
            self._mem = Memory.from_json(carried)
            self._pending.extend(self._mem.pending)
            self._care = True
            self._storm_proof()
        try:
            while True:
                if not await self._wait_for_request():
                    break  # its life is over: it completes with its state
                if self._due():
                    # Idle, or about to run with a long history: the next run of the workflow
                    # takes the waiting requests. Between runs only, never mid-run.
                    self._continue_as_new("the history is long")
                request = self._pending.popleft()
                run = asyncio.ensure_future(self._preempt(request))
                try:
                    await asyncio.shield(run)
                except asyncio.CancelledError:
                    self._lowered = True  # a run in its notice stops; one acting finishes
                    workflow.logger.info("cancel requested mid-run: finishing the run first")
                    await run
                    raise
                if self._care and self._history_is_long():
                    self._continue_as_new("the history is long")
        except asyncio.CancelledError:
            self._lowered = True
            workflow.logger.info("workflow cancelled: completing with the last run's state")
            if self._care and await self._resume_all():
                self._continue_as_new("a raising alarm stopped the resume")
        return json_payload(go_json(self._result()))

    # Dynamic, so that a signal with any number of payloads reaches us as raw
    # values: a named handler whose arity does not match would fail the workflow
    # task on every replay, and the workflow would be stuck for good.
    @workflow.signal(dynamic=True)
    def _on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        if name == PAUSES_CHANGED_SIGNAL:
            self._pauses_changed = True  # no command: a workflow before pause-switch ignores it
            return
        if name != SIGNAL_NAME:
            workflow.logger.warning("dropping unknown signal %r", name)
            return
        if len(args) != 1:
            workflow.logger.warning(
                "dropping %s: expected one payload, got %d", SIGNAL_NAME, len(args)
            )
            return
        try:
            request = _decode_request(args[0].payload, self._patched(STRICT_SIGNALS_PATCH))
        except Exception as exc:  # noqa: BLE001 (any bad payload is dropped, never fatal)
            workflow.logger.warning("dropping undecodable %s: %s", SIGNAL_NAME, exc)
            return
        # A storm brings thousands: one line each only when debugging (a log line is no
        # command: no patch needed to change it).
        workflow.logger.debug(
            "received preemption request: tag=%s criticality=%s eventID=%s",
            request.tag,
            request.criticality.value,
            request.event.get("id", ""),
        )
        # A raising alarm that comes while another waits adds nothing but its criticality
        # and its event: one pending run, the most severe criticality, the latest event.
        if self._pending and self._patched(CARE_PATCH):
            merged = coalesce(self._pending[-1], request)
            if merged is not None:
                self._pending[-1] = merged
                return
        self._pending.append(request)

    @workflow.query(name=QUERY_NAME)
    def current_state(self) -> str:
        return self._response().to_json()

    @workflow.query(name=HISTORY_QUERY)
    def history(self) -> str:
        """The last runs of this workflow (bounded by the policy's `history`), oldest first."""
        return go_json(list(self._mem.runs)).decode()

    def _response(self) -> WorkflowResponse:
        info = workflow.info()
        last = self._mem.last
        extra: ResponseExtras = {
            **self._planned_wire(),
            **self._latest_run(),
            **self._ended_extras(),
            **self._paused(),
        }
        if last is None:
            # Go's zero values: what the Go worker answers before its first run.
            return WorkflowResponse(
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                workflow_name=info.workflow_type,
                extra=extra,
            )
        return WorkflowResponse(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            workflow_name=info.workflow_type,
            last_preemption=last.at,
            virtual_machines=last.vms,
            tag=last.request.tag,
            criticality=last.request.criticality,
            event=last.request.event,
            reply_to=last.request.reply_to,
            extra=extra,
        )

    def _result(self) -> ResponseWire | ResultWire:
        result = self._response().to_wire()
        if not self._care:
            return result
        return {**result, "history": list(self._mem.runs)}

    # -- one run ------------------------------------------------------------------------

    async def _preempt(self, request: WorkflowRequest) -> None:
        # Asked before the local activity: a patch marker recorded after a local activity's
        # marker is not seen in time on replay (the replay would take the old branch).
        # The answers are memoized for the workflow's life: a workflow that began before a
        # patch keeps its old ways until it ends, so its replays agree.
        by_plan = self._patched(PLAN_PATCH)
        self._care = by_plan and self._patched(CARE_PATCH)
        known_cooldown = self._patched(KNOWN_COOLDOWN_PATCH)
        self._safe_overrides = by_plan and self._patched(SAFE_OVERRIDES_PATCH)
        if self._care:
            self._storm_proof()
            self._relieve = self._patched(LOOP_PATCH)
            self._pausable = self._patched(PAUSE_PATCH)
            self._pauses_in_plan = self._pausable and self._patched(PAUSES_IN_PLAN_PATCH)
        self._mem.run_number += 1
        bind_event(str(request.event.get("id", "")))  # this run's log lines name its event
        record = self._start_record(request)
        if known_cooldown and self._cooldown is not None and self._cooling_down(self._cooldown):
            self._finish(record, "skipped", error="within the cooldown")
            return
        try:
            policy = await workflow.execute_local_activity_method(
                PreemptionActivities.get_policy,
                start_to_close_timeout=POLICY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("reading the worker's policy failed: %s", _cause(err))
            self._finish(record, "failed", error=f"reading the policy: {_cause(err)}")
            return
        self._cooldown = policy.cooldown
        self._note_lifetime(request, policy)
        if self._cooling_down(policy.cooldown):
            self._finish(record, "skipped", error="within the cooldown")
            return

        if by_plan:
            await self._preempt_by_plan(request, policy, record)
        else:
            await self._preempt_by_name(request, policy, record)

    def _cooling_down(self, cooldown: timedelta) -> bool:
        """Whether the last run that acted is within `cooldown` (logged when it is)."""
        last = self._mem.last
        if last is None or workflow.now() - last.at >= cooldown:
            return False
        workflow.logger.info(
            "skipping run: the last preemption (%s) is within the cooldown of %ss",
            last.at.isoformat(),
            cooldown.total_seconds(),
        )
        return True

    async def _preempt_by_name(
        self, request: WorkflowRequest, policy: PreemptionPolicy, record: RunRecord
    ) -> None:
        """Before select-by-plan: the first `max_vms` tagged VMs in vCenter, by name."""
        try:
            selection = await workflow.execute_activity_method(
                PreemptionActivities.get_preemptible_vms,
                FindVmsInput(tag=request.tag, max_vms=policy.max_vms),
                **_options(),
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("finding preemptible VMs failed: %s", _cause(err))
            self._finish(record, "failed", error=_cause(err))
            return
        for issue in selection.left_out:
            workflow.logger.info("left out %s: %s", issue.vm, issue.reason)
        if not selection.selected:
            workflow.logger.info("no powered-on VM carries the tag %r", request.tag)
            self._finish(record, "nothing to do")
            return
        stop = StopAction.POWER_OFF if request.criticality.forces_power_off else StopAction.SHUTDOWN
        outcome = await self._power_off(request, selection.selected, policy, stop, None, record)
        if outcome is None:
            return
        annotation = self._record_run(request, outcome, stop, extra={})
        await self._annotate(outcome, annotation)
        await self._send(
            request,
            preempted_event_id(workflow.info().workflow_id, request.event),
            preempted_event_data(annotation, outcome.powered_off),
        )

    async def _preempt_by_plan(
        self, request: WorkflowRequest, policy: PreemptionPolicy, record: RunRecord
    ) -> None:
        """Victims by place, priority and need: all choice is domain.plan's, in PlanPreemption.

        The steps, each its own method: the plan (with the policy in effect), then either a
        dry run's event, nothing to do, or the pauses and the notice and, cleared, the act.
        """
        run = await self._planned_run(request, policy, record)
        if run is None:
            return
        if run.dry_run:
            await self._dry_run(run, record)
        elif not run.chosen.victims:
            workflow.logger.info("the plan has no victim: nothing to preempt")
            self._finish(record, "nothing to do")
        elif await self._cleared(run, record):
            await self._act(run, record)

    def _policy_in_effect(
        self, request: WorkflowRequest, policy: PreemptionPolicy, record: RunRecord
    ) -> tuple[Policy, tuple[Refusal, ...]] | None:
        """The worker's policy with the request's overrides (only the safe ones, after
        safe-overrides), and the refused ones; None, the run failed, if it is invalid."""
        try:
            effective = Policy.from_wire(policy.selection or {})
            if request.policy is not None and self._safe_overrides:
                overridden = apply_request(effective, request.policy)
                return overridden.policy, overridden.refused
            if request.policy is not None:
                effective = effective.with_overrides(request.policy)
        except ValueError as exc:
            workflow.logger.error("dropping the run: its policy is refused: %s", exc)
            self._mem.planned = Planned(None, Scope.ENTITY, request.dry_run, None, error=str(exc))
            self._finish(record, "failed", error=str(exc))
            return None
        return effective, ()

    @staticmethod
    def _plan_notes(
        refused: tuple[Refusal, ...],
        effective: Policy,
        entity: MoRef | None,
        record: RunRecord,
    ) -> list[str]:
        """What the plan's notes say of the request: refused overrides, a missing entity."""
        notes: list[str] = []
        if refused:
            # The run goes on under the administrator's value of each refused field.
            record["refusedOverrides"] = [r.to_wire() for r in refused]
            notes += [f"override of {r.field} refused: {r.reason}" for r in refused]
        if effective.scope is Scope.ENTITY and entity is None:
            notes.append("the request names no alarmed entity: acting on the whole vCenter")
        for note in notes:
            workflow.logger.warning("%s", note)
        return notes

    async def _request_plan(
        self,
        request: WorkflowRequest,
        entity: MoRef | None,
        effective: Policy,
        pauses_registry: str | None = None,
    ) -> PlanOutput:
        """The PlanPreemption activity: the facts read and the victims chosen, on the worker
        (and the pauses of `pauses_registry`, if named)."""
        return await workflow.execute_activity_method(
            PreemptionActivities.plan_preemption,
            PlanInput(
                tag=request.tag,
                entity=entity,
                policy=effective.to_wire(),
                criticality=request.criticality,
                pauses_registry=pauses_registry,
            ),
            **_options(),
        )

    async def _planned_run(
        self, request: WorkflowRequest, policy: PreemptionPolicy, record: RunRecord
    ) -> RunPlan | None:
        """Plan the run, record and show the plan; None if there is none (the run failed)."""
        found = self._policy_in_effect(request, policy, record)
        if found is None:
            return None
        effective, refused = found
        entity = request.alarmed_entity() if effective.scope is Scope.ENTITY else None
        scope = Scope.ENTITY if entity is not None else Scope.VCENTER
        record["entity"] = None if entity is None else moref_to_wire(entity)
        notes = self._plan_notes(refused, effective, entity, record)
        dry_run = request.dry_run or effective.dry_run
        try:
            planned, read = await self._plan_and_pauses(request, entity, effective, dry_run)
        except FailureError as err:
            _reraise_cancel(err)
            why = _cause(err)
            workflow.logger.error("planning the preemption failed: %s", why)
            self._mem.planned = Planned(entity, scope, dry_run, None, tuple(notes), error=why)
            self._finish(record, "failed", error=why)
            return None
        chosen = Plan.from_wire(planned.plan)
        notes += planned.notes
        self._mem.planned = Planned(entity, scope, dry_run, planned.plan, tuple(notes))
        record["victims"] = [v.ref.value for v in chosen.victims]
        record["leftOut"] = len(chosen.left_out)
        _log_plan(chosen)
        if self._care:
            self._mem.history_keep = effective.history
            self._mem.max_concurrency = policy.max_concurrency
        return RunPlan(request, policy, effective, entity, chosen, dry_run, read)

    async def _plan_and_pauses(
        self, request: WorkflowRequest, entity: MoRef | None, effective: Policy, dry_run: bool
    ) -> tuple[PlanOutput, tuple[Hold | None, int | None] | None]:
        """The plan, and (pauses-in-plan, a run that may act) what the pauses read with it say;
        None when they were not read with it (then `_cleared` reads them)."""
        if not self._pauses_in_plan or dry_run:
            return await self._request_plan(request, entity, effective), None
        registry = pauses_workflow_id(workflow.info().task_queue)
        planned = await self._request_plan(request, entity, effective, registry)
        if planned.pauses is None and not planned.pauses_unread:
            return planned, None  # a worker that does not read them in the plan
        return planned, self._hold_from(request, effective, planned.pauses, planned.pauses_unread)

    def _planned_wire(self) -> PlannedExtras:
        """The latest plan's extras for an event (a run has planned by the time it sends)."""
        return {} if self._mem.planned is None else self._mem.planned.to_wire()

    async def _dry_run(self, run: RunPlan, record: RunRecord) -> None:
        workflow.logger.info(
            "dry run: %d victim(s) planned, none acted on", len(run.chosen.victims)
        )
        data: PlannedEventData = {**self._about(run.request), **self._planned_wire()}
        await self._send(
            run.request,
            preempted_event_id(workflow.info().workflow_id, run.request.event) + "-plan",
            data,
            event_type=PLANNED_EVENT_TYPE,
        )
        self._finish(record, "dry run")

    def _stop(self, run: RunPlan) -> tuple[StopAction, float | None]:
        """How the victims stop, and a shutdown's grace (None: the worker's setting)."""
        if self._care:
            stop = run.effective.stop_for(run.request.criticality)
            return stop.action, stop.grace_seconds
        forced = run.request.criticality.forces_power_off
        return (StopAction.POWER_OFF if forced else StopAction.SHUTDOWN), None

    async def _cleared(self, run: RunPlan, record: RunRecord) -> bool:
        """True when the run may act: no pause holds it, and its notice (if any) ran out with
        the alarm still raised. A held run that is released goes on in `_clear_to_act`."""
        request, policy, effective = run.request, run.policy, run.effective
        if self._pausable and not await self._clear_to_act(
            request, policy, effective, record, read=run.read_with_plan
        ):
            return False
        action, _ = self._stop(run)
        if self._care and not await self._notice(request, run.chosen, effective, action, record):
            return False
        # A pause that began during the notice holds the run before it acts (without a notice
        # the read just made stands: no second one).
        if not self._pausable or effective.notice_for(request.criticality) <= 0:
            return True
        return await self._clear_to_act(request, policy, effective, record, noticed=run.chosen.refs)

    async def _act(self, run: RunPlan, record: RunRecord) -> None:
        """Stop the victims, mark them, remember them for the resume, tell of it; then the
        loop's later rounds, if the policy has a loop."""
        request, effective, chosen = run.request, run.effective, run.chosen
        action, grace = self._stop(run)
        outcome = await self._power_off(request, chosen.refs, run.policy, action, grace, record)
        if outcome is None:
            return
        extra: AnnotationExtras = {"action": action.value} if self._care else {}
        annotation = self._record_run(request, outcome, action, extra=extra)
        written = await self._annotate(outcome, annotation)
        if self._care:
            self._mem.resume = effective.resume
            self._mem.room = self._room(run.entity, effective)
            noticed = effective.guest_notice and effective.notice_for(request.criticality) > 0
            self._remember_stopped(outcome, chosen, written, noticed)
        await self._measure_achieved(run.entity, chosen, effective)
        await self._send(
            request,
            preempted_event_id(workflow.info().workflow_id, request.event),
            self._preempted_data(annotation, outcome, effective, 1),
        )
        if self._looping(effective):
            announced = set(chosen.refs) if record.get("notice") else set()
            await self._more_rounds(run, record, announced)

    async def _measure_achieved(
        self, entity: MoRef | None, chosen: Plan, effective: Policy
    ) -> AchievedWire | None:
        """The entity's use read again after a round acted, against what its plan expected
        (in the state and the event as `achieved`); None without an entity or a target."""
        if entity is None or chosen.target is None or self._mem.planned is None:
            return None
        after = await self._use_now(entity, effective)
        achieved = planned_vs_achieved(chosen.target, after)
        self._mem.planned = replace(self._mem.planned, achieved=achieved)
        return achieved

    async def _notice(
        self,
        request: WorkflowRequest,
        chosen: Plan,
        effective: Policy,
        action: StopAction,
        record: RunRecord,
        round_number: int = 1,
    ) -> bool:
        """Announce, then wait the notice on a durable timer; False if the alarm lowered."""
        seconds = effective.notice_for(request.criticality)
        if seconds <= 0:
            return True
        not_before = workflow.now() + timedelta(seconds=seconds)
        notice: NoticeData = {
            "action": action.value,
            "notBefore": format_time(not_before),
            "noticeSeconds": seconds,
            "virtualMachines": [moref_to_wire(r) for r in chosen.refs],
        }
        record["notice"] = {"seconds": seconds, "notBefore": notice["notBefore"]}
        event_id = preempted_event_id(workflow.info().workflow_id, request.event)
        if round_number > 1:
            event_id += f"-round-{round_number}"  # each round's notice its own CloudEvent
        if effective.guest_notice:
            guest = {
                "action": action.value,
                "notBefore": notice["notBefore"],
                "workflowID": workflow.info().workflow_id,
            }
            await self._guest_notice(chosen.refs, go_json(guest).decode())
        scheduled: ScheduledEventData = {
            **self._about(request),
            **notice,
            **self._planned_wire(),
        }
        await self._send(
            request, event_id + "-scheduled", scheduled, event_type=SCHEDULED_EVENT_TYPE
        )
        workflow.logger.info("notice: %s in %ss", action.value, seconds)
        try:
            await workflow.wait_condition(lambda: self._lowered, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            return True
        workflow.logger.info("%s", LOWERED)
        if effective.guest_notice:
            await self._guest_notice(chosen.refs, "")
        cancelled: CancelledEventData = {**self._about(request), **notice, "reason": LOWERED}
        await self._send(
            request, event_id + "-cancelled", cancelled, event_type=CANCELLED_EVENT_TYPE
        )
        self._finish(record, "cancelled", error=LOWERED)
        return False

    async def _guest_notice(self, vms: list[VmRef], value: str) -> None:
        try:
            result: GuestNoticeOutcome = await workflow.execute_activity_method(
                PreemptionActivities.set_guest_notice,
                GuestNoticeInput(vms=vms, value=value, max_concurrency=self._mem.max_concurrency),
                **_options(),
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.warning("the guest notice failed: %s", _cause(err))
            return
        for issue in result.failed:
            workflow.logger.warning("no guest notice on %s: %s", issue.vm, issue.reason)

    async def _power_off(
        self,
        request: WorkflowRequest,
        vms: list[VmRef],
        policy: PreemptionPolicy,
        action: StopAction,
        grace_seconds: float | None,
        record: RunRecord,
    ) -> PowerOffOutcome | None:
        """Stop the VMs (confirmed by vCenter); None when none stopped."""
        force = action is not StopAction.SHUTDOWN
        grace = policy.soft_shutdown_grace_seconds if grace_seconds is None else grace_seconds
        # A soft shutdown may wait its whole grace before it forces.
        timeout = ACTIVITY_TIMEOUT if force else ACTIVITY_TIMEOUT + timedelta(seconds=grace)
        what = PowerOffInput(
            vms=vms,
            force=force,
            soft_shutdown_grace_seconds=grace,
            max_concurrency=policy.max_concurrency,
        )
        if self._care:
            what = replace(what, action=action.value)
        record["action"] = action.value
        try:
            outcome: PowerOffOutcome = await workflow.execute_activity_method(
                PreemptionActivities.power_off_vms,
                what,
                **_options(timeout),
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("powering VMs off failed: %s", _cause(err))
            self._finish(record, "failed", error=_cause(err))
            return None
        record["stopped"] = [r.value for r in outcome.powered_off]
        record["failed"] = [{"vm": i.vm.value, "reason": i.reason} for i in outcome.failed]
        record["forced"] = [r.value for r in outcome.forced_after_grace] + [
            i.vm.value for i in outcome.forced_without_grace
        ]
        for issue in outcome.failed:
            workflow.logger.error(
                "could not power off %s: %s", issue.vm, issue.reason, extra=_vm(issue.vm)
            )
        if not outcome.powered_off:
            workflow.logger.warning("no VM was powered off")
            self._finish(record, "failed", error="no VM was stopped")
            return None
        self._finish(record, "acted")
        return outcome

    def _record_run(
        self,
        request: WorkflowRequest,
        outcome: PowerOffOutcome,
        action: StopAction,
        extra: AnnotationExtras,
    ) -> Annotation:
        """Remember a run that acted (query, cooldown); the annotation it writes."""
        self._mem.last = LastRun(request=request, vms=tuple(outcome.powered_off), at=workflow.now())
        return Annotation(
            tag=request.tag,
            forced_shutdown=action is not StopAction.SHUTDOWN,
            criticality=request.criticality,
            workflow_id=workflow.info().workflow_id,
            workflow_started=workflow.info().workflow_start_time,
            event=request.event,
            extra=extra,
        )

    def _remember_stopped(
        self,
        outcome: PowerOffOutcome,
        chosen: Plan,
        written: dict[VmRef, str],
        guest_notice: bool,
    ) -> None:
        victims = {v.ref: v for v in chosen.victims}
        for mark in outcome.marks:
            victim = victims.get(mark.ref)
            if victim is None or mark.ref not in written:
                continue  # not ours to resume: no annotation says we stopped it
            share = victim.share if self._mem.room is not None else None
            self._mem.stopped[mark.ref.value] = Stopped(
                mark, victim.name, victim.priority, written[mark.ref], guest_notice, share
            )

    def _room(self, entity: MoRef | None, effective: Policy) -> Room | None:
        """What this run's resume will measure room against: its entity and targets, when
        it has both and resumes at all (asked only then: the patch marks no other run)."""
        if entity is None or not effective.targets.any or not effective.resume.enabled:
            return None
        if not self._patched(RESUME_ROOM_PATCH):
            return None
        return Room(entity, effective.targets)

    async def _entity_usage(self, entity: MoRef) -> EntityUsage | None:
        try:
            usage = await workflow.execute_activity_method(
                PreemptionActivities.read_entity_usage, entity, **_options()
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.warning(
                "reading %s's use after the run failed: %s", entity, _cause(err)
            )
            return None
        return usage

    async def _send(
        self,
        request: WorkflowRequest | None,
        event_id: str,
        data: EventData,
        *,
        event_type: str | None = None,
        reply_to: str = "",
    ) -> None:
        """Announce to `replyTo` (the request's, or the one given), if there is one."""
        target = request.reply_to if request is not None else reply_to
        if not target:
            return
        what = SendEventInput(reply_to=target, event_id=event_id, data_json=go_json(data).decode())
        if event_type is not None:
            what = replace(what, event_type=event_type)
        try:
            await workflow.execute_activity_method(
                PreemptionActivities.send_preempted_event, what, **_options()
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("sending the %s failed: %s", what.event_type, _cause(err))

    async def _annotate(self, outcome: PowerOffOutcome, annotation: Annotation) -> dict[VmRef, str]:
        """Annotate the stopped VMs; the annotation each one got (those that failed: none)."""
        # VMs a soft shutdown could not stop within the grace, or whose guest shutdown
        # vCenter refused (no Tools, suspended), were forced: say so on them.
        forced = set(outcome.forced_after_grace) | {i.vm for i in outcome.forced_without_grace}
        groups = [
            ([vm for vm in outcome.powered_off if vm not in forced], annotation),
            (
                [vm for vm in outcome.powered_off if vm in forced],
                replace(annotation, forced_shutdown=True),
            ),
        ]
        written: dict[VmRef, str] = {}
        for vms, value in groups:
            if not vms:
                continue
            text = value.to_json()
            try:
                result = await workflow.execute_activity_method(
                    PreemptionActivities.annotate_vms,
                    AnnotateInput(vms=vms, annotation_json=text),
                    **_options(),
                )
            except FailureError as err:
                # The VMs are off whatever happens to their note: log, go on.
                _reraise_cancel(err)
                workflow.logger.warning("annotating VMs failed: %s", _cause(err))
                continue
            for issue in result.failed:
                workflow.logger.warning(
                    "could not annotate %s: %s", issue.vm, issue.reason, extra=_vm(issue.vm)
                )
            written.update((vm, text) for vm in result.annotated)
        return written

    # -- preempt until relieved ---------------------------------------------------------

    def _looping(self, effective: Policy) -> bool:
        return self._relieve and effective.loop.enabled

    def _preempted_data(
        self, annotation: Annotation, outcome: PowerOffOutcome, effective: Policy, number: int
    ) -> PreemptedRoundEventData:
        """A VmPreemptedEvent's data after round `number` of a run (1: the only one, without a
        loop): the annotation and the VMs, the plan, the round."""
        return {
            **preempted_event_data(annotation, outcome.powered_off),
            **self._planned_wire(),
            **self._round_extras(effective, number),
        }

    def _round_extras(self, effective: Policy, number: int) -> RoundExtras:
        """A VmPreemptedEvent's round, and why the loop stops if it stops with this round."""
        if not self._looping(effective):
            return {}
        extras: RoundExtras = {"round": number, "maxRounds": effective.loop.max_rounds}
        stopped = self._stops_after_round(effective, number)
        if stopped is not None:
            extras["loopStopped"] = stopped
        return extras

    def _stops_after_round(self, effective: Policy, number: int) -> str | None:
        """Why the loop ends right after round `number` acted, or None to settle and re-plan.

        The target counts as met on the use read right after the round (`achieved`): a use that
        lags (quick stats) is read again by the next round's plan, after the settle.
        """
        achieved = None if self._mem.planned is None else self._mem.planned.achieved
        if achieved is not None and achieved.get("reached") is True:
            return TARGET_MET
        if number >= effective.loop.max_rounds:
            return MAX_ROUNDS
        return None

    async def _use_now(self, entity: MoRef, effective: Policy) -> EntityUsage | None:
        """The entity's use after a round, on the basis its target is judged by."""
        if not self._relieve or effective.targets.basis is UseBasis.USAGE:
            return await self._entity_usage(entity)  # the activity runs before the loop used
        return await self._use_on(entity, effective.targets.basis, "after a round")

    async def _more_rounds(self, run: RunPlan, record: RunRecord, announced: set[VmRef]) -> None:
        """Rounds 2 to maxRounds of one run: settle, plan again, act on what is still needed.

        Every round is in `record["rounds"]`; the run's `stopped` is every round's. Why the
        loop ended is `record["loop"]`: target met, alarm lowered, no candidates, maxRounds.
        """
        effective = run.effective
        loop = effective.loop
        targeted = effective.targets.any
        rounds: list[RoundEntry] = [self._round_entry(1, record)]
        record["rounds"] = rounds
        number, why, detail = 1, None, ""
        while why is None:
            why = self._stops_after_round(effective, number)
            if why is not None:
                break
            if self._lowered:
                why = ALARM_LOWERED
                break
            workflow.logger.info(
                "round %d acted: settling %ss before reading the use again",
                number,
                loop.settle_seconds,
            )
            try:
                await workflow.wait_condition(
                    lambda: self._lowered, timeout=timedelta(seconds=loop.settle_seconds)
                )
            except TimeoutError:
                pass
            else:
                why, detail = ALARM_LOWERED, f"during the settle after round {number}"
                break
            number += 1
            why, detail = await self._one_round(run, record, announced, number)
        if why == MAX_ROUNDS and not targeted:
            detail = "no target: the loop ran while the alarm stayed raised"
        elif why == MAX_ROUNDS:
            detail = "the target is still not met"
        record["loop"] = {"rounds": number, "maxRounds": loop.max_rounds, "stopped": why}
        if detail:
            record["loop"]["detail"] = detail
        workflow.logger.info(
            "preempt until relieved: stopped after %d round(s): %s%s",
            number,
            why,
            f" ({detail})" if detail else "",
        )

    def _round_entry(self, number: int, record: RunRecord) -> RoundEntry:
        planned = self._mem.planned
        entry: RoundEntry = {
            "round": number,
            "victims": list(record.get("victims", [])),
            "stopped": list(record.get("stopped", [])),
        }
        if planned is not None and planned.achieved is not None:
            entry["achieved"] = planned.achieved
        return entry

    @staticmethod
    def _keep_run_fields(record: RunRecord, before: RunFields, entry: RoundEntry) -> None:
        """_notice and _power_off write the run's own fields; a later round's go to its entry
        instead, and the run keeps its first round's notice and action, and every round's VMs."""
        now = RunFields.of(record)
        # What the round wrote (a new value, never removed one) goes to its entry, in order.
        if now.notice is not before.notice and now.notice is not None:
            entry["notice"] = now.notice
        if now.action is not before.action and now.action is not None:
            entry["action"] = now.action
        if now.stopped is not before.stopped and now.stopped is not None:
            entry["stopped"] = now.stopped
        if now.failed is not before.failed and now.failed is not None:
            entry["failed"] = now.failed
        if now.forced is not before.forced and now.forced is not None:
            entry["forced"] = now.forced
        # In place: a key the run had keeps its place in the record (its JSON).
        if before.notice is None:
            record.pop("notice", None)
        else:
            record["notice"] = before.notice
        if before.action is None:
            record.pop("action", None)
        else:
            record["action"] = before.action
        record["stopped"] = joined(before.stopped, now.stopped)
        record["failed"] = joined(before.failed, now.failed)
        record["forced"] = joined(before.forced, now.forced)

    async def _one_round(
        self, run: RunPlan, record: RunRecord, announced: set[VmRef], number: int
    ) -> tuple[str | None, str]:
        """Plan again and act; (why the loop stops, detail), or (None, "") to go on."""
        request, effective = run.request, run.effective
        entry: RoundEntry = {"round": number, "startedAt": format_time(workflow.now())}
        record["rounds"].append(entry)
        if not await self._round_clear(request, effective, record):
            entry["outcome"] = "held"
            return ALARM_LOWERED, f"while round {number} was held by a pause"
        chosen, why, detail = await self._plan_round(run, entry, number)
        if chosen is None:
            return why, detail
        stop = effective.stop_for(request.criticality)
        # Only the VMs not announced yet get a notice: one still running after an earlier
        # round (it failed to stop) has had its warning.
        new = replace(chosen, victims=tuple(v for v in chosen.victims if v.ref not in announced))
        before = RunFields.of(record)
        try:
            if new.victims:
                if not await self._notice(request, new, effective, stop.action, record, number):
                    return ALARM_LOWERED, f"during round {number}'s notice"
                if record.get("notice") is not before.notice:
                    announced.update(new.refs)
            outcome = await self._power_off(
                request, chosen.refs, run.policy, stop.action, stop.grace_seconds, record
            )
        finally:
            self._keep_run_fields(record, before, entry)
        if outcome is None:
            entry["outcome"] = "failed"
            return NO_CANDIDATES, f"round {number} stopped no VM"
        entry["outcome"] = "acted"
        await self._after_round(run, chosen, outcome, entry, number)
        return None, ""

    async def _plan_round(
        self, run: RunPlan, entry: RoundEntry, number: int
    ) -> tuple[Plan | None, str | None, str]:
        """Round `number`'s plan, or None with why the loop stops and the detail."""
        entity = run.entity
        try:
            planned = await self._request_plan(run.request, entity, run.effective)
        except FailureError as err:
            _reraise_cancel(err)
            entry["error"] = _cause(err)
            workflow.logger.error("planning round %d failed: %s", number, entry["error"])
            return None, NO_CANDIDATES, f"round {number} could not plan: {entry['error']}"
        chosen = Plan.from_wire(planned.plan)
        scope = Scope.ENTITY if entity is not None else Scope.VCENTER
        self._mem.planned = Planned(entity, scope, False, planned.plan, tuple(planned.notes))
        entry["victims"] = [v.ref.value for v in chosen.victims]
        if chosen.target is not None and chosen.target.reached and not chosen.victims:
            # The use read again after the settle: what the lag hid is seen now.
            entry["outcome"] = "nothing to do"
            return None, TARGET_MET, f"read again before round {number}: {chosen.target.note}"
        if not chosen.victims:
            entry["outcome"] = "nothing to do"
            return None, NO_CANDIDATES, f"round {number}'s plan has no victim"
        _log_plan(chosen, number)
        return chosen, None, ""

    async def _after_round(
        self,
        run: RunPlan,
        chosen: Plan,
        outcome: PowerOffOutcome,
        entry: RoundEntry,
        number: int,
    ) -> None:
        """A later round that acted: recorded in the run (its VMs added to the state's),
        marked, remembered for the resume, measured, and told in its own event."""
        request, effective, entity = run.request, run.effective, run.entity
        stop = effective.stop_for(request.criticality)
        previous = self._mem.last.vms if self._mem.last is not None else ()
        annotation = self._record_run(
            request, outcome, stop.action, extra={"action": stop.action.value}
        )
        # The state's VMs are the whole run's, every round's.
        assert self._mem.last is not None
        self._mem.last = replace(self._mem.last, vms=tuple(previous) + self._mem.last.vms)
        written = await self._annotate(outcome, annotation)
        noticed = effective.guest_notice and effective.notice_for(request.criticality) > 0
        self._remember_stopped(outcome, chosen, written, noticed)
        achieved = await self._measure_achieved(entity, chosen, effective)
        if achieved is not None:
            entry["achieved"] = achieved
        entry["endedAt"] = format_time(workflow.now())
        await self._send(
            request,
            f"{preempted_event_id(workflow.info().workflow_id, request.event)}-round-{number}",
            self._preempted_data(annotation, outcome, effective, number),
        )

    # -- the pause switch ---------------------------------------------------------------

    async def _round_clear(
        self, request: WorkflowRequest, effective: Policy, record: RunRecord
    ) -> bool:
        """A later round of the loop is held by a pause as the first is (pause-rounds): True
        once nothing holds it, False if the alarm lowered while it was held."""
        if not self._pausable or not self._patched(PAUSE_ROUNDS_PATCH):
            return True
        hold, version = await self._read_hold(request, effective)
        return hold is None or await self._hold(request, effective, record, hold, version)

    async def _clear_to_act(
        self,
        request: WorkflowRequest,
        policy: PreemptionPolicy,
        effective: Policy,
        record: RunRecord,
        noticed: list[VmRef] | None = None,
        read: tuple[Hold | None, int | None] | None = None,
    ) -> bool:
        """True if no pause or quiet window holds this run now (`read`: as read with the
        plan; else read now). Otherwise hold it; once released with the alarm still raised,
        plan again (the facts may have changed over a long pause) and go on in that run;
        False either way: this run's course is over."""
        hold, version = read if read is not None else await self._read_hold(request, effective)
        if hold is None:
            return True
        if noticed and effective.guest_notice:
            await self._guest_notice(noticed, "")  # the notice's time no longer stands
        if await self._hold(request, effective, record, hold, version):
            await self._preempt_by_plan(request, policy, record)
        return False

    def _where(self, request: WorkflowRequest) -> tuple[str, str | None]:
        """The alarm and entity a pause names: the alarm as the workflow ID has it (the
        function builds IDs from alarm names), the entity the run plans for."""
        address = parse_workflow_id(workflow.info().workflow_id)
        entity = request.alarmed_entity()
        return address.alarm, entity.value if entity is not None else address.entity

    async def _read_hold(
        self, request: WorkflowRequest, effective: Policy
    ) -> tuple[Hold | None, int | None]:
        """What holds this run now, and the registry's version read (None: unread)."""
        registry = pauses_workflow_id(workflow.info().task_queue)
        try:
            book: PauseBook = await workflow.execute_activity_method(
                PreemptionActivities.read_pauses, ReadPausesInput(registry), **_options()
            )
        except FailureError as err:
            _reraise_cancel(err)
            return self._hold_from(request, effective, None, _cause(err))
        return self._hold_from(request, effective, book, "")

    def _hold_from(
        self, request: WorkflowRequest, effective: Policy, book: PauseBook | None, unread: str
    ) -> tuple[Hold | None, int | None]:
        """What the pauses read (or `unread`: why they could not be) hold, with their version."""
        if book is None:
            # Unknown is not "not paused": an operator's pause must not be missed because the
            # registry could not be read. Held, and read again soon.
            why = f"the pauses could not be read ({unread})"
            workflow.logger.error("%s", why)
            return Hold(workflow.now() + HOLD_RETRY, why, "unread"), None
        pauses = [Pause.from_wire(p) for p in book.pauses]
        alarm, entity = self._where(request)
        return hold_for(workflow.now(), pauses, effective.quiet, alarm, entity), book.version

    async def _hold(
        self,
        request: WorkflowRequest,
        effective: Policy,
        record: RunRecord,
        hold: Hold,
        version: int | None,
    ) -> bool:
        """Wait while held; True when released with the alarm still raised."""
        info = workflow.info()
        holds = record.setdefault("holds", [])
        entry = _hold_entry(format_time(workflow.now()), hold)
        holds.append(entry)
        self._held = entry
        if self._mem.planned is not None:
            # The plan stands in the state with why it waits: `paused until ...`.
            notes = (*self._mem.planned.notes, hold.status())
            self._mem.planned = replace(self._mem.planned, notes=notes)
        event_id = f"{preempted_event_id(info.workflow_id, request.event)}-held-{len(holds)}"
        held: HeldEventData = {**self._about(request), **hold.to_wire(), **self._planned_wire()}
        await self._send(request, event_id, held, event_type=HELD_EVENT_TYPE)
        workflow.logger.warning("run held: %s", hold.status())
        current: Hold | None = hold
        while current is not None:
            if version is not None and "pause" in current.source:
                await self._watch_pauses(version)
            wait = HOLD_RECHECK if version is not None else HOLD_RETRY
            if current.until is not None:
                wait = min(wait, current.until - workflow.now())
            if wait > timedelta(0):
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._lowered or self._pauses_changed, timeout=wait
                    )
            if self._lowered:
                break
            self._pauses_changed = False
            current, version = await self._read_hold(request, effective)
            if current is not None and current.to_wire() != hold.to_wire():
                hold = current
                entry.update(_hold_entry(entry["heldAt"], hold))  # the state says what holds it now
        self._held = None
        entry["releasedAt"] = format_time(workflow.now())
        entry["released"] = "alarm lowered" if self._lowered else "pause ended"
        if self._mem.planned is not None:
            notes = tuple(n for n in self._mem.planned.notes if not n.startswith("paused until"))
            self._mem.planned = replace(self._mem.planned, notes=notes)
        data: ReleasedEventData = {
            **self._about(request),
            "heldAt": entry["heldAt"],
            "releasedAt": entry["releasedAt"],
            "proceeds": not self._lowered,
            "reason": HELD_LOWERED if self._lowered else "the pause ended: the run goes on",
        }
        await self._send(
            request, event_id.replace("-held-", "-released-"), data, event_type=RELEASED_EVENT_TYPE
        )
        if self._lowered:
            workflow.logger.info("%s", HELD_LOWERED)
            self._finish(record, "cancelled", error=HELD_LOWERED)
            return False
        workflow.logger.info("run released: the pause ended")
        return True

    async def _watch_pauses(self, version: int) -> None:
        """Ask the registry to signal this workflow at its next change (an unpause releases
        the run at once); without an answer, the hold's timers still end it."""
        registry = pauses_workflow_id(workflow.info().task_queue)
        try:
            await workflow.get_external_workflow_handle(registry).signal(
                WATCH_SIGNAL, {"workflowID": workflow.info().workflow_id, "version": version}
            )
        except Exception as exc:  # noqa: BLE001 (no registry: only quiet windows or a timer)
            workflow.logger.info("could not ask the pause registry to tell of changes: %s", exc)

    def _paused(self) -> ResponseExtras:
        return {} if self._held is None else {"paused": self._held}

    # -- resume on clear ----------------------------------------------------------------

    async def _resume_all(self) -> bool:
        """Power on what this workflow stopped, batch by batch; True if a raise stopped it."""
        policy = self._mem.resume
        if policy is None or not policy.enabled or not self._mem.stopped:
            return False
        self._mem.run_number += 1
        record: RunRecord = {
            "run": self._mem.run_number,
            "kind": "resume",
            "startedAt": format_time(workflow.now()),
            "resumed": [],
            "skipped": [],
            "failed": [],
        }
        last = self._mem.last
        reply_to = last.request.reply_to if last is not None else ""
        if self._mem.room is None:
            outcome = await self._resume_in_batches(policy, record, reply_to)
        else:
            outcome = await self._resume_in_room(policy, self._mem.room, record, reply_to)
        if outcome == INTERRUPTED:
            workflow.logger.info("a raising alarm stopped the resume")
        self._finish(record, outcome)
        return outcome == INTERRUPTED

    async def _resume_in_batches(
        self, policy: ResumePolicy, record: RunRecord, reply_to: str
    ) -> str:
        """Every VM in order, `batchSize` at a time, `interval` apart: a resume without a
        target to measure room by (or recorded before resume-headroom)."""
        order = resume_order(list(self._mem.stopped.values()))
        batches = [
            order[i : i + policy.batch_size] for i in range(0, len(order), policy.batch_size)
        ]
        for number, batch in enumerate(batches, 1):
            if self._pending:
                return INTERRUPTED
            await self._resume_batch(batch, number, record, reply_to)
            if number < len(batches) and await self._raised_within(policy.interval_seconds):
                return INTERRUPTED
        return RESUMED

    async def _raised_within(self, seconds: float) -> bool:
        """Wait `seconds`; True as soon as a raising alarm's request arrives."""
        try:
            await workflow.wait_condition(
                lambda: bool(self._pending), timeout=timedelta(seconds=seconds)
            )
        except TimeoutError:
            return False
        return True

    async def _resume_in_room(
        self, policy: ResumePolicy, room: Room, record: RunRecord, reply_to: str
    ) -> str:
        """Each batch only the VMs the entity has room for, its use read again before each;
        the rest checked again every `interval`, up to `maxWait`, then left off, with why."""
        record["room"] = {
            "entity": room.entity.value,
            "targets": {
                k: v
                for k, v in (("cpu", room.targets.cpu), ("memory", room.targets.memory))
                if v is not None
            },
            "basis": room.targets.basis.value,
            "headroom": policy.headroom_percent,
            "maxWait": format_seconds(policy.max_wait_seconds),
            "checks": 0,
        }
        deadline = workflow.now() + timedelta(seconds=policy.max_wait_seconds)
        waiting = resume_order(list(self._mem.stopped.values()))
        number = 0
        while waiting:
            if self._pending:
                return INTERRUPTED
            usage = await self._use_on(room.entity, room.targets.basis, "for the resume")
            record["room"]["checks"] += 1
            found = fit(
                waiting,
                lambda s: s.share,
                usage,
                room.targets,
                policy.headroom_percent,
                policy.batch_size,
            )
            if found.now:
                number += 1
                await self._resume_batch(found.now, number, record, reply_to)
                waiting = [s for s in waiting if s not in found.now]
            elif workflow.now() >= deadline:
                await self._leave_off(policy, found.waiting, number + 1, record, reply_to)
                return RESUMED_IN_PART
            else:
                vm, reason = found.waiting[0]
                workflow.logger.info(
                    "%d VM(s) wait for room, %s first: %s", len(waiting), vm.name, reason
                )
            if waiting and await self._raised_within(policy.interval_seconds):
                return INTERRUPTED
        return RESUMED

    async def _use_on(self, entity: MoRef, basis: UseBasis, when: str) -> EntityUsage | None:
        """The entity's use on `basis` (ReadEntityUse); None, and a warning, if unread."""
        try:
            return await workflow.execute_activity_method(
                PreemptionActivities.read_entity_use,
                UseInput(entity=entity, basis=basis.value),
                **_options(),
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.warning("reading %s's use %s failed: %s", entity, when, _cause(err))
            return None

    async def _leave_off(
        self,
        policy: ResumePolicy,
        left: list[tuple[Stopped, str]],
        number: int,
        record: RunRecord,
        reply_to: str,
    ) -> None:
        """maxWait has passed with no room for these VMs: they stay off, and the record and a
        last VmResumedEvent say which and why. They stay in the memory: a later raise and
        lowering of the alarm may bring them back."""
        stay_off: list[StayOffEntry] = [
            {"vm": s.mark.ref.value, "name": s.name, "reason": why} for s, why in left
        ]
        record["stayOff"] = stay_off
        record["reason"] = (
            f"{len(left)} VM(s) stay off: no room for them within maxWait "
            f"{format_seconds(policy.max_wait_seconds)}"
        )
        workflow.logger.warning("the resume gives up: %s", record["reason"])
        last: ResumedEventData = {
            "workflowID": workflow.info().workflow_id,
            "batch": number,
            "virtualMachines": [],
            "skipped": [],
            "stayOff": [
                {"vm": moref_to_wire(s.mark.ref), "name": s.name, "reason": why} for s, why in left
            ],
            "reason": record["reason"],
        }
        await self._send(
            None,
            f"{workflow.info().workflow_id}-resume-{record['run']}-{number}",
            last,
            event_type=RESUMED_EVENT_TYPE,
            reply_to=reply_to,
        )

    async def _resume_batch(
        self, batch: list[Stopped], number: int, record: RunRecord, reply_to: str
    ) -> None:
        now = format_time(workflow.now())
        by_annotation: dict[str, list[Stopped]] = {}
        for stopped in batch:
            by_annotation.setdefault(stopped.annotation, []).append(stopped)
        resumed: list[VmRef] = []
        skipped: list[VmIssueWire] = []
        for text, group in by_annotation.items():
            try:
                result: ResumeOutcome = await workflow.execute_activity_method(
                    PreemptionActivities.resume_vms,
                    ResumeInput(
                        marks=[s.mark for s in group],
                        workflow_id=workflow.info().workflow_id,
                        annotation_json=append_fields(text, {"resumed": True, "resumedAt": now}),
                        max_concurrency=self._mem.max_concurrency,
                    ),
                    **_options(),
                )
            except FailureError as err:
                _reraise_cancel(err)
                workflow.logger.error("resuming VMs failed: %s", _cause(err))
                record["failed"] += [{"vm": s.mark.ref.value, "reason": _cause(err)} for s in group]
                continue
            for vm in result.resumed:
                self._mem.stopped.pop(vm.value, None)
            for issue in result.skipped:
                self._mem.stopped.pop(issue.vm.value, None)  # changed by someone: not ours
                workflow.logger.info("not resuming %s: %s", issue.vm, issue.reason)
            resumed += result.resumed
            skipped += [{"vm": i.vm.value, "reason": i.reason} for i in result.skipped]
            record["failed"] += [{"vm": i.vm.value, "reason": i.reason} for i in result.failed]
        record["resumed"] += [vm.value for vm in resumed]
        record["skipped"] += skipped
        # Cleared after the power-on, never before: writing the guestinfo reconfigures the VM,
        # and a resume skips a VM whose configuration changed since it was stopped.
        noticed = {s.mark.ref for s in batch if s.guest_notice}
        if noticed & set(resumed):
            await self._guest_notice([vm for vm in resumed if vm in noticed], "")
        batch_data: ResumedEventData = {
            "workflowID": workflow.info().workflow_id,
            "batch": number,
            "virtualMachines": [moref_to_wire(vm) for vm in resumed],
            "skipped": skipped,
        }
        await self._send(
            None,
            f"{workflow.info().workflow_id}-resume-{record['run']}-{number}",
            batch_data,
            event_type=RESUMED_EVENT_TYPE,
            reply_to=reply_to,
        )

    # -- a life as long as the alarm ----------------------------------------------------

    async def _wait_for_request(self) -> bool:
        """Wait for the next request (or, storm-proof, a history long enough to continue as
        new); False once the workflow's maxLifetime has passed.

        Without a maxLifetime the workflow waits as it always did: it lives while its alarm
        is raised and ends when the alarm lowers (the function cancels it), after resuming
        what it stopped. It cannot tell an alarm raised for days from a lowering that never
        reached it, so it does not guess: `maxLifetime` is the administrator's bound, and it
        is announced. A run in progress and requests already waiting are handled first.
        """
        if self._life is None:
            # Asked at the first wait, before any run's local activity (see _preempt).
            self._life = self._patched(LIFETIME_PATCH)
            if self._life and self._mem.life.born is None:
                self._mem.life.born = workflow.info().start_time
        life = self._mem.life
        # A storm-proof workflow also wakes when its history is long, to continue as new
        # while idle (_due is False for workflows before that patch: they wait as before).
        while not self._pending and not self._due():
            if not self._life or life.max_seconds is None or life.born is None:
                await workflow.wait_condition(lambda: bool(self._pending) or self._due())
                break
            left = life.born + timedelta(seconds=life.max_seconds) - workflow.now()
            if left <= timedelta(0):
                await self._expire()
                return False
            try:
                # A durable timer only when a bound is set: without one, no timer is written.
                await workflow.wait_condition(
                    lambda: bool(self._pending) or self._due(), timeout=left
                )
            except TimeoutError:
                continue
        return True

    def _note_lifetime(self, request: WorkflowRequest, policy: PreemptionPolicy) -> None:
        """The administrator's maxLifetime as this run read it (a request's is never taken:
        the bound spans every request), and where to announce the end."""
        if not self._life:
            return
        self._mem.life.reply_to = request.reply_to or self._mem.life.reply_to
        try:
            admin = Policy.from_wire(policy.selection or {})
        except ValueError:
            return  # the run says why; the last good bound stands
        self._mem.life.max_seconds = admin.max_lifetime_seconds

    async def _expire(self) -> None:
        """End for good: say what stays off, in the state, the run record and an event."""
        life = self._mem.life
        assert life.born is not None and life.max_seconds is not None
        left_off = [s.mark.ref for s in resume_order(list(self._mem.stopped.values()))]
        limit = format_seconds(life.max_seconds)
        reason = (
            f"maxLifetime {limit} reached: {len(left_off)} VM(s) this workflow stopped stay off"
            " and will not be resumed by it"
        )
        workflow.logger.warning("%s", reason)
        self._mem.run_number += 1
        now = format_time(workflow.now())
        record: RunRecord = {
            "run": self._mem.run_number,
            "kind": "expire",
            "startedAt": now,
            "notResumed": [r.value for r in left_off],
        }
        self._ended = {
            "reason": "maxLifetime",
            "at": now,
            "startedAt": format_time(life.born),
            "maxLifetime": limit,
            "notResumed": [moref_to_wire(r) for r in left_off],
        }
        info = workflow.info()
        expired: ExpiredEventData = {
            "workflowID": info.workflow_id,
            "startedAt": self._ended["startedAt"],
            "maxLifetime": limit,
            "expiredAt": now,
            "virtualMachines": self._ended["notResumed"],
            "reason": reason,
        }
        await self._send(
            None,
            # One per workflow, whichever of its runs expires: a sink can drop a redelivery.
            f"{info.workflow_id}-expired-{info.first_execution_run_id}",
            expired,
            event_type=EXPIRED_EVENT_TYPE,
            reply_to=life.reply_to,
        )
        self._finish(record, "expired", error=reason)

    def _ended_extras(self) -> ResponseExtras:
        return {} if self._ended is None else {"ended": self._ended}

    # -- memory -------------------------------------------------------------------------

    def _latest_run(self) -> ResponseExtras:
        # Go's fields describe the last run that acted; a run that failed (vCenter gone) or
        # was skipped after it would not show in the state at all. Queries and the result
        # are not replayed: no patch is needed for what they say.
        if not self._mem.runs:
            return {}
        newest: Mapping[str, object] = self._mem.runs[-1]
        latest = {k: newest[k] for k in LATEST_RUN_FIELDS if k in newest}
        return {"lastRun": cast(LatestRunWire, latest)}  # these fields of a RunRecord

    def _about(self, request: WorkflowRequest) -> EventAbout:
        return {
            "workflowID": workflow.info().workflow_id,
            "tag": request.tag,
            "criticality": request.criticality.value,
            "event": request.event,
        }

    def _start_record(self, request: WorkflowRequest) -> RunRecord:
        return {
            "run": self._mem.run_number,
            "kind": "preempt",
            "startedAt": format_time(workflow.now()),
            "criticality": request.criticality.value,
            "eventID": request.event.get("id", ""),
            "tag": request.tag,
            "dryRun": request.dry_run,
        }

    def _finish(self, record: RunRecord, outcome: str, error: str = "") -> None:
        if "outcome" in record:
            return  # the first word on a run stands (a later step adds its details only)
        record["outcome"] = outcome
        if error:
            record["reason"] = error
        record["endedAt"] = format_time(workflow.now())
        self._mem.remember(record, self._mem.history_keep)
        record_run(workflow.metric_meter(), record, record["endedAt"])  # nothing on replay

    def _patched(self, patch_id: str) -> bool:
        """`workflow.patched(patch_id)`, but a patch that folded-patches folds is on without
        a marker of its own in a workflow that has that one (asked at the first patch this
        workflow asks, so in the same place of its first task as the patches it replaces)."""
        if patch_id in FOLDED:
            if self._folded is None:
                self._folded = workflow.patched(FOLDED_PATCH)
            if self._folded:
                return True
        return workflow.patched(patch_id)

    def _storm_proof(self) -> bool:
        """Whether this workflow is storm-proof. Asked where the other patches are (before a
        run's local activity; at the start of a continued run), never from a wait condition,
        and kept for the workflow's life, as they are, so that its replays agree."""
        if self._storm is None:
            self._storm = self._patched(STORM_PATCH)
        return self._storm

    def _due(self) -> bool:
        """Continue as new now (between runs): a storm-proof workflow that acts with care and
        whose history is long. Not before its first run has asked (`_storm` still None)."""
        return self._care and bool(self._storm) and self._history_is_long()

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > (
            STORM_MAX_HISTORY_EVENTS if self._storm else MAX_HISTORY_EVENTS
        )

    def _continue_as_new(self, why: str) -> NoReturn:
        workflow.logger.info("continuing as new: %s", why)
        self._mem.pending = list(self._pending)
        workflow.continue_as_new(self._mem.to_json())


def coalesce(waiting: WorkflowRequest, arriving: WorkflowRequest) -> WorkflowRequest | None:
    """One request for both, or None when they ask for different things.

    Same tag, entity, reply address, dry-run flag and overrides: the same run, at the most
    severe of the two criticalities, for the latest event.
    """
    same = (
        waiting.tag == arriving.tag
        and waiting.entity == arriving.entity
        and waiting.alarmed_entity() == arriving.alarmed_entity()
        and waiting.reply_to == arriving.reply_to
        and waiting.dry_run == arriving.dry_run
        and waiting.policy == arriving.policy
    )
    if not same:
        return None
    severity = list(Criticality)
    worst = max(waiting.criticality, arriving.criticality, key=severity.index)
    # The same request either way; the arriving one itself keeps the entity it has read.
    return arriving if worst is arriving.criticality else replace(arriving, criticality=worst)


def json_payload(data: bytes) -> RawValue:
    """A `json/plain` payload holding exactly `data`, as the Go SDK's JSON converter makes."""
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


def _decode_request(payload: Payload, strict: bool) -> WorkflowRequest:
    # Read the JSON text ourselves: the converter would decode the event's data into
    # Python values, and `1.50` or `caf\u00e9` would not reach the annotation as sent.
    if payload.metadata.get("encoding") == b"json/plain":
        return WorkflowRequest.from_json(payload.data, strict=strict)
    decoded = workflow.payload_converter().from_payload(payload)
    return WorkflowRequest.from_wire(decoded, strict=strict)


def _options(start_to_close: timedelta = ACTIVITY_TIMEOUT) -> dict[str, Any]:
    return {
        "start_to_close_timeout": start_to_close,
        "heartbeat_timeout": HEARTBEAT_TIMEOUT,
        "retry_policy": RETRY_POLICY,
    }


def _log_plan(chosen: Plan, number: int = 1) -> None:
    """Each left-out VM and victim in the worker's log (a later round: its victims)."""
    if number == 1:
        for left in chosen.left_out:
            why = f"{left.reason.value} ({left.detail})"
            workflow.logger.info("left out %s: %s", left.ref, why, extra=_vm(left.ref))
    label = "victim" if number == 1 else f"round {number} victim"
    for position, victim in enumerate(chosen.victims, 1):
        workflow.logger.info(
            "%s %d: %s (%s)", label, position, victim.ref, victim.reason, extra=_vm(victim.ref)
        )


def _hold_entry(held_at: str, hold: Hold) -> HoldEntry:
    """A hold as a record's `holds` and the state's `paused` show it: since when, then the hold.
    Field by field: a TypedDict is open, so mypy cannot tell that `{**hold.to_wire()}` brings
    no `released` along."""
    wire = hold.to_wire()
    return {
        "heldAt": held_at,
        "until": wire["until"],
        "reason": wire["reason"],
        "source": wire["source"],
        "status": wire["status"],
    }


def _vm(ref: VmRef) -> dict[str, str]:
    """A log line's `vm` field (logs.py makes `extra` fields JSON fields)."""
    return {"vm": ref.value}


def _reraise_cancel(err: FailureError) -> None:
    if is_cancelled_exception(err):
        raise asyncio.CancelledError from err


def _cause(err: FailureError) -> str:
    # An ActivityError only says "Activity task failed"; its cause says why. (A local
    # activity's failure arrives as the ApplicationError itself: both are FailureErrors.)
    return str(err.cause or err)
