"""Which stopped VMs a resume may power on now without raising its alarm again.

Pure: the workflow reads the entity's use on its target's basis and asks `fit`. A resume that
powered every VM on at once would bring the load back that raised the alarm, the alarm would
raise again, and the VMs would go again: a flap. So with a target, VMs come back only while
the entity's projected use stays at or below the target less a headroom (percentage points),
in the resume's order (highest priority first). The first VM that does not fit waits, and so
does every VM after it: a smaller, less important VM does not take the room the more
important one is waiting for.

A figure that is missing (the use could not be read, vCenter gave no capacity, a VM's share
is not known) is not guessed at: the VMs wait, and the reason says which figure is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from vsphere_preemption.domain.model import EntityUsage, Resources
from vsphere_preemption.domain.policy import Resource, Targets

T = TypeVar("T")

_UNITS = {Resource.CPU: "MHz", Resource.MEMORY: "MB"}


@dataclass(frozen=True)
class Fit(Generic[T]):
    """What to power on now, in order, and what waits for room (each with the reason)."""

    now: list[T] = field(default_factory=list)
    waiting: list[tuple[T, str]] = field(default_factory=list)


def _amount(resources: Resources, resource: Resource) -> float | None:
    return resources.cpu_mhz if resource is Resource.CPU else resources.memory_mb


def fit(
    order: Sequence[T],
    share: Callable[[T], Resources | None],
    usage: EntityUsage | None,
    targets: Targets,
    headroom: float,
    limit: int,
) -> Fit[T]:
    """Up to `limit` VMs of `order` that fit under every target less `headroom`; the VMs
    from the first one that does not fit on wait. VMs past `limit` that fit are in neither
    list: the next batch takes them."""
    if usage is None:
        return Fit(waiting=[(vm, "the entity's use could not be read") for vm in order])
    room: dict[Resource, tuple[float, float]] = {}  # resource -> (used now, capacity)
    for resource in Resource:
        target = targets.percent(resource)
        if target is None:
            continue
        used, capacity = _amount(usage.used, resource), _amount(usage.capacity, resource)
        if used is None or not capacity:
            reason = f"vCenter gave no {resource.value} figure for {usage.entity.value}"
            return Fit(waiting=[(vm, reason) for vm in order])
        room[resource] = (used, capacity)
    chosen: list[T] = []
    for position, vm in enumerate(order):
        if len(chosen) == limit:
            return Fit(now=chosen)
        reason = _no_room(room, share(vm), targets, headroom)
        if reason:
            behind = "waits behind a VM of higher priority"
            blocked = [(vm, reason)] + [(later, behind) for later in order[position + 1 :]]
            return Fit(now=chosen, waiting=blocked)
        chosen.append(vm)
        vm_share = share(vm)
        assert vm_share is not None  # _no_room said it is known
        for resource, (used, capacity) in room.items():
            room[resource] = (used + (_amount(vm_share, resource) or 0.0), capacity)
    return Fit(now=chosen)


def _no_room(
    room: dict[Resource, tuple[float, float]],
    vm_share: Resources | None,
    targets: Targets,
    headroom: float,
) -> str:
    """Why this VM does not fit now, or "" when it does."""
    for resource, (used, capacity) in room.items():
        amount = None if vm_share is None else _amount(vm_share, resource)
        if amount is None:
            return f"its {resource.value} use is not known"
        target = targets.percent(resource)
        assert target is not None
        ceiling = target - headroom
        after = (used + amount) / capacity * 100
        if after > ceiling:
            return (
                f"would bring {resource.value} to {after:.1f}% ({used + amount:.0f} of "
                f"{capacity:.0f} {_UNITS[resource]}), above the target {target:g}% less the "
                f"headroom of {headroom:g} points ({ceiling:g}%)"
            )
    return ""
