"""The worker's activities: vCenter through the vSphere adapter, the event over HTTP.

A class around injected clients (one vCenter session for every activity, one HTTP
connection pool), its blocking methods run by the worker on a thread pool. Every
activity is safe to run twice: finding is a read; the adapter counts a VM that is
already off as off without acting again; an annotation is the same value written
again; the event keeps its id, so a sink can drop a duplicate.

Heartbeats: a blocking vCenter call (one retrieval over thousands of VMs) can take
longer than the 5 s heartbeat timeout, so a ticker thread heartbeats every second
for the activity while it runs, carrying the adapter's latest progress line. The
heartbeat says "this worker is alive" (a killed worker is noticed within 5 s and
the activity retried elsewhere); a call that hangs is bounded by start-to-close.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from cloudevents.core.bindings.http import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from temporalio import activity
from temporalio.exceptions import ApplicationError

from vsphere_preemption.domain.model import (
    AnnotateOutcome,
    EntityUsage,
    MoRef,
    PowerOffOutcome,
    Selection,
    VmRef,
)
from vsphere_preemption.domain.plan import plan
from vsphere_preemption.domain.policy import Policy
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
from vsphere_preemption.vsphere.errors import (
    CategoryNotFoundError,
    EntityNotFoundError,
    TagNotFoundError,
)
from vsphere_preemption.vsphere.gather import Gathered
from vsphere_preemption.wire import ANNOTATION_KEY, format_unix_ns

HEARTBEAT_EVERY = 1.0  # seconds; well inside the 5 s heartbeat timeout


class VCenter(Protocol):
    """What the activities need of the vSphere adapter (vsphere.client.VSphereClient)."""

    def find_preemptible(self, tag: str, max_vms: int) -> Selection: ...

    def gather(
        self, tag: str, entity: MoRef | None, categories: Sequence[str] = ()
    ) -> Gathered: ...

    def entity_usage(self, entity: MoRef) -> EntityUsage | None: ...

    def power_off(
        self,
        vms: Sequence[VmRef],
        *,
        force: bool,
        soft_shutdown_grace: timedelta,
        max_concurrency: int,
        heartbeat: Callable[[str], None],
    ) -> PowerOffOutcome: ...

    def annotate(
        self,
        vms: Sequence[VmRef],
        key: str,
        value: str,
        *,
        max_concurrency: int,
        heartbeat: Callable[[str], None],
    ) -> AnnotateOutcome: ...


class PreemptionActivities:
    def __init__(
        self,
        client: VCenter,
        policy: PreemptionPolicy,
        event_source: str,
        http: httpx.Client,
    ) -> None:
        self._vcenter = client
        self._policy = policy
        self._event_source = event_source
        self._http = http

    def all(self) -> list[Callable[..., object]]:
        """Every activity, for `Worker(activities=...)`."""
        return [
            self.get_policy,
            self.get_preemptible_vms,
            self.plan_preemption,
            self.read_entity_usage,
            self.power_off_vms,
            self.annotate_vms,
            self.send_preempted_event,
        ]

    @activity.defn(name=GET_POLICY)
    async def get_policy(self) -> PreemptionPolicy:
        # A local activity: the workflow reads the worker's settings through the
        # history, so a replay on a worker configured otherwise still agrees.
        return self._policy

    @activity.defn(name=GET_PREEMPTIBLE_VMS)
    def get_preemptible_vms(self, arg: FindVmsInput) -> Selection:
        try:
            with _heartbeating():
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

    @activity.defn(name=PLAN_PREEMPTION)
    def plan_preemption(self, arg: PlanInput) -> PlanOutput:
        """Gather the facts in batched reads, then choose: all choice is domain.plan's."""
        try:
            policy = Policy.from_wire(arg.policy)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="InvalidPolicy", non_retryable=True) from None
        try:
            with _heartbeating():
                gathered = self._vcenter.gather(arg.tag, arg.entity, policy.tag_categories())
        except (TagNotFoundError, CategoryNotFoundError, EntityNotFoundError) as exc:
            # Retrying cannot create the tag, the category or the entity: say so once.
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from None
        chosen = plan(
            gathered.facts, gathered.usage, policy, arg.criticality, non_vms=gathered.non_vms
        )
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
        return PlanOutput(
            plan=chosen.to_wire(),
            usage=gathered.usage,
            scope_vms=gathered.scope_vms,
            notes=notes,
        )

    @activity.defn(name=READ_ENTITY_USAGE)
    def read_entity_usage(self, entity: MoRef) -> EntityUsage | None:
        """The entity's use now, to set what a run achieved against what it planned."""
        with _heartbeating():
            return self._vcenter.entity_usage(entity)

    @activity.defn(name=POWER_OFF_VMS)
    def power_off_vms(self, arg: PowerOffInput) -> PowerOffOutcome:
        with _heartbeating() as progress:
            outcome = self._vcenter.power_off(
                arg.vms,
                force=arg.force,
                soft_shutdown_grace=arg.soft_shutdown_grace,
                max_concurrency=arg.max_concurrency,
                heartbeat=progress,
            )
        activity.logger.info(
            "%d VM(s) confirmed off (%d forced after the grace), %d failed",
            len(outcome.powered_off),
            len(outcome.forced_after_grace),
            len(outcome.failed),
        )
        return outcome

    @activity.defn(name=ANNOTATE_VMS)
    def annotate_vms(self, arg: AnnotateInput) -> AnnotateOutcome:
        value = arg.annotation_json  # written as the workflow encoded it, byte for byte
        with _heartbeating() as progress:
            return self._vcenter.annotate(
                arg.vms,
                ANNOTATION_KEY,
                value,
                max_concurrency=self._policy.max_concurrency,
                heartbeat=progress,
            )

    @activity.defn(name=SEND_PREEMPTED_EVENT)
    def send_preempted_event(self, arg: SendEventInput) -> None:
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
            # httpx messages can quote the URL: strip any credentials from them.
            detail = str(exc).replace(arg.reply_to, where)
            raise ApplicationError(
                f"sending {arg.event_type} to {where} failed: {type(exc).__name__}: {detail}",
                type="SinkUnreachable",
            ) from None
        if not response.is_success:
            # Not acknowledged: an error, so Temporal retries it.
            raise ApplicationError(
                f"{where} answered HTTP {response.status_code} to {arg.event_type}",
                type="SinkRejected",
            )
        activity.logger.info("sent %s %s to %s", arg.event_type, arg.event_id, where)


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


@contextmanager
def _heartbeating(every: float = HEARTBEAT_EVERY) -> Iterator[Callable[[str], None]]:
    """Heartbeat from a ticker thread while the body runs; yield a progress callback.

    The callback only records the latest progress line (the adapter may call it from
    any thread); the ticker sends it, from a copy of the activity thread's context,
    which is where `activity.heartbeat` finds its activity.
    """
    latest = [""]
    stop = threading.Event()

    def progress(detail: str) -> None:
        latest[0] = detail

    def tick() -> None:
        while not stop.wait(every):
            try:
                activity.heartbeat(latest[0])
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
