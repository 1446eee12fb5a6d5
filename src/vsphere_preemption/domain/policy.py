"""The preemption policy: which VMs may go, in what order, how many, and how far to go.

One typed value, read by the worker from a file and its environment (`settings.py` does the
reading), optionally overridden per request by extra fields of the signal. Standard library
only: the deterministic workflow and the plan use it as they use every domain value.

The spelling people write (YAML or JSON, camelCase keys) is `policy_from_mapping`'s input and
`Policy.to_wire`'s output, so a policy survives a round trip through history unchanged. Every
bad field is named in one `PolicyError`, by its path (`priority.levels.low`), never by guess.

Defaults keep today's behaviour but for scope: at most 10 VMs, every VM the same priority, no
protection, no budgets, no capacity target; only the VMs under the alarmed entity are
candidates (today: every tagged VM in vCenter, `scope: vcenter`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vsphere_preemption.domain.durations import format_seconds, parse_seconds
from vsphere_preemption.domain.model import Criticality, StopAction
from vsphere_preemption.domain.pauses import QuietWindow, quiet_windows


class PolicyError(ValueError):
    """A policy that cannot be used; the message names every bad field by its path."""

    def __init__(self, problems: list[str], what: str = "policy") -> None:
        self.problems = tuple(problems)
        super().__init__(f"invalid {what}: " + "; ".join(problems))


class Scope(StrEnum):
    ENTITY = "entity"  # only VMs under the alarmed cluster or host
    VCENTER = "vcenter"  # every tagged VM vCenter knows (the Go worker's behaviour)


class Resource(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"


class UseBasis(StrEnum):
    """What "the entity's use" means when a target is judged."""

    # vCenter's measured figures (hosts' quick stats): what the alarm itself watches, but
    # they lag a power-off by a statistics interval or more (and never move on vcsim).
    USAGE = "usage"
    # The configured vCPUs x core MHz and memory of the powered-on VMs under the entity, as a
    # Kubernetes scheduler counts requests: it falls the moment a VM stops, whatever its load.
    ALLOCATION = "allocation"


@dataclass(frozen=True)
class PriorityPolicy:
    """A VM's priority is the level of its tag in `category`; lowest goes first."""

    category: str | None = None  # None: every VM has the default priority
    levels: Mapping[str, int] = field(default_factory=dict)
    default: int = 0  # no tag of the category, or a tag with no level


@dataclass(frozen=True)
class Protection:
    """A VM carrying this tag is never a victim, whatever else it carries."""

    category: str
    tag: str


@dataclass(frozen=True)
class MaxUnavailable:
    """How many VMs of a group may be off at once: a count, or a percentage of the group."""

    value: int  # a count, or the percentage
    percent: bool = False

    def allowed(self, group_size: int) -> int:
        # A percentage rounds up, as a Kubernetes PodDisruptionBudget rounds its maxUnavailable:
        # people who know PDBs read budgets that way, and a group with a non-zero budget can
        # always lose one VM (25 % of 3 is 1). `maxUnavailable: 0` is how a group says never.
        return -(-group_size * self.value // 100) if self.percent else self.value

    def to_wire(self) -> int | str:
        return f"{self.value}%" if self.percent else self.value

    def __str__(self) -> str:
        return str(self.to_wire())


@dataclass(frozen=True)
class GroupPolicy:
    """A VM's groups are its tags in `category`; each group's budget is never exceeded."""

    category: str
    budgets: Mapping[str, MaxUnavailable] = field(default_factory=dict)
    default: MaxUnavailable | None = None  # groups not in `budgets`; None: no limit

    def budget(self, group: str) -> MaxUnavailable | None:
        return self.budgets.get(group, self.default)


@dataclass(frozen=True)
class Targets:
    """Bring the entity's use to at most this percentage of its capacity, per resource."""

    cpu: float | None = None
    memory: float | None = None
    basis: UseBasis = UseBasis.USAGE

    def percent(self, resource: Resource) -> float | None:
        return self.cpu if resource is Resource.CPU else self.memory

    @property
    def any(self) -> bool:
        return self.cpu is not None or self.memory is not None


@dataclass(frozen=True)
class StopPolicy:
    """What a criticality does to its victims; `grace` only for a guest shutdown."""

    action: StopAction
    grace_seconds: float | None = None  # None: the worker's PREEMPTION_SOFT_SHUTDOWN_GRACE

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"action": self.action.value}
        if self.grace_seconds is not None:
            wire["grace"] = format_seconds(self.grace_seconds)
        return wire


