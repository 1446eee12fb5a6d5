"""judge: a stopped VM's mark against what it is now decides resume, resumed already or skip."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from vsphere_preemption.domain.model import VmMark, VmRef
from vsphere_preemption.domain.resume import Judgement, Verdict, VmNow, judge

WF = "alarm-1-domain-c28"
MARK = VmMark(VmRef("vm-52"), "cv-1", "host-21", "resgroup-23", "poweredOff")
OURS = json.dumps({"preempted": True, "workflowID": WF})
RESUMED = json.dumps({"preempted": True, "workflowID": WF, "resumed": True})
AS_LEFT = VmNow("poweredOff", "cv-1", "host-21", "resgroup-23", OURS)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (AS_LEFT, Judgement(Verdict.RESUME)),
        (None, Judgement(Verdict.SKIP, "deleted")),
        (replace(AS_LEFT, power_state="poweredOn"), Judgement(Verdict.SKIP, "powered on by hand")),
        (
            replace(AS_LEFT, change_version="cv-2"),
            Judgement(Verdict.SKIP, "reconfigured since it was preempted"),
        ),
        (
            replace(AS_LEFT, host="host-37"),
            Judgement(Verdict.SKIP, "moved since it was preempted: host host-21 -> host-37"),
        ),
        (
            replace(AS_LEFT, resource_pool="resgroup-99"),
            Judgement(
                Verdict.SKIP,
                "moved since it was preempted: resource pool resgroup-23 -> resgroup-99",
            ),
        ),
        (
            replace(AS_LEFT, power_state="suspended"),
            Judgement(
                Verdict.SKIP, "stopped otherwise since it was preempted: poweredOff -> suspended"
            ),
        ),
        (
            replace(AS_LEFT, annotation=None),
            Judgement(Verdict.SKIP, "annotation removed or replaced: no annotation"),
        ),
        (
            replace(AS_LEFT, annotation="not json {"),
            Judgement(Verdict.SKIP, "annotation removed or replaced: no annotation"),
        ),
        (
            replace(AS_LEFT, annotation=json.dumps({"workflowID": "other-wf"})),
            Judgement(Verdict.SKIP, "annotation removed or replaced: it names workflow 'other-wf'"),
        ),
        # Our own earlier attempt resumed it: counted, whatever its power state.
        # claimed by an attempt that died before its power-on: resume it now
        (replace(AS_LEFT, annotation=RESUMED), Judgement(Verdict.RESUME)),
        (
            replace(AS_LEFT, annotation=RESUMED, power_state="poweredOn", change_version="x"),
            Judgement(Verdict.RESUMED_ALREADY),
        ),
    ],
)
def test_judge(now: VmNow | None, expected: Judgement) -> None:
    assert judge(MARK, now, WF) == expected


def test_another_workflows_resumed_annotation_is_not_ours() -> None:
    theirs = json.dumps({"workflowID": "other-wf", "resumed": True})
    assert judge(MARK, replace(AS_LEFT, annotation=theirs), WF).verdict is Verdict.SKIP


def test_powered_on_by_an_earlier_attempt_counts_as_resumed_not_by_hand() -> None:
    on = replace(AS_LEFT, power_state="poweredOn")
    assert judge(MARK, on, WF, powered_on_by_us=True) == Judgement(Verdict.RESUMED_ALREADY)
    # ... only while it is on: one found off again is judged afresh.
    assert judge(MARK, AS_LEFT, WF, powered_on_by_us=True) == Judgement(Verdict.RESUME)
