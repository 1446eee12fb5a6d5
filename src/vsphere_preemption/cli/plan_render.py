"""How `preemptctl plan` shows a plan: victims in order, who stays and why, target, budgets.

Pure: a `PlanReport` (the plan with what it was made for) in, text or JSON out. The JSON is
the plan as the workflow reports it (`Plan.to_wire()`, the query's `plan`), plus what the
plan was made for: alarm, entity, scope, tag, the policy, and vCenter's notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vsphere_preemption.cli.table import table
from vsphere_preemption.domain.model import MoRef
from vsphere_preemption.domain.plan import Plan, ResourceTarget
from vsphere_preemption.domain.policy import Policy
from vsphere_preemption.domain.shapes import PlanReportWire, moref_to_wire


@dataclass(frozen=True)
class PlanReport:
    plan: Plan
    policy: Policy
    tag: str
    entity: MoRef | None  # None: the whole vCenter
    alarm: str | None = None  # for display only
    scope_vms: int | None = None  # VMs under the entity, tagged or not
    vanished: Sequence[MoRef] = ()  # tagged VMs vCenter no longer has
    notes: Sequence[str] = field(default_factory=tuple)  # what vCenter could not tell


def _figure(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _where(report: PlanReport) -> str:
    if report.entity is None:
        return "the whole vCenter (no --entity)"
    text = str(report.entity)
    if report.scope_vms is not None:
        text += f" ({report.scope_vms} VM(s) under it)"
    return text


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}%"


def _target_rows(targets: Sequence[ResourceTarget | None]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for t in targets:
        if t is None:
            continue
        reached = {True: "yes", False: "no", None: "not judged"}[t.reached]
        rows.append(
            (
                t.resource.value,
                f"{t.target_percent:g}%",
                _percent(t.before_percent),
                _percent(t.planned_after_percent),
                reached,
            )
        )
    return rows


def render_plan(report: PlanReport) -> str:
    """The plan as a person reads it; says plainly that nothing was done."""
    plan = report.plan
    lines = [
        f"Plan for {'alarm ' + repr(report.alarm) + ' on ' if report.alarm else ''}"
        f"{_where(report)}: tag {report.tag!r}, criticality {plan.criticality.value}, "
        f"scope {report.policy.scope.value}, at most {report.policy.max_vms} VM(s)",
        "Read-only: nothing was powered off or changed.",
        "",
    ]
    rows: list[tuple[str, ...]]
    if plan.victims:
        rows = [
            (
                str(i),
                v.name,
                v.ref.value,
                str(v.priority),
                _figure(v.share.cpu_mhz),
                _figure(v.share.memory_mb),
                v.basis.value,
                v.reason,
            )
            for i, v in enumerate(plan.victims, 1)
        ]
        header = ("#", "VICTIM", "MOREF", "PRIORITY", "CPU MHZ", "MEM MB", "BASIS", "REASON")
        lines += table(header, rows)
        lines.append(f"{len(plan.victims)} victim(s), in the order they would go.")
    else:
        lines.append("No victims.")
    if plan.left_out:
        lines.append("")
        rows = [
            (o.name or "-", f"{o.ref.type}:{o.ref.value}", o.reason.value, o.detail)
            for o in plan.left_out
        ]
        lines += table(("LEFT OUT", "MOREF", "REASON", "DETAIL"), rows)
    if plan.target is not None:
        lines.append("")
        target_rows = _target_rows((plan.target.cpu, plan.target.memory))
        if target_rows:
            lines += table(("TARGET", "AT MOST", "BEFORE", "PLANNED AFTER", "REACHED"), target_rows)
        lines.append(f"Target: {plan.target.note}")
    if plan.budgets:
        lines.append("")
        rows = [
            (
                b.group,
                str(b.max_unavailable),
                str(b.size),
                str(b.allowed),
                str(b.unavailable_before),
                str(b.planned),
            )
            for b in plan.budgets
        ]
        lines += table(
            ("GROUP", "MAX UNAVAILABLE", "SIZE", "ALLOWED", "OFF BY US", "PLANNED"), rows
        )
    notes = [*plan.notes, *report.notes]
    if report.vanished:
        gone = ", ".join(ref.value for ref in report.vanished)
        notes.append(f"tagged VMs vCenter no longer has: {gone}")
    if notes:
        lines.append("")
        lines += [f"Note: {note}" for note in notes]
    return "\n".join(lines)


def plan_json(report: PlanReport) -> PlanReportWire:
    """`plan --json`: what the plan was made for, then the plan as the workflow reports it."""
    return {
        "alarm": report.alarm,
        "entity": None if report.entity is None else moref_to_wire(report.entity),
        "scope": report.policy.scope.value,
        "scopeVMs": report.scope_vms,
        "tag": report.tag,
        "policy": report.policy.to_wire(),
        "plan": report.plan.to_wire(),
        "vanished": [moref_to_wire(ref) for ref in report.vanished],
        "notes": list(report.notes),
    }
