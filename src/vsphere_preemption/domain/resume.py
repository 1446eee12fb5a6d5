"""Whether a VM a workflow stopped may be powered on again: its mark against what it is now.

Pure: the vSphere adapter reads each VM as it is now (one batched read) and asks
`judge`; what to power on, what to leave alone and why is decided here alone. A VM
is resumed only if nobody touched it since we stopped it; any sign of a person's hand
(powered on, reconfigured, moved, our annotation gone or replaced) leaves it alone,
with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from vsphere_preemption.domain.model import VmMark

# The reasons a VM is left alone; details follow after ": " where there are any.
DELETED = "deleted"
POWERED_ON_BY_HAND = "powered on by hand"
RECONFIGURED = "reconfigured since it was preempted"
MOVED = "moved since it was preempted"
STOPPED_OTHERWISE = "stopped otherwise since it was preempted"
ANNOTATION_GONE = "annotation removed or replaced"

POWERED_ON = "poweredOn"


@dataclass(frozen=True)
class VmNow:
    """A VM as vCenter shows it at resume time."""

    power_state: str
    change_version: str
    host: str | None
    resource_pool: str | None
    annotation: str | None  # our custom field's value (JSON text); None when absent or empty


class Verdict(Enum):
    RESUME = "resume"  # power it on
    RESUMED_ALREADY = "resumed already"  # by an earlier attempt of this resume: count it
    SKIP = "skip"  # leave it alone, for the reason given


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str = ""  # why, when skipped


def _annotation(text: str | None) -> dict[str, object] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def judge(
    mark: VmMark, now: VmNow | None, workflow_id: str, *, powered_on_by_us: bool = False
) -> Judgement:
    """Resume, count as resumed already, or skip (with the reason) one VM.

    `powered_on_by_us`: an earlier attempt of this same resume powered the VM on (it
    said so in its heartbeat) but may not have written the resumed annotation yet.
    """
    if now is None:
        return Judgement(Verdict.SKIP, DELETED)
    annotation = _annotation(now.annotation)
    ours = annotation is not None and annotation.get("workflowID") == workflow_id
    # A resume writes the resumed annotation before its power-on call: ours saying resumed on
    # a VM that is on means an earlier attempt did it (even if it died before saying so);
    # on a VM still stopped, that attempt's power-on never happened: resume it.
    claimed = ours and annotation is not None and annotation.get("resumed") is True
    if claimed and now.power_state == POWERED_ON:
        return Judgement(Verdict.RESUMED_ALREADY)
    if powered_on_by_us and now.power_state == POWERED_ON:
        return Judgement(Verdict.RESUMED_ALREADY)
    if now.power_state == POWERED_ON:
        return Judgement(Verdict.SKIP, POWERED_ON_BY_HAND)
    if not ours:
        detail = "no annotation" if annotation is None else _named(annotation)
        return Judgement(Verdict.SKIP, f"{ANNOTATION_GONE}: {detail}")
    if now.change_version != mark.change_version:
        return Judgement(Verdict.SKIP, RECONFIGURED)
    if now.host != mark.host:
        return Judgement(Verdict.SKIP, f"{MOVED}: host {mark.host} -> {now.host}")
    if now.resource_pool != mark.resource_pool:
        return Judgement(
            Verdict.SKIP, f"{MOVED}: resource pool {mark.resource_pool} -> {now.resource_pool}"
        )
    if now.power_state != mark.power_state:
        return Judgement(
            Verdict.SKIP, f"{STOPPED_OTHERWISE}: {mark.power_state} -> {now.power_state}"
        )
    return Judgement(Verdict.RESUME)


def _named(annotation: dict[str, object]) -> str:
    other = annotation.get("workflowID")
    return f"it names workflow {other!r}" if isinstance(other, str) else "not ours"
