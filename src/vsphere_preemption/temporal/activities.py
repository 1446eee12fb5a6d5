"""The worker's activities: vCenter through the vSphere adapter, the event over HTTP.

A class around injected clients (one vCenter session for every activity, one HTTP
connection pool), its blocking methods run by the worker on a thread pool. Every
activity is safe to run twice: finding is a read; the adapter counts a VM that is
already off as off without acting again; an annotation is the same value written
again; the event keeps its id, so a sink can drop a duplicate.

Heartbeats are honest: each activity heartbeats its real progress. The adapter
reports progress whenever a vCenter call completes (each VM's power call, each poll
of the tasks, a batched read before and after), and a ticker thread sends the latest
report every second, but only while reports keep coming: when none came for longer
than the stall bound (`stall_after`, 30 s), it stops heartbeating. A hung vCenter
call thus ends in a heartbeat timeout, and Temporal retries the activity; a killed
worker is noticed the same way. The heartbeat details are the latest progress line
and the VMs done so far; a retry reads them (`activity.info().heartbeat_details`) so
as not to redo finished VMs. For stopping, re-reading the power states is enough (a
VM stopped already is counted without a call); a resume also needs to know which VMs
its earlier attempt powered on, so as not to take them for VMs powered on by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from cloudevents.core.bindings.http import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError

from vsphere_preemption.domain import model
from vsphere_preemption.domain.plan import plan
from vsphere_preemption.domain.policy import Policy, UseBasis
from vsphere_preemption.temporal import contracts, run_metrics
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.errors import (
    CategoryNotFoundError,
    EntityNotFoundError,
    TagNotFoundError,
    VSphereError,
)
from vsphere_preemption.vsphere.tasks import Fanout
from vsphere_preemption.wire import ANNOTATION_KEY, format_unix_ns

HEARTBEAT_EVERY = 1.0  # seconds; three beats in the 3 s heartbeat timeout
# Seconds without any progress (no vCenter call completing) after which the ticker stops
# heartbeating, so the attempt times out and is retried. Longer than any one call takes
# when vCenter is well, a batched read over thousands of VMs included.
STALL_AFTER = 30.0

# How long PlanPreemption waits for the pauses once its plan is made; the query itself is
# bounded by the client's RPC timeout.
PAUSE_READ_TIMEOUT = 15.0
# Reads the pause registry's pauses (temporal.client.PreemptionClient.read_pauses).
PauseReader = Callable[[str], Coroutine[Any, Any, contracts.PauseBook]]


def _cancel(reading: Future[contracts.PauseBook] | None) -> None:
    if reading is not None:
        reading.cancel()


def _pause_read_result(
    reading: Future[contracts.PauseBook],
) -> tuple[contracts.PauseBook | None, str]:
    """The pauses read, or (None) why not: the workflow holds a run whose pauses are unknown,
    as it does when ReadPauses fails."""
    try:
        return reading.result(timeout=PAUSE_READ_TIMEOUT), ""
    except TimeoutError:
        reading.cancel()
        return None, f"the pause registry did not answer within {PAUSE_READ_TIMEOUT:.0f}s"
    except Exception as exc:  # noqa: BLE001 (any failure means: unread, and the run is held)
        return None, str(exc) or type(exc).__name__


class PreemptionActivities:
    def __init__(
        self,
        client: VSphereClient,
        policy: contracts.PreemptionPolicy,
        event_source: str,
        http: httpx.Client,
        *,
        heartbeat_every: float = HEARTBEAT_EVERY,
        stall_after: float = STALL_AFTER,
        clock: Callable[[], float] = time.monotonic,
        pauses: PauseReader | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._vcenter = client
        self._pauses = pauses
        # The worker's event loop, where PlanPreemption (a thread) reads the pauses.
        self._loop = loop
        self._policy = policy
        self._event_source = event_source
        self._http = http
        self._heartbeat_every = heartbeat_every
        self._stall_after = stall_after
        # What the stall bound is measured on: a test's own clock can make a call hang past
        # the bound, or a slow one stay within it, by the order of events, not by waiting.
        self._clock = clock

    def _heartbeating(self, done_before: Sequence[str] = ()) -> _Heartbeating:
        return _heartbeating(self._heartbeat_every, self._stall_after, done_before, self._clock)

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for `Worker(activities=...)`."""
        return [
            self.get_policy,
            self.get_preemptible_vms,
            self.plan_preemption,
            self.read_entity_usage,
            self.read_entity_use,
            self.power_off_vms,
            self.annotate_vms,
            self.set_guest_notice,
            self.resume_vms,
            self.send_preempted_event,
            self.read_pauses,
        ]

    @activity.defn(name=contracts.READ_PAUSES)
    async def read_pauses(self, arg: contracts.ReadPausesInput) -> contracts.PauseBook:
        # An activity, not a query from the workflow (workflows cannot query): its answer is
        # in the history, so a replay decides to hold or not exactly as the run did.
        if self._pauses is None:
            # A worker built without the registry (tests): nothing paused.
            return contracts.PauseBook()
        return await self._pauses(arg.registry_id)

    @activity.defn(name=contracts.GET_POLICY)
    async def get_policy(self) -> contracts.PreemptionPolicy:
        # A local activity: the workflow reads the worker's settings through the
        # history, so a replay on a worker configured otherwise still agrees.
        return self._policy

    @activity.defn(name=contracts.GET_PREEMPTIBLE_VMS)
    def get_preemptible_vms(self, arg: contracts.FindVmsInput) -> model.Selection:
        try:
            with self._heartbeating():
                selection = self._vcenter.find_preemptible(arg.tag, arg.max_vms)
        except TagNotFoundError as exc:
            # Retrying cannot create the tag: say so once.
            raise ApplicationError(str(exc), type="TagNotFound", non_retryable=True) from None
        activity.logger.info(
            "tag %r: %d VM(s) selected, %d left out",
            arg.tag,
            len(selection.selected),
            len(selection.left_out),
        )
        return selection

    @activity.defn(name=contracts.PLAN_PREEMPTION)
    def plan_preemption(self, arg: contracts.PlanInput) -> contracts.PlanOutput:
        """Gather the facts in batched reads, then choose: all choice is domain.plan's."""
        try:
            policy = Policy.from_wire(arg.policy)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="InvalidPolicy", non_retryable=True) from None
        reading = self._start_pause_read(arg.pauses_registry)
        try:
            with self._heartbeating():
                gathered = self._vcenter.gather(
                    arg.tag, arg.entity, policy.tag_categories(), basis=policy.targets.basis
                )
        except (TagNotFoundError, CategoryNotFoundError, EntityNotFoundError) as exc:
            _cancel(reading)
            # Retrying cannot create the tag, the category or the entity: say so once.
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from None
        except BaseException:
            _cancel(reading)
            raise
        chosen = plan(
            gathered.facts, gathered.usage, policy, arg.criticality, non_vms=gathered.non_vms
        )
        run_metrics.count_left_out(_meter(), [left.reason.value for left in chosen.left_out])
        notes = list(gathered.notes)
        if gathered.vanished:
            gone = ", ".join(ref.value for ref in gathered.vanished)
            notes.append(f"tagged VMs vCenter no longer has (deleted after tagging?): {gone}")
        activity.logger.info(
            "tag %r under %s: %d victim(s), %d left out",
            arg.tag,
            arg.entity or "the whole vCenter",
            len(chosen.victims),
            len(chosen.left_out),
        )
        # Not read here (no registry named, or this worker cannot query it): both empty, and
        # the workflow reads them with ReadPauses instead; never "nothing paused" unasked.
        book, unread = _pause_read_result(reading) if reading is not None else (None, "")
        return contracts.PlanOutput(
            plan=chosen.to_wire(),
            usage=gathered.usage,
            scope_vms=gathered.scope_vms,
            notes=notes,
            pauses=book,
            pauses_unread=unread,
        )

    def _start_pause_read(self, registry: str | None) -> Future[contracts.PauseBook] | None:
        """Start reading `registry`'s pauses on the worker's event loop (the query waits on
        Temporal while this activity's thread reads vCenter); None when there is nothing to
        read or no way to read it here."""
        if registry is None or self._pauses is None or self._loop is None:
            return None
        return asyncio.run_coroutine_threadsafe(self._pauses(registry), self._loop)

    @activity.defn(name=contracts.READ_ENTITY_USAGE)
    def read_entity_usage(self, entity: model.MoRef) -> model.EntityUsage | None:
        """The entity's use now, to set what a run achieved against what it planned."""
        with self._heartbeating():
            return self._vcenter.entity_usage(entity)

    @activity.defn(name=contracts.READ_ENTITY_USE)
    def read_entity_use(self, arg: contracts.UseInput) -> model.EntityUsage | None:
        """The entity's use now on the policy's basis: a round of preempt-until-relieved
        judges its target as the plan did."""
        try:
            basis = UseBasis(arg.basis)
        except ValueError:
            raise ApplicationError(
                f"unknown use basis {arg.basis!r}", type="InvalidPolicy", non_retryable=True
            ) from None
        with self._heartbeating():
            return self._vcenter.entity_usage(arg.entity, basis=basis)

    @activity.defn(name=contracts.POWER_OFF_VMS)
    def power_off_vms(self, arg: contracts.PowerOffInput) -> model.PowerOffOutcome:
        """Stop the VMs as `arg.action` says (or `force`, in inputs recorded before it)."""
        if arg.action:
            try:
                action = model.StopAction(arg.action)
            except ValueError:
                raise ApplicationError(
                    f"unknown stop action {arg.action!r} "
                    f"(known: {', '.join(a.value for a in model.StopAction)})",
                    type="InvalidStopAction",
                    non_retryable=True,
                ) from None
        else:
            action = model.StopAction.POWER_OFF if arg.force else model.StopAction.SHUTDOWN
        # A retry re-reads the power states: VMs stopped already are counted, not redone.
        with self._heartbeating() as progress:
            outcome = self._vcenter.stop(
                arg.vms,
                action=action,
                soft_shutdown_grace=arg.soft_shutdown_grace,
                fanout=Fanout(arg.max_concurrency, progress),
            )
        run_metrics.count_vm_failures(_meter(), "stop", len(outcome.failed))
        activity.logger.info(
            "%s: %d VM(s) confirmed stopped (%d forced after the grace), %d failed",
            action.value,
            len(outcome.powered_off),
            len(outcome.forced_after_grace),
            len(outcome.failed),
        )
        return outcome

    @activity.defn(name=contracts.ANNOTATE_VMS)
    def annotate_vms(self, arg: contracts.AnnotateInput) -> model.AnnotateOutcome:
        value = arg.annotation_json  # written as the workflow encoded it, byte for byte
        with self._heartbeating() as progress:
            outcome = self._vcenter.annotate(
                arg.vms,
                ANNOTATION_KEY,
                value,
                fanout=Fanout(self._policy.max_concurrency, progress),
            )
        run_metrics.count_vm_failures(_meter(), "annotate", len(outcome.failed))
        return outcome

    @activity.defn(name=contracts.SET_GUEST_NOTICE)
    def set_guest_notice(self, arg: contracts.GuestNoticeInput) -> model.GuestNoticeOutcome:
        """Write (or, with "", clear) the notice the guest reads from contracts.GUEST_NOTICE_KEY."""
        with self._heartbeating() as progress:
            outcome = self._vcenter.set_extra_config(
                arg.vms,
                contracts.GUEST_NOTICE_KEY,
                arg.value,
                fanout=Fanout(arg.max_concurrency, progress),
            )
        meter = _meter()
        op = "cleared" if arg.value == "" else "written"
        run_metrics.count_guest_notices(meter, op, len(outcome.written))
        run_metrics.count_vm_failures(meter, "notice", len(outcome.failed))
        activity.logger.info(
            "guest notice %s on %d VM(s), %d failed",
            "cleared" if arg.value == "" else "written",
            len(outcome.written),
            len(outcome.failed),
        )
        return outcome

    @activity.defn(name=contracts.RESUME_VMS)
    def resume_vms(self, arg: contracts.ResumeInput) -> model.ResumeOutcome:
        """Power on again the VMs nobody changed since they were stopped; say why not."""
        done_before = _done_before()  # VMs an earlier attempt powered on
        with self._heartbeating(done_before) as progress:
            outcome = self._vcenter.resume(
                arg.marks,
                workflow_id=arg.workflow_id,
                annotation_field=ANNOTATION_KEY,
                annotation_json=arg.annotation_json,
                fanout=Fanout(arg.max_concurrency, progress),
                powered_on_before={model.VmRef(v) for v in done_before},
                on_powering_on=progress.vm_done,  # a retry's `powered_on_before`
            )
        run_metrics.count_resumed(
            _meter(),
            len(outcome.resumed),
            len(outcome.skipped),
            len(outcome.failed),
        )
        run_metrics.count_vm_failures(_meter(), "resume", len(outcome.failed))
        activity.logger.info(
            "%d VM(s) resumed, %d left alone, %d failed",
            len(outcome.resumed),
            len(outcome.skipped),
            len(outcome.failed),
        )
        return outcome

    @activity.defn(name=contracts.SEND_PREEMPTED_EVENT)
    def send_preempted_event(self, arg: contracts.SendEventInput) -> None:
        target = urlsplit(arg.reply_to)
        if target.scheme not in {"http", "https"} or not target.hostname:
            raise ApplicationError(
                f"replyTo is not an http(s) URL: {_safe_url(arg.reply_to)!r}",
                type="InvalidReplyTo",
                non_retryable=True,
            )
        event = CloudEvent(
            attributes={
                "id": arg.event_id,
                "source": self._event_source,
                "type": arg.event_type,
                "datacontenttype": "application/json",
                "time": datetime.now(UTC),
            },
            data=arg.data_json.encode(),  # the body as is: Go's field order
        )
        # Binary content mode, as the Go worker's CloudEvents HTTP client sends.
        message = to_binary(event, JSONFormat())
        # The SDK writes microseconds with trailing zeros (`.120000Z`); Go writes
        # RFC3339Nano: nanoseconds, trailing zeros trimmed (docs/wire.md).
        message.headers["ce-time"] = format_unix_ns(time.time_ns())
        where = _safe_url(arg.reply_to)
        try:
            response = self._http.post(arg.reply_to, headers=message.headers, content=message.body)
        except httpx.HTTPError as exc:
            run_metrics.count_event_sent(_meter(), arg.event_type, "failed")
            # httpx messages can quote the URL: strip any credentials from them.
            detail = str(exc).replace(arg.reply_to, where)
            if "CERTIFICATE_VERIFY_FAILED" in detail:
                detail += " (TLS: the sink's certificate is not trusted; SINK_CA_BUNDLE adds CAs)"
            raise ApplicationError(
                f"sending {arg.event_type} to {where} failed: {type(exc).__name__}: {detail}",
                type="SinkUnreachable",
            ) from None
        outcome = "ok" if response.is_success else "failed"
        run_metrics.count_event_sent(_meter(), arg.event_type, outcome)
        if not response.is_success:
            # Not acknowledged: an error, so Temporal retries it.
            raise ApplicationError(
                f"{where} answered HTTP {response.status_code} to {arg.event_type}",
                type="SinkRejected",
            )
        activity.logger.info("sent %s %s to %s", arg.event_type, arg.event_id, where)


