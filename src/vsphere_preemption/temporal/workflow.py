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
  annotated and reported), then the workflow completes with its state.

Changing what this workflow does: the sequence of activities and timers is part of
every open workflow's history. Guard a change with `workflow.patched("<id>")` and
keep the old branch until no history recorded without it is open; the replay test
(tests/temporal/test_replay.py) over tests/fixtures/histories/ catches a change that
breaks an existing history.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    # Pure modules (standard library only): no need to re-import them per run.
    from vsphere_preemption.domain.achieved import planned_vs_achieved
    from vsphere_preemption.domain.model import (
        AnnotateOutcome,
        EntityUsage,
        MoRef,
        PowerOffOutcome,
        Selection,
        VmRef,
    )
    from vsphere_preemption.domain.plan import Plan
    from vsphere_preemption.domain.policy import Policy, Scope
    from vsphere_preemption.temporal.contracts import (
        ANNOTATE_VMS,
        GET_POLICY,
        GET_PREEMPTIBLE_VMS,
        PLAN_PREEMPTION,
        POWER_OFF_VMS,
        READ_ENTITY_USAGE,
        SEND_PREEMPTED_EVENT,
        AnnotateInput,
        FindVmsInput,
        PlanInput,
        PlanOutput,
        PowerOffInput,
        PreemptionPolicy,
        SendEventInput,
    )
    from vsphere_preemption.wire import (
        PLANNED_EVENT_TYPE,
        QUERY_NAME,
        SIGNAL_NAME,
        WORKFLOW_TYPE,
        Annotation,
        WorkflowRequest,
        WorkflowResponse,
        go_json,
        preempted_event_data,
        preempted_event_id,
        vm_ref_to_wire,
    )

# The Go worker's activity options (docs/wire.md).
ACTIVITY_TIMEOUT = timedelta(minutes=5)
HEARTBEAT_TIMEOUT = timedelta(seconds=5)
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)
POLICY_TIMEOUT = timedelta(seconds=10)

# workflow.patched IDs. Histories recorded before a patch replay the old branch.
# select-by-plan: victims chosen by domain.plan (scope, priority, target, budgets) through
# PlanPreemption, instead of the first N tagged VMs by name through GetPreemptibleVMs.
PLAN_PATCH = "select-by-plan"


@dataclass(frozen=True)
class _Run:
    """A run that acted: what the query answers and where the cooldown counts from."""

    request: WorkflowRequest
    vms: tuple[VmRef, ...]
    at: datetime


@dataclass(frozen=True)
class _Planned:
    """The latest run that planned (dry runs and runs with nothing to do included)."""

    entity: MoRef | None
    scope: Scope
    dry_run: bool
    plan: dict[str, Any] | None  # Plan.to_wire(); None when planning failed
    notes: tuple[str, ...] = ()
    error: str = ""  # why planning failed: said in the state, not only in a log
    achieved: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        # Our extras of the query answer and the event (wire.RESPONSE_EXTRAS).
        extras: dict[str, Any] = {
            "entity": None if self.entity is None else vm_ref_to_wire(self.entity),
            "scope": self.scope.value,
            "dryRun": self.dry_run,
            "plan": None if self.plan is None else {**self.plan, "notes": self._notes()},
        }
        if self.error:
            extras["plan"] = {"error": self.error, "notes": list(self.notes)}
        if self.achieved is not None:
            extras["achieved"] = self.achieved
        return extras

    def _notes(self) -> list[str]:
        return [*(self.plan or {}).get("notes", []), *self.notes]


