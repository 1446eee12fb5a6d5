"""What the workflow carries across continue-as-new (temporal/records.py): everything comes
back as it went, and a memory without resume-headroom's fields is written as before it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from vsphere_preemption.domain.model import MoRef, Resources, VmMark, VmRef
from vsphere_preemption.domain.policy import ResumePolicy, Targets, UseBasis
from vsphere_preemption.temporal.records import Life, Memory, Room, Stopped

CLUSTER = MoRef("domain-c7", "ClusterComputeResource")


def stopped(value: str, share: Resources | None = None) -> Stopped:
    mark = VmMark(VmRef(value), "2026-12-07T10:00:00Z", "host-1", "resgroup-9", "poweredOff")
    return Stopped(mark, f"name-{value}", 3, '{"workflowID":"w"}', True, share)


def test_a_memory_comes_back_as_it_went() -> None:
    memory = Memory(
        run_number=4,
        stopped={"vm-1": stopped("vm-1", Resources(2000, None)), "vm-2": stopped("vm-2")},
        resume=ResumePolicy(True, 2, 5.0, 15.0, 600.0),
        room=Room(CLUSTER, Targets(cpu=None, memory=70.5, basis=UseBasis.ALLOCATION)),
        life=Life(born=datetime(2026, 12, 7, tzinfo=UTC), max_seconds=3600, reply_to="http://s"),
    )
    back = Memory.from_json(memory.to_json())
    assert back.stopped == memory.stopped
    assert back.resume == memory.resume
    assert back.room == memory.room
    assert back.life == memory.life and back.run_number == 4


def test_without_resume_headroom_the_carried_text_has_none_of_its_fields() -> None:
    """Runs recorded before the patch continue as new with the same argument as they did."""
    carried = json.loads(Memory(stopped={"vm-1": stopped("vm-1")}).to_json())
    assert "room" not in carried
    assert "share" not in carried["stopped"][0]
    back = Memory.from_json(json.dumps(carried))
    assert back.room is None and back.stopped["vm-1"].share is None