def _meter() -> MetricMeter:
    """The activity's meter; none when a method is called outside an activity (tests)."""
    return activity.metric_meter() if activity.in_activity() else MetricMeter.noop


def _safe_url(url: str) -> str:
    """The URL without user:password, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        return url
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class AttemptAbandoned(VSphereError):
    """This attempt went quiet past the stall bound and was left to time out: it stops
    at its next report rather than act beside the retry Temporal started."""


class Progress:
    """What the adapter reported last, from any thread: a line, and the VMs done."""

    def __init__(
        self, done_before: Sequence[str] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._detail = ""
        self._done = list(done_before)  # moref values; carried into further retries
        self.moved_at = clock()
        self.stalled_for: float | None = None  # set by the ticker when it stopped heartbeating

    def _moved(self) -> None:
        if self.stalled_for is not None:
            raise AttemptAbandoned(
                f"no progress for {self.stalled_for:.0f}s (a hung vCenter call?): this attempt "
                "stopped heartbeating and gives way to its retry"
            )
        self.moved_at = self._clock()

    def __call__(self, detail: str) -> None:
        with self._lock:
            self._moved()
            self._detail = detail

    def vm_done(self, ref: model.VmRef) -> None:
        with self._lock:
            self._moved()
            if ref.value not in self._done:
                self._done.append(ref.value)

    def details(self) -> tuple[str, list[str]]:
        with self._lock:
            return self._detail, list(self._done)


_Heartbeating = contextlib.AbstractContextManager[Progress]


def _done_before() -> list[str]:
    """The VMs an earlier attempt of this activity reported done (its last heartbeat)."""
    details = activity.info().heartbeat_details
    if len(details) >= 2 and isinstance(details[1], list):
        return [str(v) for v in details[1]]
    return []


@contextmanager
def _heartbeating(
    every: float = HEARTBEAT_EVERY,
    stall_after: float = STALL_AFTER,
    done_before: Sequence[str] = (),
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Progress]:
    """Heartbeat the latest progress from a ticker thread while it moves; yield `Progress`.

    The adapter calls `Progress` (from any thread) whenever a vCenter call completes.
    The ticker sends the latest report every `every` seconds, from a copy of the
    activity thread's context (where `activity.heartbeat` finds its activity), and stops
    for good once nothing was reported for `stall_after` seconds: the attempt then ends
    in a heartbeat timeout and Temporal retries it, instead of waiting on a hung call;
    if the call returns after all, the attempt's next report raises `AttemptAbandoned`.
    """
    progress = Progress(done_before, clock)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            quiet = clock() - progress.moved_at
            if quiet > stall_after:
                # Heartbeat no more: the attempt times out and Temporal retries it. Should
                # the hung call ever return, the attempt stops at its next report.
                progress.stalled_for = quiet
                activity.logger.warning(
                    "no progress for %.0fs: heartbeats stop, so this attempt times out "
                    "and is retried",
                    quiet,
                )
                return
            try:
                activity.heartbeat(*progress.details())
            except RuntimeError:
                return  # the worker's loop is gone (shutting down): nothing to tell

    context = contextvars.copy_context()
    ticker = threading.Thread(target=context.run, args=(tick,), name="heartbeat", daemon=True)
    ticker.start()
    try:
        yield progress
    finally:
        stop.set()
        ticker.join()
