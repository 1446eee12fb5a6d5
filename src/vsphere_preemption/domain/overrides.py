"""A request's policy overrides: taken only where they make the run safer.

The worker's policy is the administrator's. A request (a signal's extra fields, `preemptctl
workflow run --policy-override/--set`) comes from whoever can signal the workflow, so it may
only tighten that policy: fewer victims, more warning, more protection, tighter budgets. A
change in the other direction is refused field by field, and the run goes on under the
administrator's value for that field; the refusals are returned for the run's record and log,
never raised. A field the administrator lists in `allowOverrides` (a path, or a parent of
paths: `groups` covers `groups.budgets.web`) is taken as the request wrote it.

The rule per field, the safer direction first:

- `scope`: `entity` (narrower) over `vcenter`;
- `maxVMs`: lower;
- `dryRun`: on;
- `priority`: the administrator's order of who goes first; no direction is safer, so no change;
- `protection`: a request's protection tags are added to the administrator's, never replace
  them; `null` or `[]` is refused;
- `groups`: budgets added or lowered; dropping them (`null`), changing their category, or
  loosening one (a budget or the default) is refused. A count and a percentage are compared
  for every group size: `0` is tighter than any percentage, `1` than any percentage above 0
  (a percentage rounds up), `0%` than any count;
- `targets.cpu`, `targets.memory`: raised (the walk stops sooner). Added only when the
  administrator set no target (a target stops the walk, none lets `maxVMs` decide); one added
  next to the administrator's may need more victims (both must be reached), so it is refused,
  as is dropping one;
- `notice.<LEVEL>`: longer; `notice.guest`: on;
- `actions.<LEVEL>`: no change: suspend needs datastore space and a shutdown holds the host for
  its grace while the alarm is raised; the trade-off is the administrator's;
- `resume.enabled`: no change (powering VMs on is as much an act as powering them off);
  `resume.batchSize` lower, `resume.interval` longer and `resume.headroom` larger (gentler on
  the recovering cluster); `resume.maxWait`: no change (how long stopped work waits for room
  before it is left off is a trade-off between that work and the cluster: the administrator's);
- `targets.basis`: no change (neither basis takes fewer VMs whatever the load);
- `loop.maxRounds` lower, `loop.settle` longer (fewer VMs go, later);
- `history`: no change (the run record is the audit trail, and its size the workflow's memory);
- `maxLifetime`: never from a request (the workflow's life spans every request it takes, so
  its bound is the administrator's; the workflow reads only theirs);
- `allowOverrides`: never from a request;
- `quiet`: windows added (more quiet is safer); dropping one of the administrator's is refused.

Standard library only: the workflow calls it (deterministic), as does `preemptctl plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from vsphere_preemption.domain.durations import format_seconds
from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.domain.policy import (
    GroupPolicy,
    LoopPolicy,
    MaxUnavailable,
    Policy,
    Protection,
    Resource,
    ResumePolicy,
    Scope,
    Targets,
)
from vsphere_preemption.domain.shapes import RefusalWire

T = TypeVar("T")

# A budget that never stops anyone: how an allowed override writes "no limit" for one group.
_NO_LIMIT = MaxUnavailable(100, percent=True)


@dataclass(frozen=True)
class Refusal:
    """One field of a request left at the administrator's value, and why."""

    field: str  # its path, as allowOverrides names it
    reason: str

    def to_wire(self) -> RefusalWire:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Overridden:
    """The policy a run goes by, and what of the request was refused."""

    policy: Policy
    refused: tuple[Refusal, ...] = ()


