"""What a run achieved against what its plan expected: the entity's use re-read after acting.

Pure. vCenter's usage figures lag (quickStats refresh every 20 s or so; a cluster's sum over
its hosts lags more), so "achieved" is what vCenter says right after the run, not the final
word: the record says when it was read and makes no claim beyond it.
"""

from __future__ import annotations

from vsphere_preemption.domain.model import EntityUsage
from vsphere_preemption.domain.plan import ResourceTarget, TargetOutcome
from vsphere_preemption.domain.shapes import AchievedWire, ResourceAchievedWire


def _percent(value: float | None, capacity: float | None) -> float | None:
    if value is None or not capacity:
        return None
    return round(100.0 * value / capacity, 2)


def _one(target: ResourceTarget, used_after: float | None) -> ResourceAchievedWire:
    capacity = target.capacity
    after_percent = _percent(used_after, capacity)
    return {
        "targetPercent": target.target_percent,
        "capacity": capacity,
        "before": target.before,
        "beforePercent": target.before_percent,
        "plannedAfter": target.planned_after,
        "plannedAfterPercent": target.planned_after_percent,
        "achievedAfter": used_after,
        "achievedAfterPercent": after_percent,
        "reached": None if after_percent is None else after_percent <= target.target_percent,
    }


def planned_vs_achieved(target: TargetOutcome | None, after: EntityUsage | None) -> AchievedWire:
    """Per targeted resource: target, before, planned after and achieved after (MHz/MB, %)."""
    if target is None:
        return {"note": "the policy sets no capacity target: nothing to compare"}
    if after is None:
        return {"note": "the entity's use could not be read again after the run"}
    out: AchievedWire = {}
    if target.cpu is not None:
        out["cpu"] = _one(target.cpu, after.used.cpu_mhz)
    if target.memory is not None:
        out["memory"] = _one(target.memory, after.used.memory_mb)
    per = [out.get("cpu"), out.get("memory")]
    judged = [r["reached"] for r in per if r is not None and r["reached"] is not None]
    out["reached"] = bool(judged) and all(judged)
    return out
