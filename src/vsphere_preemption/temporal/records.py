"""What PreemptVMsWorkflow remembers, and how it carries it across continue-as-new; and a
run's plan and fields as its later steps work from them (`RunPlan`, `RunFields`).

Deterministic values only (the workflow builds them from its history); standard library and
our own pure modules, so the workflow sandbox imports this once (a dataclass defined in the
workflow module itself was made again for every new workflow, ~0.5 ms each). A workflow that
lives as long as its alarm continues as new before its history grows large: the memory goes
into the new run's single argument, one JSON text (`Memory.to_json` / `Memory.from_json`),
written with Go's encoder so the alarm event's raw data survives the trip byte for byte.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from vsphere_preemption.domain.model import MoRef, Resources, VmMark, VmRef
from vsphere_preemption.domain.pauses import Hold
from vsphere_preemption.domain.plan import Plan
from vsphere_preemption.domain.policy import (
    Policy,
    ResumePolicy,
    Scope,
    Targets,
    UseBasis,
    policy_from_mapping,
)
from vsphere_preemption.domain.shapes import (
    AchievedWire,
    NoticeEntry,
    PlannedExtras,
    PlanWire,
    RunRecord,
    VmIssueWire,
    moref_to_wire,
)
from vsphere_preemption.temporal.contracts import PreemptionPolicy
from vsphere_preemption.wire import (
    WorkflowRequest,
    format_time,
    go_json,
    parse_time,
    vm_ref_from_wire,
)


@dataclass(frozen=True)
class LastRun:
    """A run that acted: what Go's query fields answer and where the cooldown counts from."""

    request: WorkflowRequest
    vms: tuple[VmRef, ...]
    at: datetime


