"""`preemptctl check`: what each check found, judged into one line a person acts on.

Pure: the probes (vsphere/preflight.py, temporal/preflight.py) read vCenter, Temporal and the
sink and hand in plain facts; here they become `Check`s (ok, warn, fail or skip, with what to
do), and a `Report` says the exit code. Keeping the judging here lets each failure be tested
without a vCenter that can be made to fail that way (vcsim grants every privilege, say).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # may come later (an alarm not defined yet, no VM tagged yet): not a failure
    FAIL = "fail"
    SKIP = "skip"  # not checked: what it needs failed first, or it was not asked for


@dataclass(frozen=True)
class Check:
    """One line of the report. `name` is stable (scripts read `--json`); `fix` says what to do
    when it is not ok; `details` carries the figures behind the summary, for `--json`."""

    name: str
    status: Status
    summary: str
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    strict: bool = False  # warnings count as failures (a CI gate before go-live)

    @property
    def failed(self) -> tuple[Check, ...]:
        bad = {Status.FAIL, Status.WARN} if self.strict else {Status.FAIL}
        return tuple(c for c in self.checks if c.status in bad)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.WARN)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def ok(name: str, summary: str, **details: Any) -> Check:
    return Check(name, Status.OK, summary, details=details)


def skipped(name: str, why: str) -> Check:
    return Check(name, Status.SKIP, why)


def _listed(items: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


# -- privileges ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivilegeNeed:
    """A privilege the worker needs, why (the vSphere call that needs it), and where it is
    checked: on each VM it may act on, or on the root folder (vCenter-wide privileges)."""

    priv_id: str
    why: str
    on_vms: bool = True


@dataclass(frozen=True)
class PrivilegeFacts:
    """What vCenter's authorization manager answered for our own session."""

    user: str
    needs: tuple[PrivilegeNeed, ...]
    vms_checked: int  # 0: no VM carries the tag yet, VM privileges checked on the root folder
    missing: Mapping[str, tuple[str, ...]]  # privilege id -> the entities lacking it
    unknown: tuple[str, ...] = ()  # ids this vCenter does not define


def judge_privileges(facts: PrivilegeFacts) -> Check:
    name = "vcenter.privileges"
    ids = list(dict.fromkeys(n.priv_id for n in facts.needs))
    details = {
        "user": facts.user,
        "required": ids,
        "vmsChecked": facts.vms_checked,
        "missing": {k: list(v) for k, v in facts.missing.items()},
        "unknown": list(facts.unknown),
    }
    why = {n.priv_id: n.why for n in facts.needs}
    if facts.missing:
        lines = [
            f"{priv} ({why.get(priv, '?')}) on {_listed(list(where))}"
            for priv, where in facts.missing.items()
        ]
        return Check(
            name,
            Status.FAIL,
            f"user {facts.user!r} lacks " + "; ".join(lines),
            fix="give the user a role holding every privilege in docs/operating.md, propagated "
            "from the folder or cluster that holds the tagged VMs",
            details=details,
        )
    if facts.unknown:
        return Check(
            name,
            Status.FAIL,
            f"vCenter does not define {_listed(list(facts.unknown))}: it cannot grant them",
            fix="use a vCenter version that has these privileges (7.0 or later)",
            details=details,
        )
    where = (
        f"on the {facts.vms_checked} tagged VM(s) and the root folder"
        if facts.vms_checked
        else "on the root folder (no VM carries the tag: checked where a propagated role applies)"
    )
    if not facts.vms_checked:
        return Check(
            name,
            Status.WARN,
            f"user {facts.user!r} holds all {len(ids)} privileges {where}",
            fix="check again once VMs are tagged: a permission set lower down may deny them",
            details=details,
        )
    return Check(
        name, Status.OK, f"user {facts.user!r} holds all {len(ids)} privileges {where}", "", details
    )


# -- tags -----------------------------------------------------------------------------------

NO_CLUSTER = "(no cluster)"


@dataclass(frozen=True)
class TagFacts:
    tag: str
    exists: bool
    vms_per_cluster: Mapping[str, int] = field(default_factory=dict)
    non_vms: int = 0  # tagged objects that are not VMs (hosts, datastores): never acted on


def judge_tag(facts: TagFacts, source: str) -> Check:
    name = "vcenter.tag"
    if not facts.exists:
        return Check(
            name,
            Status.FAIL,
            f"tag {facts.tag!r} does not exist",
            fix=f"create tag {facts.tag!r} in vCenter, or correct {source}",
            details={"tag": facts.tag, "exists": False},
        )
    total = sum(facts.vms_per_cluster.values())
    details = {
        "tag": facts.tag,
        "exists": True,
        "vms": total,
        "vmsPerCluster": dict(facts.vms_per_cluster),
        "notVms": facts.non_vms,
    }
    if not total:
        return Check(
            name,
            Status.WARN,
            f"tag {facts.tag!r} exists, but no VM carries it yet",
            fix=f"tag the VMs that may be powered off with {facts.tag!r}",
            details=details,
        )
    per = ", ".join(f"{c}: {n}" for c, n in sorted(facts.vms_per_cluster.items()))
    also = (
        f"; {facts.non_vms} tagged object(s) are not VMs and are ignored" if facts.non_vms else ""
    )
    return Check(name, Status.OK, f"tag {facts.tag!r}: {total} VM(s) ({per}){also}", "", details)


