"""One event through the function: CloudEvent -> AlarmChange -> Decision -> Temporal -> reply.

HTTP-free (headers and body in, status and JSON body out), so every branch is testable without
a server. The statuses, as docs/wire.md's decision rules give them:

- 200: ignored (an event of another type, another alarm's, or, with VCENTER_TASKQUEUES, one
  from a vCenter it does not name), preemption signalled, or
  lowering handled — including a failed cancel, which is only logged so the broker does not
  retry it — or a duplicate: the same event (source and id) acted on lately (recent.py);
- 400: not a CloudEvent, or an AlarmStatusChangedEvent whose data does not decode or, for the
  configured alarm, carries no status change, or whose signal the workflow would drop
  (WorkflowRequest.check: over 1 MiB, say);
- 503 (Temporal unreachable or timing out) / 502 (Temporal refused the call): the broker retries.

Raising events are signalled one at a time per workflow and entity (signal_lines.py): an event
that arrives while a signal is in flight rides the next one, merged with the others that
waited, and is answered with that signal's outcome (2xx once Temporal took it, else 503/502).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from vsphere_preemption.domain.alarm_rules import Action, Decision, RuleError, decide
from vsphere_preemption.domain.events import (
    AlarmChange,
    EventData,
    NotAnAlarmEvent,
    UndecodableData,
    decode,
    event_shape,
)
from vsphere_preemption.domain.vcenters import vcenter_host
from vsphere_preemption.domain.workflow_ids import workflow_id
from vsphere_preemption.function.cloudevent_http import (
    IncomingEvent,
    NotACloudEvent,
    parse,
    structured_json,
)
from vsphere_preemption.function.metrics import Metrics
from vsphere_preemption.function.recent import RecentEvents, event_key
from vsphere_preemption.function.signal_lines import SPACING, Delivered, SignalLines
from vsphere_preemption.rawjson import RawJSON
from vsphere_preemption.settings import FunctionSettings
from vsphere_preemption.temporal.client import (
    Cancellation,
    StartedRun,
    TemporalError,
    TemporalUnavailable,
    execution_timeout_for,
)
from vsphere_preemption.tracing import event_span
from vsphere_preemption.wire import WireError, WorkflowRequest

# The Go function's words, kept as the start of our reasons so operators find them.
INVALID_PAYLOAD = "event payload must be valid AlarmStatusChangedEvent"
PREEMPTION_FAILED = "failed to run preemption"
DUPLICATE = "duplicate"  # the decision (and metric label) of a redelivered event
UNKNOWN_SOURCE = "unknown_source"  # the metric label of an event from a vCenter not served
RETRY_AFTER = {"Retry-After": "5"}


@dataclass(frozen=True)
class Route:
    """Where an event's workflow runs: the task queue of its vCenter's worker, and the vCenter's
    host for the workflow ID (None when the function serves one vCenter)."""

    task_queue: str
    vcenter: str | None = None


@dataclass(frozen=True)
class Decided:
    """An event of an alarm the function serves, with what to do about it: what the raise
    and the lowering are worked out from."""

    event: IncomingEvent
    data: EventData
    change: AlarmChange
    decision: Decision
    workflow_id: str
    route: Route

    @property
    def line(self) -> tuple[str, str]:
        """The signal line: the workflow and entity (the workflow ID names the entity unless
        WORKFLOW_ID_MODE=alarm, where one workflow serves every entity of the alarm)."""
        return self.workflow_id, str(self.change.entity) if self.change.entity else ""

    def log_context(self) -> dict[str, Any]:
        """The fields every log line of this event's action carries."""
        change = self.change
        return {
            "eventID": self.event.id,
            "decision": self.decision.action.value,
            "alarmName": change.alarm_name,
            "from": change.from_status,
            "to": change.to_status,
            "workflowID": self.workflow_id,
        }

    def summary(self) -> dict[str, Any]:
        return _summary(self.event, self.decision)


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class Signaller(Protocol):
    """The two calls the handler makes of Temporal (temporal/client.PreemptionClient's)."""

    async def signal_with_start(
        self,
        workflow_id: str,
        request: WorkflowRequest,
        *,
        execution_timeout: timedelta | None,
        task_queue: str,
    ) -> StartedRun: ...

    async def cancel(self, workflow_id: str) -> Cancellation: ...