@dataclass(frozen=True)
class Planned:
    """The latest run that planned (dry runs and runs with nothing to do included)."""

    entity: MoRef | None
    scope: Scope
    dry_run: bool
    plan: PlanWire | None  # Plan.to_wire(); None when planning failed
    notes: tuple[str, ...] = ()
    error: str = ""  # why planning failed: said in the state, not only in a log
    achieved: AchievedWire | None = None

    def to_wire(self) -> PlannedExtras:
        """Our extras of the query answer and the event (wire.RESPONSE_EXTRAS)."""
        extras: PlannedExtras = {
            "entity": None if self.entity is None else moref_to_wire(self.entity),
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
        return [*(self.plan["notes"] if self.plan is not None else []), *self.notes]

    def carry(self) -> dict[str, Any]:
        return {
            "entity": None if self.entity is None else moref_to_wire(self.entity),
            "scope": self.scope.value,
            "dryRun": self.dry_run,
            "plan": self.plan,
            "notes": list(self.notes),
            "error": self.error,
            "achieved": self.achieved,
        }

    @classmethod
    def from_carried(cls, obj: dict[str, Any]) -> Planned:
        entity = obj.get("entity")
        return cls(
            entity=None if entity is None else vm_ref_from_wire(entity),
            scope=Scope(obj["scope"]),
            dry_run=bool(obj["dryRun"]),
            plan=obj.get("plan"),
            notes=tuple(obj.get("notes", ())),
            error=obj.get("error", ""),
            achieved=obj.get("achieved"),
        )


@dataclass(frozen=True)
class Stopped:
    """A VM this workflow stopped and has not resumed: enough to resume it, or not."""

    mark: VmMark
    name: str
    priority: int  # from its plan: a resume powers the most important on first
    annotation: str  # the annotation as written on it (JSON text, raw event data kept)
    guest_notice: bool = False  # a notice stands in its guestinfo: cleared once resumed
    # What stopping it freed, as its plan counted it (resume-headroom): what powering it on
    # takes back. None when stopped before the patch, or by a run without a target.
    share: Resources | None = None

    def carry(self) -> dict[str, Any]:
        m = self.mark
        carried: dict[str, Any] = {
            "ref": moref_to_wire(m.ref),
            "changeVersion": m.change_version,
            "host": m.host,
            "resourcePool": m.resource_pool,
            "powerState": m.power_state,
            "name": self.name,
            "priority": self.priority,
            "annotation": self.annotation,
            "guestNotice": self.guest_notice,
        }
        if self.share is not None:
            carried["share"] = {"cpuMHz": self.share.cpu_mhz, "memoryMB": self.share.memory_mb}
        return carried

    @classmethod
    def from_carried(cls, obj: dict[str, Any]) -> Stopped:
        mark = VmMark(
            ref=vm_ref_from_wire(obj["ref"]),
            change_version=obj["changeVersion"],
            host=obj.get("host"),
            resource_pool=obj.get("resourcePool"),
            power_state=obj["powerState"],
        )
        share = obj.get("share")
        return cls(
            mark,
            obj["name"],
            int(obj["priority"]),
            obj["annotation"],
            bool(obj.get("guestNotice", False)),
            None if share is None else Resources(share.get("cpuMHz"), share.get("memoryMB")),
        )


@dataclass(frozen=True)
class Room:
    """What a resume measures its room against (resume-headroom): the alarmed entity and the
    targets of the latest run that acted on it."""

    entity: MoRef
    targets: Targets

    def carry(self) -> dict[str, Any]:
        t = self.targets
        return {
            "entity": moref_to_wire(self.entity),
            "cpu": t.cpu,
            "memory": t.memory,
            "basis": t.basis.value,
        }

    @classmethod
    def from_carried(cls, obj: dict[str, Any]) -> Room:
        targets = Targets(
            cpu=obj.get("cpu"), memory=obj.get("memory"), basis=UseBasis(obj["basis"])
        )
        return cls(vm_ref_from_wire(obj["entity"]), targets)


@dataclass
class Life:
    """How long the workflow may live (alarm-lifetime): carried across continue-as-new, since
    the bound counts from the first run's start and Temporal's own timeouts are not used."""

    born: datetime | None = None  # the first run's start
    max_seconds: float | None = None  # the administrator's maxLifetime, as last read
    reply_to: str = ""  # where the expiry is announced: the latest request's replyTo

    def to_wire(self) -> dict[str, Any]:
        return {
            "born": None if self.born is None else format_time(self.born),
            "maxSeconds": self.max_seconds,
            "replyTo": self.reply_to,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Life:
        if not isinstance(obj, dict):
            return cls()  # carried by a run from before alarm-lifetime
        born = obj.get("born")
        limit = obj.get("maxSeconds")
        return cls(
            born=None if born is None else parse_time(born),
            max_seconds=None if limit is None else float(limit),
            reply_to=str(obj.get("replyTo", "")),
        )


def resume_order(stopped: list[Stopped]) -> list[Stopped]:
    """Highest priority first (the most important work back first), then by name."""
    return sorted(stopped, key=lambda s: (-s.priority, s.name.casefold(), s.mark.ref.value))


@dataclass
class Memory:
    """Everything a run of the workflow hands to the next when it continues as new."""

    last: LastRun | None = None
    planned: Planned | None = None
    runs: deque[RunRecord] = field(default_factory=deque)  # newest last, bounded
    run_number: int = 0
    stopped: dict[str, Stopped] = field(default_factory=dict)  # by moref value
    resume: ResumePolicy | None = None  # the last acting run's, for when the alarm lowers
    room: Room | None = None  # ... and what its resume measures room against, if anything
    history_keep: int = 20
    pending: list[WorkflowRequest] = field(default_factory=list)
    max_concurrency: int = 5  # the worker's PREEMPTION_MAX_CONCURRENCY, for notice and resume
    life: Life = field(default_factory=Life)

    def remember(self, record: RunRecord, keep: int) -> None:
        self.history_keep = keep
        self.runs.append(record)
        while len(self.runs) > keep:
            self.runs.popleft()

    def to_json(self) -> str:
        last = self.last
        obj: dict[str, Any] = {
            "last": None
            if last is None
            else {
                # a JSON text inside the JSON: its event data stays as it arrived
                "request": go_json(last.request.to_wire()).decode(),
                "vms": [moref_to_wire(v) for v in last.vms],
                "at": format_time(last.at),
            },
            "planned": None if self.planned is None else self.planned.carry(),
            "runs": list(self.runs),
            "runNumber": self.run_number,
            "stopped": [s.carry() for s in self.stopped.values()],
            "resume": None if self.resume is None else self.resume.to_wire(),
            "historyKeep": self.history_keep,
            "maxConcurrency": self.max_concurrency,
            "pending": [go_json(r.to_wire()).decode() for r in self.pending],
            "life": self.life.to_wire(),
        }
        if self.room is not None:  # only then: a memory carried before the patch is unchanged
            obj["room"] = self.room.carry()
        return go_json(obj).decode()

    @classmethod
    def from_json(cls, text: str) -> Memory:
        obj = json.loads(text)
        last = obj.get("last")
        memory = cls(
            planned=None if obj["planned"] is None else Planned.from_carried(obj["planned"]),
            runs=deque(obj["runs"]),
            run_number=int(obj["runNumber"]),
            stopped={s["ref"]["Value"]: Stopped.from_carried(s) for s in obj.get("stopped", [])},
            history_keep=int(obj.get("historyKeep", 20)),
            max_concurrency=int(obj.get("maxConcurrency", 5)),
            life=Life.from_wire(obj.get("life")),
        )
        if obj.get("resume") is not None:
            memory.resume = policy_from_mapping({"resume": obj["resume"]}).resume
        if obj.get("room") is not None:
            memory.room = Room.from_carried(obj["room"])
        if last is not None:
            memory.last = LastRun(
                request=WorkflowRequest.from_json(last["request"], strict=False),
                vms=tuple(vm_ref_from_wire(v) for v in last["vms"]),
                at=parse_time(last["at"]),
            )
        memory.pending = [
            WorkflowRequest.from_json(text, strict=False) for text in obj.get("pending", [])
        ]
        return memory


T = TypeVar("T")


@dataclass(frozen=True)
class RunPlan:
    """A run once planned: what its later steps (dry run, pauses, notice, act) work from."""

    request: WorkflowRequest
    policy: PreemptionPolicy  # the worker's, as read for this run
    effective: Policy  # the administrator's, with the request's overrides taken
    entity: MoRef | None  # the alarmed entity the run plans on; None: the whole vCenter
    chosen: Plan
    dry_run: bool
    # What held the run when the pauses were read with the plan (pauses-in-plan): the hold
    # (None: nothing) and the registry's version read; None when they were not read so.
    read_with_plan: tuple[Hold | None, int | None] | None = None


@dataclass(frozen=True)
class RunFields:
    """A run's fields that _notice and _power_off write, as they stood before a later round
    (the same objects: what the round wrote is what is not)."""

    notice: NoticeEntry | None
    action: str | None
    stopped: list[str] | None
    failed: list[VmIssueWire] | None
    forced: list[str] | None

    @classmethod
    def of(cls, record: RunRecord) -> RunFields:
        return cls(
            record.get("notice"),
            record.get("action"),
            record.get("stopped"),
            record.get("failed"),
            record.get("forced"),
        )


def joined(was: list[T] | None, now: list[T] | None) -> list[T]:
    """A run's list after a later round: what it had, then what the round wrote, if it did."""
    return list(was or []) + (list(now or []) if now is not was else [])
