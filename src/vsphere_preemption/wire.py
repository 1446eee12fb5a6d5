"""The JSON the Go originals speak, byte for byte where it matters.

Everything that crosses a process boundary between the function, the worker and
preemptctl (Go or Python) is defined here: names, the `PreemptVMsChan` signal
(WorkflowRequest), the `current_state` query answer (WorkflowResponse), the VM
annotation and the emitted `VmPreemptedEvent`. Standard library only, so the
deterministic workflow code can use it too.

Go's `encoding/json` matches field names in any letter case on input; we accept
the same (`domain/gojson.py`), and always write the exact names the Go structs carry.
The contract itself, with examples and the differences we keep: docs/wire.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from vsphere_preemption.domain.cloudevent_rules import (
    REQUIRED,
    SPECVERSIONS,
    Problem,
    Rule,
    required_problems,
)
from vsphere_preemption.domain.events import GO_JSON_MEDIA_TYPES, alarm_entity, media_type
from vsphere_preemption.domain.gojson import field as go_field
from vsphere_preemption.domain.model import Criticality, MoRef, VmRef
from vsphere_preemption.domain.shapes import (
    AnnotationExtras,
    AnnotationWire,
    MoRefWire,
    PreemptedEventData,
    ResponseExtras,
    ResponseWire,
    known_fields,
    moref_from_wire,
    moref_to_wire,
)
from vsphere_preemption.domain.text import json_kind
from vsphere_preemption.rawjson import RawJSON, members

WORKFLOW_TYPE = "PreemptVMsWorkflow"
SIGNAL_NAME = "PreemptVMsChan"
QUERY_NAME = "current_state"
HISTORY_QUERY = "history"  # ours: the workflow's last runs (docs/wire.md)
ANNOTATION_KEY = "com.vmware.workflows.vsphere.preemption"
PREEMPTED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptedEvent.v0"
# Ours: what a dry run emits instead (its plan; nothing was acted on).
PLANNED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionPlannedEvent.v0"
# Ours, acting with care: the notice before acting, its cancellation when the alarm lowers
# during it, and each batch of VMs powered on again after the alarm cleared.
SCHEDULED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionScheduledEvent.v0"
CANCELLED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionCancelledEvent.v0"
RESUMED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmResumedEvent.v0"
# Ours: the workflow reached the policy's maxLifetime and ended; the VMs it names stay off.
EXPIRED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionExpiredEvent.v0"
# Ours, the pause switch: a run held by a pause or a quiet window, and released (the pause
# ended: it goes on; or the alarm lowered meanwhile: nothing is acted on).
HELD_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionHeldEvent.v0"
RELEASED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionReleasedEvent.v0"
# ... and the pause registry's: a pause taken, and lifted (by an operator, or expired).
PAUSED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionPausedEvent.v0"
UNPAUSED_EVENT_TYPE = "com.vmware.workflows.vsphere.VmPreemptionUnpausedEvent.v0"
# The pause registry: one long-lived workflow per task queue holds the pauses in its state.
PAUSES_WORKFLOW_TYPE = "PreemptionPausesWorkflow"
PAUSES_WORKFLOW_ID_PREFIX = "vsphere-preemption-pauses/"  # then the task queue
PAUSE_SIGNAL = "Pause"
UNPAUSE_SIGNAL = "Unpause"
WATCH_SIGNAL = "WatchPauses"  # a held workflow asks to be told of the next change
PAUSES_QUERY = "pauses"
PAUSES_CHANGED_SIGNAL = "PausesChanged"  # to a held PreemptVMsWorkflow: read the pauses again
CLI_WORKFLOW_ID = "preempctl-run"  # sic: the Go CLI's spelling, kept for compatibility
CLI_EVENT_TYPE = "PreempctlRunEvent"
DEFAULT_NAMESPACE = "vsphere-preemption"
DEFAULT_TASK_QUEUE = "vsphere-preemption"
DEFAULT_TAG = "preemptible"

# A CloudEvent in the CloudEvents 1.0 structured JSON form, `data` embedded.
CloudEventJSON = dict[str, Any]

# What Go's zero `time.Time` and `cloudevents.NewEvent()` marshal to: the query
# answer of a workflow that has not run yet must look the same to Go clients.
GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
EMPTY_EVENT: CloudEventJSON = {"specversion": "1.0", "id": "", "source": "", "type": ""}
# A CloudEvent's required attributes, and the order Go's CloudEvents SDK (v2) writes a 1.0
# event's context attributes in; the data and the extension attributes follow them.
CE_REQUIRED_ATTRIBUTES = REQUIRED
CE_ATTRIBUTE_ORDER = (*CE_REQUIRED_ATTRIBUTES, "subject", "datacontenttype", "dataschema", "time")
# What a signal may carry (docs/wire.md, "Which signals the workflow takes"): the CloudEvents
# versions the function accepts (and so puts into its signals), vSphere's limit on a tag
# name, and the function's own limit on an event body, for the whole signal payload.
SIGNAL_SPECVERSIONS = SPECVERSIONS
MAX_TAG_LENGTH = 256
MAX_SIGNAL_BYTES = 1024 * 1024
# The most bytes Go's JSON writer makes of one byte of JSON text read: `<`, `>`, `&` become
# `\u003c` and so on (a number grows less: `1e20` is written in 21 digits).
GO_JSON_GROWTH = 6


class WireError(ValueError):
    """A payload that is not what the Go originals would send."""


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC the way Go's time.RFC3339Nano writes it (trailing zeros trimmed)."""
    if value.tzinfo is None:
        raise WireError("naive datetime: wire times must be timezone-aware")
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.year < 1000:
        text = f"{value.year:04d}" + text[text.index("-") :]
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))")