class Link(Protocol):
    """Where the handler finds Temporal (function/temporal_link.TemporalLink): the connected
    client, or TemporalUnavailable saying why there is none yet."""

    async def require(self) -> Signaller: ...


class EventHandler:
    def __init__(
        self,
        settings: FunctionSettings,
        link: Link,
        metrics: Metrics,
        log: Any,
        *,
        tracing: bool = False,
        signal_spacing: float = SPACING,
    ) -> None:
        self._settings = settings
        self._tracing = tracing
        self._link = link
        self._metrics = metrics
        self._log = log
        self._recent = RecentEvents(settings.dedup_max_events, settings.dedup_window)
        # One signal in flight per workflow and entity; raises meanwhile ride the next one.
        self._signals = SignalLines(signal_spacing)

    async def handle(self, headers: Mapping[str, str], body: bytes) -> Reply:
        started = time.perf_counter()
        label = "rejected"
        span = event_span(headers.get("ce-id")) if self._tracing else contextlib.nullcontext()
        try:
            with span as current:
                reply, label = await self._handle(headers, body)
                if current is not None:
                    current.set_attribute("vsphere_preemption.decision", label)
                    current.set_attribute("http.response.status_code", reply.status)
        finally:
            self._metrics.latency.labels(label).observe(time.perf_counter() - started)
        return reply

    def reject(self, status: int, reason: str, message: str, event_id: str = "") -> Reply:
        self._metrics.rejected.labels(reason).inc()
        self._log.warning("event rejected", eventID=event_id, status=status, error=message)
        return Reply(status, {"error": message})

    async def _handle(self, headers: Mapping[str, str], body: bytes) -> tuple[Reply, str]:
        """The reply, and the decision it is counted under."""
        try:
            event = parse(headers, body)
        except NotACloudEvent as exc:
            return self.reject(400, "not_cloudevent", str(exc)), "rejected"
        data, undecodable = self._read_data(event)
        other = self._other_event(event)
        if other is not None:
            return other, Action.IGNORE.value
        route = self._route(event)
        if route is None:
            # An alarm event from a vCenter no worker here serves, whatever its data: answered
            # (a 4xx would dead-letter it for nothing) and logged, as a sign of a missing or
            # mistyped entry in VCENTER_TASKQUEUES.
            return self._unknown_source(event), Action.IGNORE.value
        try:
            change, decision, workflow_id = self._decide(event, data, undecodable, route)
        # ValueError: an entity reference that is no managed object id, so no workflow ID.
        except (UndecodableData, RuleError, ValueError) as exc:
            message = f"{INVALID_PAYLOAD}: {exc}"
            return self.reject(400, "invalid_payload", message, event.id), "rejected"
        if decision.action is Action.IGNORE:
            return self._other_alarm(event, decision), decision.action.value
        assert data is not None
        return await self._act(Decided(event, data, change, decision, workflow_id, route))

    def _read_data(self, event: IncomingEvent) -> tuple[EventData | None, UndecodableData | None]:
        """The event's data, or why it does not decode: that matters only once the event is
        known to be ours, so it is kept, not raised."""
        data: EventData | None = None
        undecodable: UndecodableData | None = None
        try:
            data = event.data()
        except UndecodableData as exc:
            undecodable = exc
        if self._settings.debug:
            self._log.debug("event received", eventID=event.id, cloudEvent=_loggable(event, data))
        return data, undecodable

    def _other_event(self, event: IncomingEvent) -> Reply | None:
        """The answer to an event that is no alarm status change (None for one that is)."""
        try:
            event_shape(event.attributes.get("type"), event.attributes.get("subject"))
        except NotAnAlarmEvent as exc:
            # A valid event that is not ours, whatever its data: a 4xx would send it to the
            # broker's dead-letter sink for nothing (the Go function answers 2xx as well).
            self._metrics.ignored.labels("other_event").inc()
            self._log.debug("event ignored", eventID=event.id, reason=str(exc))
            ignored = {"eventID": event.id, "decision": Action.IGNORE.value, "reason": str(exc)}
            return Reply(200, ignored)
        return None

    def _decide(
        self,
        event: IncomingEvent,
        data: EventData | None,
        undecodable: UndecodableData | None,
        route: Route,
    ) -> tuple[AlarmChange, Decision, str]:
        """The alarm change, what to do about it, and the workflow that does it; or why the
        event cannot say (UndecodableData, RuleError, ValueError)."""
        if undecodable is not None:
            raise undecodable
        change = decode(event.attributes, data)
        decision = decide(change, self._settings.alarm_names)
        return change, decision, self._workflow_id(change, route)

    def _other_alarm(self, event: IncomingEvent, decision: Decision) -> Reply:
        self._metrics.ignored.labels("other_alarm").inc()
        self._log.debug(
            "event ignored", eventID=event.id, decision=decision.action, reason=decision.reason
        )
        return Reply(200, _summary(event, decision))

    async def _act(self, decided: Decided) -> tuple[Reply, str]:
        """Preempt or cancel, once per event: the reply and the decision it is counted under."""
        # The broker delivers at least once: the same event acted on lately is not acted on
        # again (a failure is not remembered, so the broker's retry gets through).
        event, decision = decided.event, decided.decision
        key = event_key(str(event.attributes["source"]), event.id)
        async with self._recent.handling(key) as duplicate:
            if duplicate:
                return self._duplicate(event, decision, decided.workflow_id), DUPLICATE
            if decision.action is Action.PREEMPT:
                reply, acted = await self._preempt(decided)
            else:
                reply, acted = await self._cancel(decided)
            if acted:
                self._recent.remember(key)
        return reply, decision.action.value

    def _duplicate(self, event: IncomingEvent, decision: Decision, workflow_id: str) -> Reply:
        self._metrics.ignored.labels(DUPLICATE).inc()
        source = str(event.attributes["source"])
        reason = (
            f"event {event.id!r} from {source!r} was acted on already ({decision.action.value})"
        )
        self._log.info(
            "duplicate event ignored", eventID=event.id, source=source, workflowID=workflow_id
        )
        body = {"eventID": event.id, "decision": DUPLICATE, "reason": reason}
        return Reply(200, {**body, "workflowID": workflow_id})

    def _route(self, event: IncomingEvent) -> Route | None:
        """The event's vCenter and task queue: by its source's host when VCENTER_TASKQUEUES
        is set (None: a vCenter it does not name), else TEMPORAL_TASKQUEUE."""
        queues = self._settings.vcenter_taskqueues
        if not queues:
            return Route(self._settings.temporal_taskqueue)
        host = vcenter_host(str(event.attributes.get("source", "")))
        queue = queues.get(host)
        return Route(queue, host) if queue else None

    def _unknown_source(self, event: IncomingEvent) -> Reply:
        source = str(event.attributes.get("source", ""))
        host = vcenter_host(source)
        self._metrics.ignored.labels(UNKNOWN_SOURCE).inc()
        self._log.warning(
            "event from an unknown vCenter ignored",
            eventID=event.id,
            source=source,
            vcenter=host,
            known=sorted(self._settings.vcenter_taskqueues),
        )
        reason = f"unknown vCenter {host or repr(source)}"
        return Reply(200, {"eventID": event.id, "decision": Action.IGNORE.value, "reason": reason})

    def _workflow_id(self, change: AlarmChange, route: Route) -> str:
        """The workflow of this alarm and entity, on this vCenter when the function serves
        several (docs/wire.md, "Workflow IDs")."""
        return workflow_id(
            change.alarm_name, change.entity, self._settings.workflow_id_mode, route.vcenter
        )

    async def _preempt(self, decided: Decided) -> tuple[Reply, bool]:
        """The reply, and whether the workflow was signalled."""
        settings = self._settings
        event, decision, route = decided.event, decided.decision, decided.route
        request = WorkflowRequest(
            tag=settings.preemption_tag,
            criticality=decision.criticality,
            event=structured_json(event, decided.data),
            reply_to=settings.k_sink,
        )
        try:
            request.check()  # the rule the workflow reads a signal with: it would drop it
        except WireError as exc:
            message = f"event cannot be signalled: {exc}"
            return self.reject(400, "invalid_signal", message, event.id), False
        context = decided.log_context() | {
            "criticality": decision.criticality.value,
            "entity": decided.line[1],
            "queue": route.task_queue,
            "vcenter": route.vcenter or "",
            "tag": settings.preemption_tag,
            "sink": settings.k_sink,
        }

        async def send(merged: WorkflowRequest) -> Any:
            return await (await self._link.require()).signal_with_start(
                decided.workflow_id,
                merged,
                task_queue=route.task_queue,
                # None in the per-entity form: the workflow lives as long as its alarm.
                execution_timeout=execution_timeout_for(self._settings.workflow_id_mode),
            )

        try:
            delivered = await self._signals.raise_(decided.line, request, send)
        except TemporalError as exc:
            self._metrics.acted.labels("preempt", "failed").inc()
            message = f"{PREEMPTION_FAILED}: {exc}"
            self._log.error("preemption failed", **context, error=message)
            status = 503 if isinstance(exc, TemporalUnavailable) else 502
            return Reply(status, {"error": message}, RETRY_AFTER), False
        run = delivered.result
        self._metrics.acted.labels("preempt", "signalled").inc()
        merged = _merged(delivered)
        if merged and delivered.signal_event_id != event.id:
            # Carried by the signal of a later event of the same alarm and entity.
            self._metrics.merged.inc()
        self._log.info("preemption triggered", **context, runID=run.run_id, **merged)
        return Reply(200, {**decided.summary(), "workflowID": run.workflow_id,
                           "runID": run.run_id, **merged}), True  # fmt: skip

    async def _cancel(self, decided: Decided) -> tuple[Reply, bool]:
        """The reply, and whether the cancel reached Temporal."""
        context = decided.log_context()

        async def cancel() -> Any:
            return await (await self._link.require()).cancel(decided.workflow_id)

        try:
            # After the raises of this alarm and entity that came before it, never merged.
            outcome = (await self._signals.lower(decided.line, cancel)).outcome.value
        except TemporalError as exc:
            # Logged only, and success returned so the broker does not redeliver (as the Go
            # function does); a workflow left running ends with the next lowering, its
            # maxLifetime if the policy sets one, or (WORKFLOW_ID_MODE=alarm) its 24 h timeout.
            self._metrics.acted.labels("cancel", "failed").inc()
            self._log.error("cancel failed", **context, error=str(exc))
            body = {**decided.summary(), "outcome": "cancel_failed", "error": str(exc)}
            return Reply(200, body), False
        self._metrics.acted.labels("cancel", outcome).inc()
        self._log.info("preemption cancelled", **context, outcome=outcome)
        return Reply(200, {**decided.summary(), "workflowID": decided.workflow_id,
                           "outcome": outcome}), True  # fmt: skip


def _merged(delivered: Delivered) -> dict[str, Any]:
    """The reply's and log line's fields of an event carried by a signal with others."""
    if delivered.carried <= 1:
        return {}
    return {"signalEventID": delivered.signal_event_id, "signalCarried": delivered.carried}


def _summary(event: IncomingEvent, decision: Decision) -> dict[str, Any]:
    return {"eventID": event.id, "decision": decision.action.value, "reason": decision.reason}


def _loggable(event: IncomingEvent, data: EventData | None) -> dict[str, Any]:
    """The whole event for DEBUG logs, also when its data did not decode."""
    whole = structured_json(event, data)
    if isinstance(whole.get("data"), RawJSON):
        whole["data"] = whole["data"].value()  # the log renderer knows plain values only
    if data is None and event.raw_data is not None:
        whole["data"] = event.raw_data[:4096].decode("utf-8", "replace")
    return whole