@dataclass(frozen=True)
class PolicyTagFacts:
    """The policy's tag categories and the tags it names in them, as found in vCenter."""

    categories: tuple[str, ...]
    missing_categories: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]  # (category, tag) the policy names
    missing_tags: tuple[tuple[str, str], ...]


def policy_tags(
    policy_categories: Iterable[str], named: Iterable[tuple[str, str]]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The categories and (category, tag) pairs to look up, each once, in order."""
    return tuple(dict.fromkeys(policy_categories)), tuple(dict.fromkeys(named))


def judge_policy_tags(facts: PolicyTagFacts) -> Check:
    name = "vcenter.policyTags"
    details = {
        "categories": list(facts.categories),
        "missingCategories": list(facts.missing_categories),
        "tags": [f"{c}/{t}" for c, t in facts.tags],
        "missingTags": [f"{c}/{t}" for c, t in facts.missing_tags],
    }
    if not facts.categories:
        return ok(name, "the policy names no tag category", **details)
    missing = [f"category {c!r}" for c in facts.missing_categories] + [
        f"tag {t!r} in category {c!r}" for c, t in facts.missing_tags
    ]
    if missing:
        return Check(
            name,
            Status.FAIL,
            "the policy names what vCenter lacks: " + _listed(missing, 8),
            fix="create them in vCenter, or correct PREEMPTION_POLICY_FILE",
            details=details,
        )
    counted = f"{len(facts.categories)} categor{'y' if len(facts.categories) == 1 else 'ies'}"
    return ok(name, f"the policy's {counted} and {len(facts.tags)} tag(s) exist", **details)


# -- alarms ---------------------------------------------------------------------------------


def judge_alarms(defined: Mapping[str, Sequence[str]], wanted: Sequence[str]) -> Check:
    """`defined`: alarm name -> the entities it is defined on, for every alarm vCenter has."""
    name = "vcenter.alarms"
    found = {a: list(defined[a]) for a in wanted if a in defined}
    missing = [a for a in wanted if a not in defined]
    details = {"alarms": found, "missing": missing}
    if missing:
        return Check(
            name,
            Status.WARN,
            f"alarm(s) not defined in vCenter yet: {_listed([repr(a) for a in missing])}"
            + (f"; found {_listed([repr(a) for a in found])}" if found else ""),
            fix="define the alarm in vCenter (the name must match exactly), or correct "
            "VSPHERE_ALARM_NAME / VSPHERE_ALARM_NAMES",
            details=details,
        )
    where = "; ".join(f"{a!r} on {', '.join(e) or '?'}" for a, e in found.items())
    return ok(name, f"alarm(s) defined: {where}", **details)


# -- Temporal -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Poller:
    identity: str
    kind: str  # workflow or activity
    last_access: str  # RFC 3339, or ""


def judge_pollers(task_queue: str, pollers: Sequence[Poller]) -> Check:
    name = "temporal.pollers"
    kinds = {p.kind for p in pollers}
    identities = sorted({p.identity for p in pollers})
    details = {
        "taskQueue": task_queue,
        "pollers": [
            {"identity": p.identity, "kind": p.kind, "lastAccess": p.last_access} for p in pollers
        ],
    }
    if not pollers:
        return Check(
            name,
            Status.FAIL,
            f"no worker polls task queue {task_queue!r}",
            fix="start the worker (`preemptctl worker`) with the same TEMPORAL_URL, "
            "TEMPORAL_NAMESPACE and TEMPORAL_TASKQUEUE",
            details=details,
        )
    lacking = {"workflow", "activity"} - kinds
    if lacking:
        return Check(
            name,
            Status.FAIL,
            f"task queue {task_queue!r} has no {' or '.join(sorted(lacking))} poller "
            f"(polled by {_listed(identities)})",
            fix="a preemption worker polls both: is another program polling this queue?",
            details=details,
        )
    return ok(name, f"task queue {task_queue!r} polled by {_listed(identities)}", **details)


def judge_routing(vcenter: str, worker_queue: str, function_queues: Mapping[str, str]) -> Check:
    """The function sends this vCenter's alarms to the queue the worker polls."""
    name = "function.taskQueue"
    if not function_queues:
        return ok(name, f"the function and the worker use task queue {worker_queue!r}")
    queue = function_queues.get(vcenter)
    details = {"vcenter": vcenter, "workerQueue": worker_queue, "functionQueue": queue}
    if queue is None:
        return Check(
            name,
            Status.FAIL,
            f"VCENTER_TASKQUEUES names no task queue for vCenter {vcenter}: its alarms are refused",
            fix=f"add {vcenter!r} to VCENTER_TASKQUEUES",
            details=details,
        )
    if queue != worker_queue:
        return Check(
            name,
            Status.FAIL,
            f"the function sends vCenter {vcenter}'s alarms to task queue {queue!r}, but the "
            f"worker polls {worker_queue!r}",
            fix="make VCENTER_TASKQUEUES and the worker's TEMPORAL_TASKQUEUE agree",
            details=details,
        )
    return ok(name, f"vCenter {vcenter}'s alarms go to task queue {queue!r}", **details)
