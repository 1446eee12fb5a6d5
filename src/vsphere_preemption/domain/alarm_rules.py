"""What the function does about one alarm change: ignore it, preempt, or cancel preemption.

docs/wire.md's decision rules, steps 4 to 6, as a pure function. Statuses are vSphere's
`gray`, `green`, `yellow` and `red`, compared lower-cased; anything else simply is not raising.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from vsphere_preemption.domain.events import AlarmChange
from vsphere_preemption.domain.model import Criticality


class Action(StrEnum):
    IGNORE = "ignore"  # another alarm: nothing to do
    PREEMPT = "preempt"  # raising: signal-with-start the alarm's workflow
    CANCEL = "cancel"  # lowering: cancel the alarm's workflow


@dataclass(frozen=True)
class Decision:
    action: Action
    criticality: Criticality
    reason: str


class RuleError(ValueError):
    """An alarm event the rules cannot decide on (HTTP 400); the message is one line."""


def is_raising(from_status: str, to_status: str) -> bool:
    """To red, or to yellow from anything but red; everything else is lowering."""
    to, frm = to_status.lower(), from_status.lower()
    return to == "red" or (to == "yellow" and frm != "red")


def criticality_for(to_status: str) -> Criticality:
    return {"yellow": Criticality.MEDIUM, "red": Criticality.HIGH}.get(
        to_status.lower(), Criticality.LOW
    )


def decide(change: AlarmChange, alarm_names: str | Collection[str]) -> Decision:
    """Decide for the function serving `alarm_names` (one name, or several)."""
    names = {alarm_names} if isinstance(alarm_names, str) else set(alarm_names)
    if change.alarm_name not in names:
        served = " or ".join(repr(n) for n in sorted(names))
        return Decision(
            Action.IGNORE,
            Criticality.LOW,
            f"alarm {change.alarm_name!r} is not {served}",
        )
    if not change.from_status or not change.to_status:
        # Another alarm event that matched the type (no status transition in it).
        raise RuleError("alarm status change without From or To")
    criticality = criticality_for(change.to_status)
    transition = f"{change.from_status} to {change.to_status}"
    if is_raising(change.from_status, change.to_status):
        return Decision(Action.PREEMPT, criticality, f"alarm raising: {transition}")
    return Decision(Action.CANCEL, criticality, f"alarm lowering: {transition}")