def apply_request(admin: Policy, overrides: Any) -> Overridden:
    """`admin` with what of `overrides` is safer, or allowed by `admin.allow_overrides`.

    The overrides are merged and validated as `Policy.with_overrides` does (a bad field raises
    its `PolicyError`, as before); then each field is judged against the administrator's.
    """
    if overrides is None:
        return Overridden(admin)
    wanted = admin.with_overrides(overrides)
    judge = _Judge(admin.allow_overrides)
    if wanted.allow_overrides != admin.allow_overrides:
        judge.refuse("allowOverrides", "is the administrator's alone")
    policy = Policy(
        scope=judge.pick(
            "scope",
            admin.scope,
            wanted.scope,
            wanted.scope is Scope.ENTITY,
            "would widen the scope to every tagged VM in vCenter",
        ),
        max_vms=judge.pick(
            "maxVMs",
            admin.max_vms,
            wanted.max_vms,
            wanted.max_vms <= admin.max_vms,
            f"would raise the cap of {admin.max_vms} to {wanted.max_vms}; a request may lower it",
        ),
        priority=judge.pick(
            "priority",
            admin.priority,
            wanted.priority,
            False,
            "would change who goes first, which is the administrator's order",
        ),
        protection=_protection(judge, admin, wanted),
        groups=_groups(judge, admin.groups, wanted.groups),
        targets=_targets(judge, admin.targets, wanted.targets),
        dry_run=judge.pick(
            "dryRun", admin.dry_run, wanted.dry_run, wanted.dry_run, "would act on a dry run"
        ),
        notice={c: _notice(judge, c, admin, wanted) for c in Criticality},
        guest_notice=judge.pick(
            "notice.guest",
            admin.guest_notice,
            wanted.guest_notice,
            wanted.guest_notice,
            "would stop telling the guests",
        ),
        stop={
            c: judge.pick(
                f"actions.{c.value}",
                admin.stop_for(c),
                wanted.stop_for(c),
                False,
                "would change how victims are stopped, which is the administrator's choice",
            )
            for c in Criticality
        },
        resume=_resume(judge, admin, wanted),
        loop=_loop(judge, admin.loop, wanted.loop),
        history=judge.pick(
            "history",
            admin.history,
            wanted.history,
            False,
            "would change how many runs are remembered (the audit trail)",
        ),
        max_lifetime_seconds=judge.pick(
            "maxLifetime",
            admin.max_lifetime_seconds,
            wanted.max_lifetime_seconds,
            False,
            "is the administrator's: it bounds the workflow's whole life, not one run",
        ),
        allow_overrides=admin.allow_overrides,
        # More quiet is safer: a request may add windows, never drop the administrator's.
        quiet=judge.pick(
            "quiet",
            admin.quiet,
            wanted.quiet,
            set(admin.quiet) <= set(wanted.quiet),
            "would drop a quiet window of the administrator's; a request may add windows",
        ),
    )
    return Overridden(policy, tuple(judge.refused))


class _Judge:
    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        self.refused: list[Refusal] = []

    def allows(self, path: str) -> bool:
        return any(path == a or path.startswith(a + ".") for a in self.allowed)

    def refuse(self, path: str, why: str) -> None:
        self.refused.append(Refusal(path, why))

    def pick(self, path: str, admin: T, wanted: T, safer: bool, why: str) -> T:
        """`wanted` if unchanged, safer or allowed; else `admin`, and the refusal noted."""
        if wanted == admin or safer or self.allows(path):
            return wanted
        self.refuse(path, why)
        return admin


def _protection(judge: _Judge, admin: Policy, wanted: Policy) -> tuple[Protection, ...]:
    if wanted.protection == admin.protection or judge.allows("protection"):
        return wanted.protection
    if admin.protection and not wanted.protection:
        judge.refuse("protection", "would remove the administrator's protection")
    # A request's tags come on top of the administrator's: a merge replaces a field, so a
    # request naming its own tag would otherwise have dropped theirs.
    return tuple(dict.fromkeys(admin.protection + wanted.protection))


def tighter(new: MaxUnavailable | None, old: MaxUnavailable | None) -> bool:
    """Whether budget `new` lets no more VMs go than `old` does, whatever the group's size."""
    if old is None:
        return True
    if new is None:
        return False
    if new.percent == old.percent:
        return new.value <= old.value
    if new.percent:  # ceil(p% of n) <= c for every n only when p is 0
        return new.value == 0
    # A count c against p%: ceil(p% of n) is at least 1 for any member when p > 0.
    return new.value == 0 or (new.value == 1 and old.value > 0)


def _groups(
    judge: _Judge, admin: GroupPolicy | None, wanted: GroupPolicy | None
) -> GroupPolicy | None:
    if admin is None or wanted == admin or judge.allows("groups"):
        return wanted  # budgets added where there were none, or allowed as written
    if wanted is None:
        judge.refuse("groups", "would drop the administrator's budgets")
        return admin
    if wanted.category != admin.category:
        if judge.allows("groups.category"):
            return wanted
        judge.refuse(
            "groups.category",
            f"would replace the budgets of {admin.category!r} with those of {wanted.category!r}",
        )
        return admin
    default = _budget_pick(
        judge, "groups.default", admin.default, wanted.default, "the default budget "
    )
    budgets: dict[str, MaxUnavailable] = {}
    for group in dict.fromkeys([*admin.budgets, *wanted.budgets]):
        path = f"groups.budgets.{group}"
        chosen = _budget_pick(judge, path, admin.budget(group), wanted.budget(group), "")
        if chosen != default:
            budgets[group] = _NO_LIMIT if chosen is None else chosen
    return GroupPolicy(admin.category, budgets, default)