@workflow.defn(name=WORKFLOW_TYPE)
class PreemptVMsWorkflow:
    def __init__(self) -> None:
        self._pending: deque[WorkflowRequest] = deque()
        self._last: _Run | None = None
        self._planned: _Planned | None = None

    @workflow.run
    async def run(self) -> RawValue:
        # Go returns *WorkflowResponse: the JSON object in the Go struct's field order. A
        # dict would reach the history with its keys sorted by Temporal's JSON converter,
        # so the result is the encoded payload itself.
        try:
            while True:
                await workflow.wait_condition(lambda: bool(self._pending))
                request = self._pending.popleft()
                run = asyncio.ensure_future(self._preempt(request))
                try:
                    await asyncio.shield(run)
                except asyncio.CancelledError:
                    workflow.logger.info("cancel requested mid-run: finishing the run first")
                    await run
                    raise
        except asyncio.CancelledError:
            workflow.logger.info("workflow cancelled: completing with the last run's state")
        return json_payload(go_json(self._response().to_wire()))

    # Dynamic, so that a signal with any number of payloads reaches us as raw
    # values: a named handler whose arity does not match would fail the workflow
    # task on every replay, and the workflow would be stuck for good.
    @workflow.signal(dynamic=True)
    def _on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        if name != SIGNAL_NAME:
            workflow.logger.warning("dropping unknown signal %r", name)
            return
        if len(args) != 1:
            workflow.logger.warning(
                "dropping %s: expected one payload, got %d", SIGNAL_NAME, len(args)
            )
            return
        try:
            request = _decode_request(args[0].payload)
        except Exception as exc:  # noqa: BLE001 (any bad payload is dropped, never fatal)
            workflow.logger.warning("dropping undecodable %s: %s", SIGNAL_NAME, exc)
            return
        workflow.logger.info(
            "received preemption request: tag=%s criticality=%s eventID=%s",
            request.tag,
            request.criticality.value,
            request.event.get("id", ""),
        )
        self._pending.append(request)

    @workflow.query(name=QUERY_NAME)
    def current_state(self) -> str:
        return self._response().to_json()

    def _response(self) -> WorkflowResponse:
        info = workflow.info()
        last = self._last
        extra = {} if self._planned is None else self._planned.to_wire()
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

    async def _preempt(self, request: WorkflowRequest) -> None:
        # Asked before the local activity: a patch marker recorded after a local activity's
        # marker is not seen in time on replay (the replay would take the old branch).
        # The answer is memoized for the workflow's life: a workflow that began before the
        # patch keeps choosing by name until it ends, so its replays agree.
        by_plan = workflow.patched(PLAN_PATCH)
        try:
            policy = await workflow.execute_local_activity(
                GET_POLICY,
                result_type=PreemptionPolicy,
                start_to_close_timeout=POLICY_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("reading the worker's policy failed: %s", _cause(err))
            return
        if self._last is not None and workflow.now() - self._last.at < policy.cooldown:
            workflow.logger.info(
                "skipping run: the last preemption (%s) is within the cooldown of %ss",
                self._last.at.isoformat(),
                policy.cooldown_seconds,
            )
            return

        if by_plan:
            await self._preempt_by_plan(request, policy)
        else:
            await self._preempt_by_name(request, policy)

    async def _preempt_by_name(self, request: WorkflowRequest, policy: PreemptionPolicy) -> None:
        """Before select-by-plan: the first `max_vms` tagged VMs in vCenter, by name."""
        try:
            selection = await workflow.execute_activity(
                GET_PREEMPTIBLE_VMS,
                FindVmsInput(tag=request.tag, max_vms=policy.max_vms),
                result_type=Selection,
                **_options(),
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("finding preemptible VMs failed: %s", _cause(err))
            return
        for issue in selection.left_out:
            workflow.logger.info("left out %s: %s", issue.vm, issue.reason)
        if not selection.selected:
            workflow.logger.info("no powered-on VM carries the tag %r", request.tag)
            return

        outcome = await self._power_off(request, selection.selected, policy)
        if outcome is None:
            return
        annotation = self._record_run(request, outcome)
        await self._annotate(outcome, annotation)
        await self._send(
            request,
            preempted_event_id(workflow.info().workflow_id, request.event),
            preempted_event_data(annotation, outcome.powered_off),
        )

    async def _preempt_by_plan(self, request: WorkflowRequest, policy: PreemptionPolicy) -> None:
        """Victims by place, priority and need: all choice is domain.plan's, in PlanPreemption."""
        try:
            effective = Policy.from_wire(policy.selection or {})
            if request.policy is not None:
                effective = effective.with_overrides(request.policy)
        except ValueError as exc:
            workflow.logger.error("dropping the run: its policy is refused: %s", exc)
            self._planned = _Planned(None, Scope.ENTITY, request.dry_run, None, error=str(exc))
            return
        entity = request.alarmed_entity() if effective.scope is Scope.ENTITY else None
        scope = Scope.ENTITY if entity is not None else Scope.VCENTER
        notes: list[str] = []
        if effective.scope is Scope.ENTITY and entity is None:
            notes.append("the request names no alarmed entity: acting on the whole vCenter")
            workflow.logger.warning("%s", notes[-1])
        dry_run = request.dry_run or effective.dry_run
        try:
            planned = await workflow.execute_activity(
                PLAN_PREEMPTION,
                PlanInput(
                    tag=request.tag,
                    entity=entity,
                    policy=effective.to_wire(),
                    criticality=request.criticality,
                ),
                result_type=PlanOutput,
                **_options(),
            )
        except FailureError as err:
            _reraise_cancel(err)
            why = _cause(err)
            workflow.logger.error("planning the preemption failed: %s", why)
            self._planned = _Planned(entity, scope, dry_run, None, tuple(notes), error=why)
            return
        chosen = Plan.from_wire(planned.plan)
        notes += planned.notes
        self._planned = _Planned(entity, scope, dry_run, planned.plan, tuple(notes))
        for left in chosen.left_out:
            workflow.logger.info("left out %s: %s (%s)", left.ref, left.reason.value, left.detail)
        for position, victim in enumerate(chosen.victims, 1):
            workflow.logger.info("victim %d: %s (%s)", position, victim.ref, victim.reason)
        if dry_run:
            workflow.logger.info(
                "dry run: %d victim(s) planned, none acted on", len(chosen.victims)
            )
            await self._send(
                request,
                preempted_event_id(workflow.info().workflow_id, request.event) + "-plan",
                {
                    "workflowID": workflow.info().workflow_id,
                    "tag": request.tag,
                    "criticality": request.criticality.value,
                    "event": request.event,
                    **self._planned.to_wire(),
                },
                event_type=PLANNED_EVENT_TYPE,
            )
            return
        if not chosen.victims:
            workflow.logger.info("the plan has no victim: nothing to preempt")
            return

        outcome = await self._power_off(request, chosen.refs, policy)
        if outcome is None:
            return
        annotation = self._record_run(request, outcome)
        await self._annotate(outcome, annotation)
        if entity is not None and chosen.target is not None:
            after = await self._entity_usage(entity)
            self._planned = replace(
                self._planned, achieved=planned_vs_achieved(chosen.target, after)
            )
        await self._send(
            request,
            preempted_event_id(workflow.info().workflow_id, request.event),
            {**preempted_event_data(annotation, outcome.powered_off), **self._planned.to_wire()},
        )

    async def _power_off(
        self, request: WorkflowRequest, vms: list[VmRef], policy: PreemptionPolicy
    ) -> PowerOffOutcome | None:
        """Power the VMs off (confirmed by vCenter); None when none went off."""
        force = request.criticality.forces_power_off
        # A soft shutdown may wait its whole grace before it forces.
        timeout = ACTIVITY_TIMEOUT if force else ACTIVITY_TIMEOUT + policy.soft_shutdown_grace
        try:
            outcome: PowerOffOutcome = await workflow.execute_activity(
                POWER_OFF_VMS,
                PowerOffInput(
                    vms=vms,
                    force=force,
                    soft_shutdown_grace_seconds=policy.soft_shutdown_grace_seconds,
                    max_concurrency=policy.max_concurrency,
                ),
                result_type=PowerOffOutcome,
                **_options(timeout),
            )
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("powering VMs off failed: %s", _cause(err))
            return None
        for issue in outcome.failed:
            workflow.logger.error("could not power off %s: %s", issue.vm, issue.reason)
        if not outcome.powered_off:
            workflow.logger.warning("no VM was powered off")
            return None
        return outcome

    def _record_run(self, request: WorkflowRequest, outcome: PowerOffOutcome) -> Annotation:
        """Remember a run that acted (query, cooldown); the annotation it writes."""
        self._last = _Run(request=request, vms=tuple(outcome.powered_off), at=workflow.now())
        return Annotation(
            tag=request.tag,
            forced_shutdown=request.criticality.forces_power_off,
            criticality=request.criticality,
            workflow_id=workflow.info().workflow_id,
            workflow_started=workflow.info().workflow_start_time,
            event=request.event,
        )

    async def _entity_usage(self, entity: MoRef) -> EntityUsage | None:
        try:
            usage: EntityUsage | None = await workflow.execute_activity(
                READ_ENTITY_USAGE, entity, result_type=EntityUsage, **_options()
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
        request: WorkflowRequest,
        event_id: str,
        data: dict[str, Any],
        *,
        event_type: str | None = None,
    ) -> None:
        """Announce the run to `replyTo`, if the request has one."""
        if not request.reply_to:
            return
        what = SendEventInput(
            reply_to=request.reply_to, event_id=event_id, data_json=go_json(data).decode()
        )
        if event_type is not None:
            what = replace(what, event_type=event_type)
        try:
            await workflow.execute_activity(SEND_PREEMPTED_EVENT, what, **_options())
        except FailureError as err:
            _reraise_cancel(err)
            workflow.logger.error("sending the %s failed: %s", what.event_type, _cause(err))

    async def _annotate(self, outcome: PowerOffOutcome, annotation: Annotation) -> None:
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
        for vms, value in groups:
            if not vms:
                continue
            try:
                result = await workflow.execute_activity(
                    ANNOTATE_VMS,
                    AnnotateInput(vms=vms, annotation_json=value.to_json()),
                    result_type=AnnotateOutcome,
                    **_options(),
                )
            except FailureError as err:
                # The VMs are off whatever happens to their note: log, go on.
                _reraise_cancel(err)
                workflow.logger.warning("annotating VMs failed: %s", _cause(err))
                continue
            for issue in result.failed:
                workflow.logger.warning("could not annotate %s: %s", issue.vm, issue.reason)


def json_payload(data: bytes) -> RawValue:
    """A `json/plain` payload holding exactly `data`, as the Go SDK's JSON converter makes."""
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


def _decode_request(payload: Payload) -> WorkflowRequest:
    # Read the JSON text ourselves: the converter would decode the event's data into
    # Python values, and `1.50` or `caf\u00e9` would not reach the annotation as sent.
    if payload.metadata.get("encoding") == b"json/plain":
        return WorkflowRequest.from_json(payload.data)
    return WorkflowRequest.from_wire(workflow.payload_converter().from_payload(payload))


def _options(start_to_close: timedelta = ACTIVITY_TIMEOUT) -> dict[str, Any]:
    return {
        "start_to_close_timeout": start_to_close,
        "heartbeat_timeout": HEARTBEAT_TIMEOUT,
        "retry_policy": RETRY_POLICY,
    }


def _reraise_cancel(err: FailureError) -> None:
    if is_cancelled_exception(err):
        raise asyncio.CancelledError from err


def _cause(err: FailureError) -> str:
    # An ActivityError only says "Activity task failed"; its cause says why. (A local
    # activity's failure arrives as the ApplicationError itself: both are FailureErrors.)
    return str(err.cause or err)