def format_unix_ns(nanoseconds: int) -> str:
    """A Unix time in nanoseconds as Go's time.RFC3339Nano writes it in UTC."""
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    whole = format_time(_UNIX_EPOCH + timedelta(seconds=seconds))[:-1]  # no fraction: drop Z
    return whole + (f".{nanos:09d}".rstrip("0") if nanos else "") + "Z"


def canonical_time(value: str) -> str:
    """An RFC 3339 text as Go's CloudEvents SDK re-writes it: UTC, nanoseconds kept.

    Parsing into a datetime would lose everything past microseconds; Go keeps nine digits.
    """
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise WireError(f"not an RFC 3339 time: {value!r}")
    whole, fraction, _, sign, hours, minutes = match.groups()
    try:
        at = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    except ValueError as exc:
        raise WireError(f"not an RFC 3339 time: {value!r}") from exc
    if sign:
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        at = at - offset if sign == "+" else at + offset
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    seconds = (at - _UNIX_EPOCH) // timedelta(seconds=1)
    return format_unix_ns(seconds * 1_000_000_000 + nanos)


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 time (any offset, up to nanoseconds); answer it in UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python keeps microseconds: cut nanosecond fractions to six digits.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        frac, rest = tail[:digits], tail[digits:]
        text = f"{head}.{frac[:6].ljust(6, '0')}{rest}" if frac else head + rest
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise WireError(f"not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise WireError(f"RFC 3339 time without offset: {value!r}")
    return parsed.astimezone(UTC)


def go_json(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, `<>&` and U+2028/9 escaped.

    A `RawJSON` anywhere in `value` is written as its text, as Go writes raw event data.
    """
    text = _dumps(value)
    # These characters can only occur inside strings in the output, so replacing is safe.
    for char, escape in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escape)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from "\ud800" escapes in the input): Go writes U+FFFD for them.
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed.encode("utf-8")


def _dumps(value: Any) -> str:
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, Mapping):
        items = (f"{_dumps(_key(k))}:{_dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
    return key


_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _json_object(obj: Any, what: str) -> Mapping[str, Any]:
    """A decoded JSON object, from a JSON text (as stored or queried) or already decoded."""
    if isinstance(obj, str | bytes):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise WireError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise WireError(f"{what} must be a JSON object")
    return obj


def _str(obj: Mapping[str, Any], name: str) -> str:
    value = go_field(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WireError(f"{name} must be a string, got {type(value).__name__}")
    return value


# The one MoRef converter is the domain's (domain/shapes.py); the wire's readers catch WireError.
vm_ref_to_wire = moref_to_wire


def vm_ref_from_wire(obj: Any) -> VmRef:
    """`moref_from_wire`, with a WireError for anything that is no reference."""
    try:
        return moref_from_wire(obj)
    except ValueError as exc:
        raise WireError(str(exc)) from None


def vm_refs_to_wire(refs: Sequence[VmRef] | None) -> list[MoRefWire] | None:
    # Go marshals a nil slice as null; an empty run answers [] only if it ran.
    return None if refs is None else [moref_to_wire(r) for r in refs]


def _criticality(obj: Mapping[str, Any], *, required: bool) -> Criticality | None:
    raw = _str(obj, "criticality")
    if not raw:
        if required:
            raise WireError("criticality is missing")
        return None
    try:
        return Criticality(raw.upper())
    except ValueError as exc:
        raise WireError(f"criticality must be LOW, MEDIUM or HIGH, got {raw!r}") from exc


def _event(obj: Mapping[str, Any], *, required: bool) -> CloudEventJSON:
    event = go_field(obj, "event")
    if event is None:
        if required:
            raise WireError("event is missing")
        return dict(EMPTY_EVENT)
    if not isinstance(event, Mapping):
        raise WireError("event must be a CloudEvent in structured JSON form")
    return dict(event)


def is_go_json_media(datacontenttype: Any) -> bool:
    """Whether Go's CloudEvents SDK keeps `data` as raw JSON for this content type.

    No content type, `application/json` and `text/json` (parameters and case aside); any
    other type's data is a string to it.
    """
    if datacontenttype is None:
        return True
    if not isinstance(datacontenttype, str):
        return False
    return media_type(datacontenttype) in GO_JSON_MEDIA_TYPES


def with_raw_data(event: CloudEventJSON, event_text: str) -> CloudEventJSON:
    """`event` (decoded from `event_text`) with its JSON `data` as the raw text that came."""
    if "data" not in event or not is_go_json_media(event.get("datacontenttype")):
        return event
    raw = dict(members(event_text)).get("data")
    return event if raw is None else {**event, "data": RawJSON.parse(raw)}


def reply_to_problem(value: str) -> str | None:
    """Why `value` cannot be a request's `replyTo`, or None: `""` or an absolute http(s) URL.

    The worker POSTs its events there; anything else would only fail later, retried, inside
    the workflow.
    """
    if value == "":
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return f"replyTo is not a URL: {value!r}"
    if parts.scheme not in ("http", "https"):
        return f"replyTo must be an http:// or https:// URL, got {value!r}"
    if not host or value != value.strip():
        return f"replyTo has no host: {value!r}"
    return None


def tag_problem(tag: str) -> str | None:
    """Why `tag` cannot name a vSphere tag, or None."""
    if not tag.strip():
        return "tag is missing"
    if len(tag) > MAX_TAG_LENGTH:
        return f"tag is {len(tag)} characters long, over vSphere's {MAX_TAG_LENGTH}"
    return None


def signal_event_problem(event: Mapping[str, Any]) -> str | None:
    """Why `event` cannot be a signal's CloudEvent, or None.

    The required attributes by the CloudEvents rules (domain/cloudevent_rules.py), which the
    function applies to every event it signals: `specversion` 1.0 (or 0.3), `id`, `source`
    and `type` non-empty strings; no more, or a replayed history would refuse what it took.
    Attribute names are exact (CloudEvents' are lower case), unlike the request's fields.
    """
    problems = required_problems(event, SIGNAL_SPECVERSIONS)
    return _signal_words(problems[0]) if problems else None


def _signal_words(problem: Problem) -> str:
    # The words a dropped signal has always been logged with (operators search for them).
    name = problem.name
    if problem.rule is Rule.MISSING:
        return f"event has no {name}"
    if problem.rule is Rule.NOT_A_STRING:
        return f"event {name} must be a string, got {json_kind(problem.value)}"
    if problem.rule is Rule.EMPTY:
        return f"event {name} is empty"
    versions = " or ".join(SIGNAL_SPECVERSIONS)
    return f"event specversion must be {versions}, got {problem.value!r}"


_NOT_READ = object()


@dataclass(frozen=True)
class WorkflowRequest:
    """The `PreemptVMsChan` signal: which tag, how hard, why, and where to report.

    Beyond the Go fields, three optional ones (written only when set, so a request without
    them is byte for byte what the Go programs send; the Go worker ignores them):
    `entity` (`{"Type","Value"}`: the alarmed object whose VMs are candidates; without it the
    worker reads it from the alarm event inside `event`), `dryRun` (plan only) and `policy`
    (per-request policy overrides, the policy's own JSON shape, see domain/policy.py).
    """

    tag: str
    criticality: Criticality
    event: CloudEventJSON
    reply_to: str = ""
    entity: MoRef | None = None
    dry_run: bool = False
    policy: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "tag": self.tag,
            "criticality": self.criticality.value,
            "event": self.event,
            "replyTo": self.reply_to,
        }
        if self.entity is not None:
            wire["entity"] = moref_to_wire(self.entity)
        if self.dry_run:
            wire["dryRun"] = True
        if self.policy is not None:
            wire["policy"] = dict(self.policy)
        return wire

    def check(self, *, sent_bytes: int | None = None) -> None:
        """WireError naming the first thing that keeps this request from being a signal.

        The rule every signal meets, whoever sends it (docs/wire.md, "Which signals the
        workflow takes"): the workflow drops the rest, and the function and `preemptctl
        workflow run` check what they are about to send with it.

        `sent_bytes`: the size of the JSON text the request was read from, when it was. Writing
        the request as Go would is most of what a check costs (a workflow checks every signal
        of a storm), and it cannot exceed the limit when the text is small enough: Go's writer
        makes at most GO_JSON_GROWTH bytes of one byte of text (`<` becomes `\u003c`), and the
        event's JSON data is kept as it was sent. The same answer, without the writing.
        """
        problem = tag_problem(self.tag) or signal_event_problem(self.event)
        problem = problem or reply_to_problem(self.reply_to)
        small = sent_bytes is not None and sent_bytes * GO_JSON_GROWTH <= MAX_SIGNAL_BYTES
        if problem is None and not small:
            try:
                size = len(go_json(self.to_wire()))
            except (TypeError, ValueError) as exc:  # NaN from a lenient decoder, say
                raise WireError(f"the signal is not JSON: {exc}") from exc
            if size > MAX_SIGNAL_BYTES:
                problem = f"the signal is {size} bytes, over {MAX_SIGNAL_BYTES}"
        if problem is not None:
            raise WireError(problem)

    @classmethod
    def from_wire(
        cls, obj: Any, *, strict: bool = True, sent_bytes: int | None = None
    ) -> WorkflowRequest:
        """A request from its decoded JSON, checked (`check`) unless `strict` is False.

        Not strict: only for requests that were accepted once already (a workflow's memory
        across continue-as-new; a signal received before the rule, on replay).
        """
        if not isinstance(obj, Mapping):
            raise WireError("a WorkflowRequest must be a JSON object")
        tag = _str(obj, "tag")
        if not tag:
            raise WireError("tag is missing")
        criticality = _criticality(obj, required=True)
        assert criticality is not None
        entity = go_field(obj, "entity")
        dry_run = go_field(obj, "dryRun")
        if dry_run is not None and not isinstance(dry_run, bool):
            raise WireError("dryRun must be true or false")
        policy = go_field(obj, "policy")
        if policy is not None and not isinstance(policy, Mapping):
            raise WireError("policy must be an object of policy overrides")
        request = cls(
            tag=tag,
            criticality=criticality,
            event=_event(obj, required=True),
            reply_to=_str(obj, "replyTo"),
            entity=None if entity is None else vm_ref_from_wire(entity),
            dry_run=bool(dry_run),
            policy=None if policy is None else dict(policy),
        )
        if strict:
            request.check(sent_bytes=sent_bytes)
        return request

    def alarmed_entity(self) -> MoRef | None:
        """The entity whose VMs are candidates: ours if named, else the alarm event's own.

        A signal from the Go function (or from ours) names no entity of its own but carries
        the AlarmStatusChangedEvent whole; `preemptctl workflow run` names one with --entity
        or none at all (then: the whole vCenter).
        """
        if self.entity is not None:
            return self.entity
        # Read once per request: a workflow compares the entity of every signal of a storm
        # with the one waiting, and reading it decodes the whole alarm event. (Not a field:
        # equality, `replace` and the wire know nothing of it.)
        known = self.__dict__.get("_alarmed_entity", _NOT_READ)
        if known is not _NOT_READ:
            return cast("MoRef | None", known)
        event = self.event
        if isinstance(event.get("data"), RawJSON):
            event = {**event, "data": event["data"].value()}
        entity = alarm_entity(event)
        object.__setattr__(self, "_alarmed_entity", entity)
        return entity

    @classmethod
    def from_json(cls, text: str | bytes, *, strict: bool = True) -> WorkflowRequest:
        """A signal payload, the event's JSON `data` kept as the text that arrived.

        The Go worker keeps it as raw bytes and writes them back unchanged into the
        annotation, the event and the query answer; so do we (rawjson.py says why).
        Checked as `from_wire` checks (a text over the size limit before it is parsed).
        """
        size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        if strict and size > MAX_SIGNAL_BYTES:
            raise WireError(f"the signal is {size} bytes, over {MAX_SIGNAL_BYTES}")
        request = cls.from_wire(
            _json_object(text, "a WorkflowRequest"), strict=strict, sent_bytes=size
        )
        try:
            # The same lookup as from_wire's, over raw texts instead of values.
            event_text = go_field(dict(members(text)), "event")
            return replace(request, event=with_raw_data(request.event, event_text))
        except ValueError as exc:
            raise WireError(f"a WorkflowRequest's event is not JSON: {exc}") from exc


@dataclass(frozen=True)
class WorkflowResponse:
    """The `current_state` query answer: the last preemption run of a workflow."""

    workflow_id: str
    run_id: str
    workflow_name: str = WORKFLOW_TYPE
    last_preemption: datetime = GO_ZERO_TIME
    virtual_machines: tuple[VmRef, ...] | None = None
    tag: str = ""
    criticality: Criticality | None = None
    event: CloudEventJSON = field(default_factory=lambda: dict(EMPTY_EVENT))
    reply_to: str = ""
    # Ours, after Go's fields and only when set: the run's alarmed entity (None: the whole
    # vCenter), its plan (domain.plan.Plan.to_wire()) and what it achieved (usage re-read).
    extra: ResponseExtras = field(default_factory=lambda: ResponseExtras())

    def to_wire(self) -> ResponseWire:
        return {
            "workflowID": self.workflow_id,
            "workflowRunID": self.run_id,
            "workflowName": self.workflow_name,
            "lastPreemptionTime": format_time(self.last_preemption),
            "virtualMachines": vm_refs_to_wire(self.virtual_machines),
            "tag": self.tag,
            "criticality": self.criticality.value if self.criticality else "",
            "event": self.event,
            "replyTo": self.reply_to,
            **self.extra,
        }

    def to_json(self) -> str:
        return go_json(self.to_wire()).decode()

    @classmethod
    def from_wire(cls, obj: Any) -> WorkflowResponse:
        obj = _json_object(obj, "a WorkflowResponse")
        vms = go_field(obj, "virtualMachines")
        if vms is not None and not isinstance(vms, list):
            raise WireError("virtualMachines must be a list")
        last = _str(obj, "lastPreemptionTime")
        return cls(
            workflow_id=_str(obj, "workflowID"),
            run_id=_str(obj, "workflowRunID"),
            workflow_name=_str(obj, "workflowName"),
            last_preemption=parse_time(last) if last else GO_ZERO_TIME,
            virtual_machines=None if vms is None else tuple(vm_ref_from_wire(v) for v in vms),
            tag=_str(obj, "tag"),
            criticality=_criticality(obj, required=False),
            event=_event(obj, required=False),
            reply_to=_str(obj, "replyTo"),
            extra=response_extras(obj),
        )


# Fields our worker adds to the query answer and the emitted event; Go readers ignore them.
RESPONSE_EXTRAS = (
    "entity", "scope", "dryRun", "plan", "achieved", "lastRun", "ended", "paused",
)  # fmt: skip


def response_extras(obj: Mapping[str, Any]) -> ResponseExtras:
    """Our fields of a received answer, each only if it has its shape (domain/shapes.py): an
    answer from a worker of another version reads as far as it goes, and its readers take it
    typed from here on."""
    extras = known_fields({k: v for k, v in obj.items() if k in RESPONSE_EXTRAS}, ResponseExtras)
    entity = extras.get("entity")
    if entity is not None and not entity["Value"]:
        del extras["entity"]  # no reference after all
    return extras


@dataclass(frozen=True)
class Annotation:
    """The JSON written into the `com.vmware.workflows.vsphere.preemption` custom field."""

    tag: str
    forced_shutdown: bool
    criticality: Criticality
    workflow_id: str
    workflow_started: datetime
    event: CloudEventJSON
    preempted: bool = True
    # Ours, after Go's fields (Go readers ignore them): `action` (shutdown, poweroff,
    # suspend), and `resumed`/`resumedAt` once a resume powered the VM on again.
    extra: AnnotationExtras = field(default_factory=lambda: AnnotationExtras())

    def to_wire(self) -> AnnotationWire:
        return {
            "preempted": self.preempted,
            "tag": self.tag,
            "forcedShutdown": self.forced_shutdown,
            "criticality": self.criticality.value,
            "workflowID": self.workflow_id,
            "workflowStarted": format_time(self.workflow_started),
            "event": self.event,
            **self.extra,
        }

    def to_json(self) -> str:
        return go_json(self.to_wire()).decode()

    @classmethod
    def from_wire(cls, obj: Any) -> Annotation:
        obj = _json_object(obj, "an annotation")
        criticality = _criticality(obj, required=True)
        assert criticality is not None
        started = _str(obj, "workflowStarted")
        return cls(
            preempted=bool(go_field(obj, "preempted")),
            tag=_str(obj, "tag"),
            forced_shutdown=bool(go_field(obj, "forcedShutdown")),
            criticality=criticality,
            workflow_id=_str(obj, "workflowID"),
            workflow_started=parse_time(started) if started else GO_ZERO_TIME,
            event=_event(obj, required=False),
            extra=known_fields(
                {k: v for k, v in obj.items() if k in ANNOTATION_EXTRAS}, AnnotationExtras
            ),
        )


ANNOTATION_EXTRAS = ("action", "resumed", "resumedAt")


def append_fields(object_text: str, fields: Mapping[str, Any]) -> str:
    """A JSON object's text with `fields` added at its end, the rest byte for byte as it was.

    For texts whose raw parts must survive (an annotation carries the alarm event's data as
    it arrived): decoding and encoding again would not give the same bytes.
    """
    text = object_text.rstrip()
    if not text.endswith("}"):
        raise WireError("not a JSON object text")
    if not fields:
        return text
    added = go_json(dict(fields)).decode()[1:-1]
    body = text[:-1].rstrip()
    return f"{body}{',' if not body.endswith('{') else ''}{added}}}"


def preempted_event_data(annotation: Annotation, vms: Sequence[VmRef]) -> PreemptedEventData:
    """`data` of the emitted VmPreemptedEvent: the annotation's Go fields, the VMs, then ours."""
    go_fields = replace(annotation, extra=AnnotationExtras()).to_wire()
    return {
        **go_fields,
        "virtualMachines": [moref_to_wire(r) for r in vms],
        **annotation.extra,
    }


def preempted_event_id(workflow_id: str, trigger_event: Mapping[str, Any]) -> str:
    """`<workflowID>-<id of the triggering event>`, as the Go worker names it."""
    return f"{workflow_id}-{trigger_event.get('id', '')}"


def pauses_workflow_id(task_queue: str) -> str:
    """The pause registry of the workers that poll `task_queue`."""
    return PAUSES_WORKFLOW_ID_PREFIX + task_queue


def preempted_event_source(temporal_url: str, namespace: str) -> str:
    return f"{temporal_url}/{namespace}"
