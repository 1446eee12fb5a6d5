"""The JSON shapes of our own fields, declared once, for the writer and every reader.

`TypedDict`s, so they are types only: at run time each is the plain dict its writer builds, and
the JSON bytes are those of the writer's literal, in its order (`wire.go_json`). Who writes and
who reads each:

- `MoRefWire`: `moref_to_wire` writes every reference we send; `moref_from_wire` reads them.
- `PlanWire`: `domain.plan.Plan.to_wire`, in the PlanPreemption activity; read by the workflow
  (`Plan.from_wire`), `temporal.records.Planned`, `cli.workflow_render`, `cli.plan_render`
  (`plan --json`) and the demo.
- `PlanReportWire`: `cli.plan_render.plan_json`, for a script reading `preemptctl plan --json`.
- `AchievedWire`: `domain.achieved.planned_vs_achieved`; the workflow (is the loop's target
  met), the query answer and the events.
- `HoldWire`: `domain.pauses.Hold.to_wire`; a record's `holds`, the answer's `paused`, the
  held event.
- `RunRecord`: the workflow, one per run (the `history` query, the result's `history`); read by
  `temporal.run_metrics.record_run`, `cli.history_render` and the answer's `lastRun`.
- `ResponseExtras`: `temporal.records.Planned.to_wire` and the workflow's `current_state`;
  parsed where it arrives by `wire.WorkflowResponse.from_wire`, then read by
  `cli.workflow_render` and the demo.
- the events' data (`EventData`): the workflow and `wire.preempted_event_data`; read by the
  sink a request's `replyTo` names.

A reader of JSON that comes from outside (a query answer or a history from a worker of
another version, a record written by hand) checks it once, where it arrives, with `conforms` or
`known_fields`, and reads the typed value from then on; inside one worker, writer and reader
share these types and need no check. The contract in prose: docs/wire.md.

No `from __future__ import annotations` here: the annotations are evaluated when each class is
made, so that `__required_keys__` knows `Required`/`NotRequired` (Python 3.11 cannot tell them
in annotations left as strings), which `conforms` and Temporal's data converter both read.
"""

import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, NotRequired, Required, TypedDict, TypeVar, final

from vsphere_preemption.domain.gojson import field as go_field
from vsphere_preemption.domain.model import MoRef

# -- a managed object reference ---------------------------------------------------------------


class MoRefWire(TypedDict):
    """govmomi's ManagedObjectReference as the Go worker marshals it."""

    Type: str
    Value: str


def moref_to_wire(ref: MoRef) -> MoRefWire:
    """`{"Type","Value"}`: every reference we write (plans, requests, answers, events, records)."""
    return {"Type": ref.type, "Value": ref.value}


def moref_from_wire(obj: object) -> MoRef:
    """Read `{"Type","Value"}` (older govmomi) and `{"type","value"}` (newer) alike, as Go's
    decoder matches names; no `Type`: a VirtualMachine. ValueError for anything else."""
    if not isinstance(obj, Mapping):
        raise ValueError("a VM reference must be an object with Type and Value")
    value = _ref_text(obj, "Value")
    if not value:
        raise ValueError("a VM reference needs a Value")
    return MoRef(value=value, type=_ref_text(obj, "Type") or "VirtualMachine")