@dataclass(frozen=True)
class ResumePolicy:
    """When the alarm lowers, power the VMs this workflow stopped on again, in batches.

    With a target in the policy, a batch takes only the VMs whose use keeps the entity at or
    below the target less `headroom_percent` (percentage points): powering everything on at
    once could raise the very alarm that just lowered. The rest are checked again every
    `interval_seconds`, for up to `max_wait_seconds`, then left off, with the reason.
    """

    enabled: bool = False
    batch_size: int = 5
    interval_seconds: float = 30.0
    headroom_percent: float = 10.0
    max_wait_seconds: float = 3600.0

    def to_wire(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "batchSize": self.batch_size,
            "interval": format_seconds(self.interval_seconds),
            "headroom": self.headroom_percent,
            "maxWait": format_seconds(self.max_wait_seconds),
        }


@dataclass(frozen=True)
class LoopPolicy:
    """Preempt until relieved: after a round acted, wait `settle`, then plan and act again
    while the alarm stays raised and a target is not met, `max_rounds` rounds in all. One
    round (the default) is one plan acted on, as before the loop existed."""

    settle_seconds: float = 60.0
    max_rounds: int = 1

    @property
    def enabled(self) -> bool:
        return self.max_rounds > 1

    def to_wire(self) -> dict[str, Any]:
        return {"settle": format_seconds(self.settle_seconds), "maxRounds": self.max_rounds}


# Cloud spot capacity gives two minutes (AWS) or 30 s (Azure, GCP) of notice; a red alarm
# (HIGH) is acted on at once, as the Go worker does.
DEFAULT_NOTICE: Mapping[Criticality, float] = {
    Criticality.LOW: 120.0,
    Criticality.MEDIUM: 30.0,
    Criticality.HIGH: 0.0,
}
# The Go worker's rule: LOW is a guest shutdown, anything else a hard power-off.
DEFAULT_STOP: Mapping[Criticality, StopPolicy] = {
    Criticality.LOW: StopPolicy(StopAction.SHUTDOWN),
    Criticality.MEDIUM: StopPolicy(StopAction.POWER_OFF),
    Criticality.HIGH: StopPolicy(StopAction.POWER_OFF),
}