def _budget_pick(
    judge: _Judge,
    path: str,
    before: MaxUnavailable | None,
    after: MaxUnavailable | None,
    what: str,
) -> MaxUnavailable | None:
    """A request's budget where it is tighter (or allowed); else the administrator's."""
    if tighter(after, before) or judge.allows(path):
        return after
    if after != before:
        judge.refuse(path, f"would loosen {what}{_budget(before)} to {_budget(after)}")
    return before


def _budget(b: MaxUnavailable | None) -> str:
    return "no limit" if b is None else f"maxUnavailable {b}"


def _targets(judge: _Judge, admin: Targets, wanted: Targets) -> Targets:
    chosen: dict[Resource, float | None] = {}
    for r in Resource:
        before, after = admin.percent(r), wanted.percent(r)
        path = f"targets.{r.value}"
        chosen[r] = before
        if after == before:
            continue
        if after is None:
            safer, why = False, f"would drop the {r} target of {before:g}%"
        elif before is None:
            # A target where the administrator set none stops the walk sooner; next to one
            # of theirs it is one more to reach, which may take more VMs.
            safer = not admin.any
            why = f"would add a {r} target next to the administrator's, which may take more VMs"
        else:
            safer = after >= before
            why = f"would lower the {r} target of {before:g}% to {after:g}% (more VMs go)"
        chosen[r] = judge.pick(path, before, after, safer, why)
    basis = judge.pick(
        "targets.basis",
        admin.basis,
        wanted.basis,
        False,
        f"would judge the targets by {wanted.basis.value} instead of {admin.basis.value}: "
        "neither counts fewer VMs whatever the load",
    )
    return Targets(cpu=chosen[Resource.CPU], memory=chosen[Resource.MEMORY], basis=basis)


def _loop(judge: _Judge, admin: LoopPolicy, wanted: LoopPolicy) -> LoopPolicy:
    return LoopPolicy(
        settle_seconds=judge.pick(
            "loop.settle",
            admin.settle_seconds,
            wanted.settle_seconds,
            wanted.settle_seconds >= admin.settle_seconds,
            f"would shorten the settle of {format_seconds(admin.settle_seconds)} "
            f"to {format_seconds(wanted.settle_seconds)}",
        ),
        max_rounds=judge.pick(
            "loop.maxRounds",
            admin.max_rounds,
            wanted.max_rounds,
            wanted.max_rounds <= admin.max_rounds,
            f"would allow {wanted.max_rounds} rounds, more than {admin.max_rounds}",
        ),
    )


def _notice(judge: _Judge, level: Criticality, admin: Policy, wanted: Policy) -> float:
    before, after = admin.notice_for(level), wanted.notice_for(level)
    return judge.pick(
        f"notice.{level.value}",
        before,
        after,
        after >= before,
        f"would shorten the notice of {format_seconds(before)} to {format_seconds(after)}",
    )


def _resume(judge: _Judge, admin: Policy, wanted: Policy) -> ResumePolicy:
    a, w = admin.resume, wanted.resume
    return replace(
        a,
        enabled=judge.pick(
            "resume.enabled",
            a.enabled,
            w.enabled,
            False,
            f"would turn resume {'on' if w.enabled else 'off'}, which is the administrator's",
        ),
        batch_size=judge.pick(
            "resume.batchSize",
            a.batch_size,
            w.batch_size,
            w.batch_size <= a.batch_size,
            f"would resume {w.batch_size} VMs at once, more than {a.batch_size}",
        ),
        interval_seconds=judge.pick(
            "resume.interval",
            a.interval_seconds,
            w.interval_seconds,
            w.interval_seconds >= a.interval_seconds,
            f"would shorten the pause between batches of {format_seconds(a.interval_seconds)} "
            f"to {format_seconds(w.interval_seconds)}",
        ),
        headroom_percent=judge.pick(
            "resume.headroom",
            a.headroom_percent,
            w.headroom_percent,
            w.headroom_percent >= a.headroom_percent,
            f"would narrow the resume's headroom of {a.headroom_percent:g} points "
            f"to {w.headroom_percent:g}",
        ),
        max_wait_seconds=judge.pick(
            "resume.maxWait",
            a.max_wait_seconds,
            w.max_wait_seconds,
            False,
            "would change how long stopped VMs wait for room, which is the administrator's",
        ),
    )