def _ref_text(obj: Mapping[str, Any], name: str) -> str:
    value = go_field(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return value


# -- the plan (domain/plan.py, Plan.to_wire) ----------------------------------------------------


class SharesWire(TypedDict):
    """What powering a victim off frees (None: no figure)."""

    cpuMhz: float | None
    memoryMb: float | None


class VictimWire(TypedDict):
    ref: MoRefWire
    name: str
    priority: int
    reason: str
    share: SharesWire
    basis: str  # domain.plan.Basis: measured, allocation, mixed, none


class LeftOutWire(TypedDict):
    ref: MoRefWire
    name: str | None  # None for an object that is not a VM
    reason: str  # domain.plan.LeaveReason
    detail: str


class ResourceTargetWire(TypedDict):
    targetPercent: float
    capacity: float | None
    before: float | None
    plannedAfter: float | None
    reached: bool | None  # None: not judged, for want of figures


class TargetWire(TypedDict):
    reached: bool
    note: str
    cpu: ResourceTargetWire | None
    memory: ResourceTargetWire | None


class BudgetWire(TypedDict):
    group: str
    maxUnavailable: int | str  # 2, or "25%"
    size: int
    allowed: int
    unavailableBefore: int
    planned: int


@final  # final: `"victims" in plan` tells a plan from a failed one
class PlanWire(TypedDict):
    """A plan, as the PlanPreemption activity hands it to the workflow and the query shows it."""

    criticality: str
    victims: list[VictimWire]
    leftOut: list[LeftOutWire]
    target: TargetWire | None  # None: the policy sets no target
    budgets: list[BudgetWire]
    notes: list[str]


@final
class PlanFailedWire(TypedDict):
    """The query's `plan` when planning failed: why, in the state, not only in a log."""

    error: str
    notes: list[str]


class PlanReportWire(TypedDict):
    """`preemptctl plan --json` (cli/plan_render.py): what the plan was made for, then the
    plan as the workflow reports it."""

    alarm: str | None
    entity: MoRefWire | None  # None: the whole vCenter
    scope: str
    scopeVMs: int | None
    tag: str
    policy: dict[str, Any]  # domain.policy.Policy.to_wire()
    plan: PlanWire
    vanished: list[MoRefWire]
    notes: list[str]


# -- what a round achieved (domain/achieved.py) -------------------------------------------------


class ResourceAchievedWire(TypedDict):
    targetPercent: float
    capacity: float | None
    before: float | None
    beforePercent: float | None
    plannedAfter: float | None
    plannedAfterPercent: float | None
    achievedAfter: float | None
    achievedAfterPercent: float | None
    reached: bool | None


class AchievedWire(TypedDict, total=False):
    """Per targeted resource and whether all reached; or only a `note` saying why not measured."""

    note: str
    cpu: ResourceAchievedWire
    memory: ResourceAchievedWire
    reached: bool


# -- a hold by a pause or a quiet window (domain/pauses.py) -------------------------------------


class HoldWire(TypedDict):
    until: str | None  # None: until someone lifts the pause
    reason: str
    source: str
    status: str  # `paused until <when>: <reason>`


# -- the run record: one per run, the `history` query's entries ---------------------------------


class VmIssueWire(TypedDict):
    """A VM a step failed on or left alone (by moref value), and why."""

    vm: str
    reason: str


class RefusalWire(TypedDict):
    """A request's policy override refused (domain/overrides.py)."""

    field: str
    reason: str


class NoticeEntry(TypedDict):
    seconds: float
    notBefore: str


class LoopEntry(TypedDict):
    """How a preempt-until-relieved loop ended."""

    rounds: int
    maxRounds: int
    stopped: str  # target met, alarm lowered, no candidates, maxRounds
    detail: NotRequired[str]


class HoldEntry(HoldWire):
    """A hold in a record's `holds` (and the answer's `paused` while it lasts)."""

    heldAt: str
    releasedAt: NotRequired[str]
    released: NotRequired[str]  # "pause ended" or "alarm lowered"


class RoomEntry(TypedDict):
    """What a resume measured its room against (resume-headroom)."""

    entity: str  # moref value
    targets: dict[str, float]  # cpu, memory: percent
    basis: str
    headroom: float
    maxWait: str
    checks: int


class StayOffEntry(TypedDict):
    vm: str  # moref value
    name: str
    reason: str


class RoundEntry(TypedDict, total=False):
    """One round of a preempt-until-relieved run (the record's `rounds`)."""

    round: Required[int]
    startedAt: str
    victims: list[str]
    notice: NoticeEntry
    action: str
    stopped: list[str]
    failed: list[VmIssueWire]
    forced: list[str]
    achieved: AchievedWire
    outcome: str
    error: str
    endedAt: str


class RunRecord(TypedDict, total=False):
    """One run, as the workflow records it and the `history` query answers it.

    The workflow writes `run`, `kind` and `startedAt` first in every record, and the others as
    the run goes (docs/wire.md lists which apply to which kind); every key is optional to a
    reader, which may hold a record of another version.
    """

    run: int
    kind: str  # preempt, resume, expire
    startedAt: str
    criticality: str
    eventID: str
    tag: str
    dryRun: bool
    entity: MoRefWire | None  # None: the whole vCenter
    refusedOverrides: list[RefusalWire]
    victims: list[str]  # moref values, in plan order
    leftOut: int
    holds: list[HoldEntry]
    notice: NoticeEntry
    action: str
    stopped: list[str]
    failed: list[VmIssueWire]
    forced: list[str]
    rounds: list[RoundEntry]
    loop: LoopEntry
    room: RoomEntry
    resumed: list[str]
    skipped: list[VmIssueWire]
    stayOff: list[StayOffEntry]
    notResumed: list[str]
    outcome: str
    reason: str
    endedAt: str


class LatestRunWire(TypedDict, total=False):
    """The newest record's summary, the query answer's `lastRun` (temporal/workflow.py's
    LATEST_RUN_FIELDS: the keys of these a record has)."""

    run: int
    kind: str
    outcome: str
    startedAt: str
    endedAt: str
    reason: str
    loop: LoopEntry


# -- the query answer (and the workflow's result) -----------------------------------------------


class EndedWire(TypedDict):
    """How a workflow ended by itself (alarm-lifetime)."""

    reason: str  # maxLifetime
    at: str
    startedAt: str
    maxLifetime: str
    notResumed: list[MoRefWire]


class PlannedExtras(TypedDict, total=False):
    """The latest plan's fields (temporal.records.Planned.to_wire): in the query answer and
    in every event of the run that made it."""

    entity: MoRefWire | None
    scope: str  # entity or vcenter
    dryRun: bool
    plan: PlanWire | PlanFailedWire | None
    achieved: AchievedWire


class ResponseExtras(PlannedExtras, total=False):
    """Ours, after Go's fields in the `current_state` answer (wire.RESPONSE_EXTRAS); each only
    when there is something to say. `lastRun` and `paused` are the query's only."""

    lastRun: LatestRunWire
    ended: EndedWire
    paused: HoldEntry


class ResponseWire(ResponseExtras):
    """The `current_state` answer: the Go worker's fields, then ours."""

    workflowID: str
    workflowRunID: str
    workflowName: str
    lastPreemptionTime: str
    virtualMachines: list[MoRefWire] | None  # null before a run acted, as Go's
    tag: str
    criticality: str
    event: dict[str, Any]  # the CloudEvent, its JSON data as it arrived
    replyTo: str


class ResultWire(ResponseWire, total=False):
    """The workflow's result: the answer, and the runs it remembers (after act-with-care)."""

    history: list[RunRecord]


# -- the events' data (docs/wire.md, "Acting with care") ----------------------------------------


class AnnotationExtras(TypedDict, total=False):
    """Ours, after Go's fields in a VM's annotation."""

    action: str  # shutdown, poweroff, suspend
    resumed: bool
    resumedAt: str


class AnnotationWire(AnnotationExtras):
    """The custom attribute's value on a stopped VM, Go's fields first."""

    preempted: bool
    tag: str
    forcedShutdown: bool
    criticality: str
    workflowID: str
    workflowStarted: str
    event: dict[str, Any]


class RoundExtras(TypedDict, total=False):
    """A VmPreemptedEvent's round of a preempt-until-relieved run."""

    round: int
    maxRounds: int
    loopStopped: str


class PreemptedEventData(AnnotationWire):
    """VmPreemptedEvent as the Go worker sends it (wire.preempted_event_data): the annotation's
    Go fields, `virtualMachines`, then the annotation's own extras."""

    virtualMachines: list[MoRefWire]


class PreemptedRoundEventData(PreemptedEventData, PlannedExtras, RoundExtras):
    """VmPreemptedEvent of a run by plan: then the plan, and the round of a loop."""


class EventAbout(TypedDict):
    """Which workflow and request an event of ours is about."""

    workflowID: str
    tag: str
    criticality: str
    event: dict[str, Any]


class PlannedEventData(EventAbout, PlannedExtras):
    """VmPreemptionPlannedEvent: a dry run's plan."""


class NoticeData(TypedDict):
    action: str
    notBefore: str
    noticeSeconds: float
    virtualMachines: list[MoRefWire]


class ScheduledEventData(EventAbout, NoticeData, PlannedExtras):
    """VmPreemptionScheduledEvent: a notice is about to run."""


class CancelledEventData(EventAbout, NoticeData):
    """VmPreemptionCancelledEvent: the alarm lowered during the notice."""

    reason: str


class HeldEventData(EventAbout, HoldWire, PlannedExtras):
    """VmPreemptionHeldEvent: a pause or a quiet window holds the run."""


class ReleasedEventData(EventAbout):
    """VmPreemptionReleasedEvent: the hold ended, with the alarm raised or not."""

    heldAt: str
    releasedAt: str
    proceeds: bool
    reason: str


class StayOffWire(TypedDict):
    vm: MoRefWire
    name: str
    reason: str


class ResumedEventData(TypedDict):
    """VmResumedEvent: one batch of a resume; the last one of a resume that gave up names
    the VMs that stay off, and why."""

    workflowID: str
    batch: int
    virtualMachines: list[MoRefWire]
    skipped: list[VmIssueWire]
    stayOff: NotRequired[list[StayOffWire]]
    reason: NotRequired[str]


class ExpiredEventData(TypedDict):
    """VmPreemptionExpiredEvent: the workflow reached its maxLifetime."""

    workflowID: str
    startedAt: str
    maxLifetime: str
    expiredAt: str
    virtualMachines: list[MoRefWire]
    reason: str


EventData = (
    PreemptedEventData
    | PreemptedRoundEventData
    | PlannedEventData
    | ScheduledEventData
    | CancelledEventData
    | HeldEventData
    | ReleasedEventData
    | ResumedEventData
    | ExpiredEventData
)


# -- reading JSON that comes from outside -------------------------------------------------------

T = TypeVar("T")


@functools.cache
def _hints(shape: type) -> dict[str, Any]:
    return typing.get_type_hints(shape)


def conforms(value: object, hint: Any) -> bool:
    """Whether a decoded JSON value has the shape `hint` declares (a TypedDict of these, a
    list, a dict of str keys, a union, a Literal, str, int, float, bool, None, Any).

    As JSON reads: a float may be written as an integer, a bool is no number; a TypedDict's
    required keys must be there and every key of its that is there must conform; keys it does
    not declare are a newer writer's and let be.
    """
    if hint is Any or hint is object:
        return True
    scalar = _SCALARS.get(type(None) if hint is None else hint)
    if scalar is not None:
        return scalar(value)
    if typing.is_typeddict(hint):
        return isinstance(value, Mapping) and _conforms_typed(value, hint)
    return _conforms_generic(value, hint)


_SCALARS: dict[object, Callable[[object], bool]] = {
    type(None): lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _conforms_generic(value: object, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(conforms(value, arg) for arg in args)
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if origin is list:
        return isinstance(value, list) and all(conforms(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and conforms(v, args[1]) for k, v in value.items()
        )
    raise TypeError(f"conforms cannot check {hint!r}")


def _conforms_typed(value: Mapping[Any, Any], shape: type) -> bool:
    hints = _hints(shape)
    required: frozenset[str] = getattr(shape, "__required_keys__", frozenset())
    return all(key in value for key in required) and all(
        conforms(value[key], hint) for key, hint in hints.items() if key in value
    )


def parsed(value: object, shape: type[T]) -> T | None:
    """`value` as the `shape` it conforms to, or None."""
    return typing.cast(T, value) if conforms(value, shape) else None


def known_fields(obj: Mapping[str, object], shape: type[T]) -> T:
    """The fields of `obj` that `shape` (a TypedDict without required keys) declares and that
    conform to it, in `obj`'s order: a field another version wrote in another shape reads as
    absent, not as an error."""
    if getattr(shape, "__required_keys__", None):
        raise TypeError(f"{shape.__name__} has required keys: use parsed()")
    hints = _hints(typing.cast(type, shape))
    kept = {k: v for k, v in obj.items() if k in hints and conforms(v, hints[k])}
    return typing.cast(T, kept)