@dataclass(frozen=True)
class Policy:
    """Frozen; its mappings are read-only by their type (`Mapping`), plain dicts underneath so
    that the policy copies and pickles like any value."""

    scope: Scope = Scope.ENTITY
    max_vms: int = 10
    priority: PriorityPolicy = PriorityPolicy()
    # A VM carrying any of these tags is never a victim. Several, so that a request can add
    # protection to the administrator's without replacing it (domain.overrides).
    protection: tuple[Protection, ...] = ()
    groups: GroupPolicy | None = None
    targets: Targets = Targets()
    dry_run: bool = False
    # Acting with care: notice before acting, what each criticality does, resume on clear,
    # how many runs each workflow remembers.
    notice: Mapping[Criticality, float] = field(default_factory=lambda: dict(DEFAULT_NOTICE))
    guest_notice: bool = False  # also tell the guest (a guestinfo variable)
    stop: Mapping[Criticality, StopPolicy] = field(default_factory=lambda: dict(DEFAULT_STOP))
    resume: ResumePolicy = ResumePolicy()
    loop: LoopPolicy = LoopPolicy()
    history: int = 20
    # How long a workflow may live, counted from its first start across continue-as-new; None:
    # as long as its alarm needs it. When it ends this way, the VMs it stopped and has not
    # resumed stay off, named in its final state and a VmPreemptionExpiredEvent.
    max_lifetime_seconds: float | None = None
    # Field paths a request may change in any direction (domain.overrides); without one a
    # request can only make a run safer. The administrator's alone: a request never sets it.
    allow_overrides: tuple[str, ...] = ()
    # Quiet windows (domain.pauses): a run whose alarm raises within one is held, planned
    # but not acted on, until the window ends, as if paused.
    quiet: tuple[QuietWindow, ...] = ()

    def notice_for(self, criticality: Criticality) -> float:
        return self.notice.get(criticality, DEFAULT_NOTICE[criticality])

    def stop_for(self, criticality: Criticality) -> StopPolicy:
        return self.stop.get(criticality, DEFAULT_STOP[criticality])

    def tag_categories(self) -> tuple[str, ...]:
        """The tag categories whose tags the vSphere adapter must report on each VM."""
        names = [
            self.priority.category,
            self.groups.category if self.groups else None,
            *(p.category for p in self.protection),
        ]
        return tuple(dict.fromkeys(n for n in names if n is not None))

    def to_wire(self) -> dict[str, Any]:
        """The policy as people write it (camelCase); unset optional parts are left out."""
        wire: dict[str, Any] = {
            "scope": self.scope.value,
            "maxVMs": self.max_vms,
            "dryRun": self.dry_run,
        }
        if self.priority != PriorityPolicy():
            priority: dict[str, Any] = (
                {} if self.priority.category is None else {"category": self.priority.category}
            )
            priority["levels"] = dict(self.priority.levels)
            priority["default"] = self.priority.default
            wire["priority"] = priority
        if self.protection:
            # One protection is written as an object, as before several existed.
            tags = [{"category": p.category, "tag": p.tag} for p in self.protection]
            wire["protection"] = tags[0] if len(tags) == 1 else tags
        if self.groups is not None:
            groups: dict[str, Any] = {
                "category": self.groups.category,
                "budgets": {
                    name: {"maxUnavailable": b.to_wire()} for name, b in self.groups.budgets.items()
                },
            }
            if self.groups.default is not None:
                groups["default"] = {"maxUnavailable": self.groups.default.to_wire()}
            wire["groups"] = groups
        targets: dict[str, Any] = {r.value: self.targets.percent(r) for r in Resource}
        wire["targets"] = {k: v for k, v in targets.items() if v is not None}
        if self.targets.basis is not UseBasis.USAGE:
            wire["targets"]["basis"] = self.targets.basis.value  # written only when not default
        wire["notice"] = {
            **{c.value: format_seconds(self.notice_for(c)) for c in Criticality},
            "guest": self.guest_notice,
        }
        wire["actions"] = {c.value: self.stop_for(c).to_wire() for c in Criticality}
        wire["resume"] = self.resume.to_wire()
        if self.loop != LoopPolicy():
            wire["loop"] = self.loop.to_wire()
        wire["history"] = self.history
        if self.max_lifetime_seconds is not None:
            wire["maxLifetime"] = format_seconds(self.max_lifetime_seconds)
        if self.allow_overrides:
            wire["allowOverrides"] = list(self.allow_overrides)
        if self.quiet:
            wire["quiet"] = [w.to_wire() for w in self.quiet]
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Policy:
        return policy_from_mapping(obj)

    def with_overrides(self, overrides: Any) -> Policy:
        """This policy with fields merged over it; any field may be overridden. The worker's own
        tuning (its environment over its file); a request's go through domain.overrides.

        Objects merge key by key (`{"targets": {"cpu": 60}}` keeps the memory target,
        `{"priority": {"levels": {"batch": -1}}}` adds one level); `null` removes a field,
        which takes its default again. Validated as a whole policy, bad fields named.
        """
        if overrides is None:
            return self
        if not isinstance(overrides, Mapping):
            raise PolicyError(["overrides must be an object"], "policy override")
        merged = _merge(self.to_wire(), overrides)
        return policy_from_mapping(merged, what="policy override")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# -- Reading: every problem collected, then raised once -----------------------------------


class _Reader:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, why: str) -> None:
        self.problems.append(f"{path} {why}")

    def obj(self, value: Any, path: str, known: set[str]) -> Mapping[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.bad(path or "policy", "must be an object")
            return None
        for key in value:
            if not isinstance(key, str) or key not in known:
                self.bad(_join(path, str(key)), f"is not a field ({', '.join(sorted(known))})")
        return value

    def entries(self, value: Any, path: str) -> Mapping[str, Any]:
        """An object keyed by tag names (levels, budgets): any non-empty name is a key."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.bad(path, "must be an object keyed by tag name")
            return {}
        good = {}
        for key, item in value.items():
            if isinstance(key, str) and key.strip():
                good[key] = item
            else:
                self.bad(_join(path, str(key)), "is not a tag name (must be non-empty text)")
        return good

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.bad(path, "must be a non-empty string")
            return None
        return value.strip()

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int | None:
        # bool is an int in Python; `maxVMs: true` is a mistake, not 1.
        if not isinstance(value, int) or isinstance(value, bool):
            self.bad(path, "must be an integer")
            return None
        if minimum is not None and value < minimum:
            self.bad(path, f"must be at least {minimum}")
            return None
        return value

    def percent(self, value: Any, path: str, minimum: float) -> float | None:
        if isinstance(value, str) and value.strip().endswith("%"):
            with contextlib.suppress(ValueError):
                value = float(value.strip()[:-1])
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            self.bad(path, "must be a percentage (a number, or text like 70%)")
            return None
        if not minimum <= value <= 100:
            self.bad(path, f"must be between {minimum:g} and 100")
            return None
        return float(value)

    def flag(self, value: Any, path: str, default: bool) -> bool:
        if isinstance(value, bool):
            return value
        self.bad(path, "must be true or false")
        return default

    def seconds(self, value: Any, path: str) -> float | None:
        try:
            return parse_seconds(value)
        except ValueError:
            self.bad(path, "must be a duration (seconds, or like 30s, 2m, 1m30s)")
            return None

    def max_unavailable(self, value: Any, path: str) -> MaxUnavailable | None:
        if isinstance(value, str):
            text = value.strip()
            if text.endswith("%") and text[:-1].isdigit() and int(text[:-1]) <= 100:
                return MaxUnavailable(int(text[:-1]), percent=True)
            self.bad(path, "must be a count or a whole percentage up to 100% (like 25%)")
            return None
        count = self.integer(value, path, minimum=0)
        return None if count is None else MaxUnavailable(count)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_TOP = {
    "scope", "maxVMs", "priority", "protection", "groups", "targets", "dryRun",
    "notice", "actions", "resume", "history", "maxLifetime", "allowOverrides", "loop",
    "quiet",
}  # fmt: skip

# The field paths `allowOverrides` may name: each one a request's change is judged by
# (domain.overrides), or a parent of several; `groups.budgets.<tag>` for any tag besides.
OVERRIDE_PATHS = frozenset(
    {
        "scope", "maxVMs", "dryRun", "priority", "protection", "history",
        "groups", "groups.category", "groups.budgets", "groups.default",
        "targets", "targets.cpu", "targets.memory", "targets.basis",
        "notice", "notice.guest", "actions", "resume",
        "resume.enabled", "resume.batchSize", "resume.interval", "resume.headroom",
        "resume.maxWait",
        "loop", "loop.settle", "loop.maxRounds", "quiet",
    }
    | {f"{part}.{c.value}" for part in ("notice", "actions") for c in Criticality}
)  # fmt: skip


def policy_from_mapping(obj: Any, *, what: str = "policy") -> Policy:
    """Validate a policy as people write it; raise one PolicyError naming every bad field."""
    r = _Reader()
    top = r.obj(obj, "", _TOP)
    if top is None:
        raise PolicyError(r.problems, what)
    policy = Policy()
    scope, max_vms, dry_run = policy.scope, policy.max_vms, policy.dry_run
    if "scope" in top:
        if top["scope"] in {s.value for s in Scope}:
            scope = Scope(top["scope"])
        else:
            r.bad("scope", "must be one of: entity, vcenter")
    if "maxVMs" in top:
        max_vms = r.integer(top["maxVMs"], "maxVMs", minimum=1) or max_vms
    if "dryRun" in top:
        dry_run = r.flag(top["dryRun"], "dryRun", dry_run)
    notice, guest_notice = _notice(r, top.get("notice"))
    history = policy.history
    if "history" in top:
        history = r.integer(top["history"], "history", minimum=1) or history
    max_lifetime = None
    if top.get("maxLifetime") is not None:
        max_lifetime = r.seconds(top["maxLifetime"], "maxLifetime")
        if max_lifetime == 0:
            r.bad("maxLifetime", "must be longer than 0s (leave it out for no limit)")
    result = Policy(
        scope=scope,
        max_vms=max_vms,
        priority=_priority(r, top.get("priority")),
        protection=_protection(r, top.get("protection")),
        groups=_groups(r, top.get("groups")),
        targets=_targets(r, top.get("targets")),
        dry_run=dry_run,
        notice=notice,
        guest_notice=guest_notice,
        stop=_actions(r, top.get("actions")),
        resume=_resume(r, top.get("resume")),
        loop=_loop(r, top.get("loop")),
        history=history,
        max_lifetime_seconds=max_lifetime or None,
        allow_overrides=_allow_overrides(r, top.get("allowOverrides")),
        quiet=_quiet(r, top.get("quiet")),
    )
    if r.problems:
        raise PolicyError(r.problems, what)
    return result


def _quiet(r: _Reader, value: Any) -> tuple[QuietWindow, ...]:
    windows, problems = quiet_windows(value)
    r.problems.extend(problems)
    return windows


def _priority(r: _Reader, value: Any) -> PriorityPolicy:
    obj = r.obj(value, "priority", {"category", "levels", "default"})
    if not obj:
        return PriorityPolicy()
    category = r.text(obj["category"], "priority.category") if "category" in obj else None
    levels: dict[str, int] = {}
    for tag, level in r.entries(obj.get("levels"), "priority.levels").items():
        number = r.integer(level, f"priority.levels.{tag}")
        if number is not None:
            levels[tag] = number
    if (levels or "levels" in obj) and category is None and "category" not in obj:
        r.bad("priority.category", "is required when levels are given")
    default = r.integer(obj["default"], "priority.default") if "default" in obj else 0
    return PriorityPolicy(category, levels, default or 0)


def _protection(r: _Reader, value: Any) -> tuple[Protection, ...]:
    """One `{category, tag}`, or a list of them: a VM with any of the tags is protected."""
    several = isinstance(value, list)
    found: list[Protection] = []
    for i, item in enumerate(value if several else [value]):
        path = f"protection.{i}" if several else "protection"
        obj = r.obj(item, path, {"category", "tag"})
        if not obj:
            continue
        category = r.text(obj.get("category"), f"{path}.category")
        tag = r.text(obj.get("tag"), f"{path}.tag")
        if category and tag:
            found.append(Protection(category, tag))
    return tuple(dict.fromkeys(found))


def _allow_overrides(r: _Reader, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        r.bad("allowOverrides", "must be a list of field paths (like maxVMs, groups)")
        return ()
    paths: list[str] = []
    for i, item in enumerate(value):
        known = isinstance(item, str) and (
            item in OVERRIDE_PATHS
            or (item.startswith("groups.budgets.") and bool(item[len("groups.budgets.") :]))
        )
        if not known:
            r.bad(f"allowOverrides.{i}", f"{item!r} is not a field path a request may override")
            continue
        paths.append(item)
    return tuple(dict.fromkeys(paths))


def _groups(r: _Reader, value: Any) -> GroupPolicy | None:
    obj = r.obj(value, "groups", {"category", "budgets", "default"})
    if not obj:
        return None
    category = r.text(obj.get("category"), "groups.category")
    budgets: dict[str, MaxUnavailable] = {}
    for group, entry in r.entries(obj.get("budgets"), "groups.budgets").items():
        budget = _budget(r, entry, f"groups.budgets.{group}")
        if budget is not None:
            budgets[group] = budget
    default = _budget(r, obj["default"], "groups.default") if "default" in obj else None
    if category is None:
        return None
    return GroupPolicy(category, budgets, default)


def _budget(r: _Reader, value: Any, path: str) -> MaxUnavailable | None:
    entry = r.obj(value, path, {"maxUnavailable"})
    if entry is None:
        return None
    if "maxUnavailable" not in entry:
        r.bad(f"{path}.maxUnavailable", "is required")
        return None
    return r.max_unavailable(entry["maxUnavailable"], f"{path}.maxUnavailable")


def _targets(r: _Reader, value: Any) -> Targets:
    obj = r.obj(value, "targets", {res.value for res in Resource} | {"basis"})
    if not obj:
        return Targets()
    cpu = r.percent(obj["cpu"], "targets.cpu", 1) if "cpu" in obj else None
    memory = r.percent(obj["memory"], "targets.memory", 1) if "memory" in obj else None
    basis = UseBasis.USAGE
    if "basis" in obj:
        if obj["basis"] in {b.value for b in UseBasis}:
            basis = UseBasis(obj["basis"])
        else:
            r.bad("targets.basis", "must be one of: usage, allocation")
    return Targets(cpu=cpu, memory=memory, basis=basis)


_LEVELS = {c.value for c in Criticality}


def _notice(r: _Reader, value: Any) -> tuple[dict[Criticality, float], bool]:
    notice = dict(DEFAULT_NOTICE)
    obj = r.obj(value, "notice", _LEVELS | {"guest"})
    if not obj:
        return notice, False
    for level in _LEVELS & set(obj):
        seconds = r.seconds(obj[level], f"notice.{level}")
        if seconds is not None:
            notice[Criticality(level)] = seconds
    guest = r.flag(obj["guest"], "notice.guest", False) if "guest" in obj else False
    return notice, guest


def _actions(r: _Reader, value: Any) -> dict[Criticality, StopPolicy]:
    stop = dict(DEFAULT_STOP)
    obj = r.obj(value, "actions", _LEVELS)
    for level, entry in (obj or {}).items():
        path = f"actions.{level}"
        if isinstance(entry, str):  # `HIGH: poweroff` for short
            entry = {"action": entry}
        fields = r.obj(entry, path, {"action", "grace"})
        if fields is None:
            continue
        if fields.get("action") not in {a.value for a in StopAction}:
            r.bad(f"{path}.action", "must be one of: shutdown, poweroff, suspend")
            continue
        action = StopAction(fields["action"])
        grace = r.seconds(fields["grace"], f"{path}.grace") if "grace" in fields else None
        if grace is not None and action is not StopAction.SHUTDOWN:
            r.bad(f"{path}.grace", "applies to a guest shutdown only")
        stop[Criticality(level)] = StopPolicy(action, grace)
    return stop


def _resume(r: _Reader, value: Any) -> ResumePolicy:
    obj = r.obj(value, "resume", {"enabled", "batchSize", "interval", "headroom", "maxWait"})
    if not obj:
        return ResumePolicy()
    default = ResumePolicy()
    enabled = r.flag(obj["enabled"], "resume.enabled", False) if "enabled" in obj else False
    batch = default.batch_size
    if "batchSize" in obj:
        batch = r.integer(obj["batchSize"], "resume.batchSize", minimum=1) or batch
    interval = default.interval_seconds
    if "interval" in obj:
        seconds = r.seconds(obj["interval"], "resume.interval")
        interval = interval if seconds is None else seconds
    headroom = default.headroom_percent
    if "headroom" in obj:
        points = r.percent(obj["headroom"], "resume.headroom", 0)
        headroom = headroom if points is None else points
    max_wait = default.max_wait_seconds
    if "maxWait" in obj:
        seconds = r.seconds(obj["maxWait"], "resume.maxWait")
        max_wait = max_wait if seconds is None else seconds
    return ResumePolicy(enabled, batch, interval, headroom, max_wait)


def _loop(r: _Reader, value: Any) -> LoopPolicy:
    obj = r.obj(value, "loop", {"settle", "maxRounds"})
    if not obj:
        return LoopPolicy()
    default = LoopPolicy()
    settle = default.settle_seconds
    if "settle" in obj:
        seconds = r.seconds(obj["settle"], "loop.settle")
        settle = settle if seconds is None else seconds
    rounds = default.max_rounds
    if "maxRounds" in obj:
        rounds = r.integer(obj["maxRounds"], "loop.maxRounds", minimum=1) or rounds
    return LoopPolicy(settle, rounds)
