"""Powering on again the VMs a workflow stopped, unless someone touched them since.

1. One batched read of every marked VM as it is now: power state, change version,
   host, resource pool and our annotation (the custom field).
2. `domain.resume.judge` decides per VM: resume, resumed already (an earlier attempt
   did it), or skip with the reason (deleted, powered on by hand, reconfigured,
   moved, annotation removed or replaced).
3. The resumed annotation is written on each VM to resume *before* its power-on: the
   claim that makes a retry safe. A VM whose claim cannot be written is not powered on.
4. `PowerOnVM_Task` per claimed VM, watched together; then one batched read confirms
   each is `poweredOn`. A VM that did not come on gets its earlier annotation back.

Safe to run again, whenever the attempt died: a VM that is on and carries our resumed
annotation was powered on by us (an earlier attempt), never "by hand"; one that carries
it and is still stopped is powered on now. (A VM an earlier attempt named in its
heartbeat, `powered_on_before`, counts as ours too: the same fact, said faster.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from vsphere_preemption.domain.model import ResumeOutcome, VmIssue, VmMark, VmRef
from vsphere_preemption.domain.resume import (
    DELETED,
    POWERED_ON,
    POWERED_ON_BY_HAND,
    Verdict,
    VmNow,
    judge,
)
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.fields import CustomFields
from vsphere_preemption.vsphere.reads import read_now, read_power_states
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import Connection, SoapSession
from vsphere_preemption.vsphere.tasks import Fanout, TaskEnd, TaskRunner

log = get_logger(__name__)


def _claimed(annotation: str | None) -> bool:
    try:
        value = json.loads(annotation or "")
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("resumed") is True


def _power_on(conn: Connection, ref: VmRef) -> object:
    return conn.managed(ref).PowerOnVM_Task()


@dataclass
class _Tally:
    """What became of each VM of one resume attempt, as the steps learn it."""

    resumed: set[VmRef] = field(default_factory=set)
    unclaimed: list[VmRef] = field(default_factory=list)  # ours, on, not yet said resumed
    skipped: dict[VmRef, str] = field(default_factory=dict)
    failed: dict[VmRef, str] = field(default_factory=dict)

    def judge(
        self,
        by_ref: dict[VmRef, VmMark],
        now: dict[VmRef, VmNow],
        workflow_id: str,
        powered_on_before: Collection[VmRef],
    ) -> list[VmRef]:
        """domain.resume's verdict on each VM; the ones to power on, in order."""
        to_power: list[VmRef] = []
        for ref, mark in by_ref.items():
            judgement = judge(
                mark, now.get(ref), workflow_id, powered_on_by_us=ref in powered_on_before
            )
            if judgement.verdict is Verdict.RESUME:
                to_power.append(ref)
            elif judgement.verdict is Verdict.RESUMED_ALREADY:
                self.resumed.add(ref)
                if not _claimed(now[ref].annotation):
                    self.unclaimed.append(ref)  # known from the heartbeat alone: claim it now
            else:
                self.skipped[ref] = judgement.reason
        return to_power

    def ended(self, ref: VmRef, end: TaskEnd, session: SoapSession) -> bool:
        """How a power-on task ended; True when the power state must say (done, or lost)."""
        fault = end.fault
        if end.ok or (fault is None and end.detail.endswith("task lost")):
            return True
        if isinstance(fault, vmodl.fault.ManagedObjectNotFound):
            self.skipped[ref] = DELETED
        elif isinstance(fault, vim.fault.InvalidPowerState) and (fault.existingState == POWERED_ON):
            self.skipped[ref] = POWERED_ON_BY_HAND  # in the instant since we read it
        else:
            why = session.text(fault) if fault is not None else end.detail
            self.failed[ref] = f"power-on failed: {why}"
        return False

    def confirm(self, refs: list[VmRef], states: dict[VmRef, str]) -> None:
        """The power states read after the tasks: on is resumed, gone is deleted."""
        for ref in refs:
            state = states.get(ref)
            if state == POWERED_ON:
                self.resumed.add(ref)
            elif state is None:
                self.skipped[ref] = DELETED
            else:
                self.failed[ref] = f"power-on done, but the VM is {state}"


class Resume:
    def __init__(self, session: SoapSession, fields: CustomFields, runner: TaskRunner) -> None:
        self._session = session
        self._fields = fields
        self._runner = runner

    def _claim(
        self,
        refs: list[VmRef],
        field: str,
        value: str,
        fanout: Fanout,
        failed: dict[VmRef, str],
        order: dict[VmRef, int],
        fails_as: str = "not powered on: the resumed annotation failed",
    ) -> list[VmRef]:
        """Write the resumed annotation on each VM before its power-on; those that took it."""
        if not refs:
            return []
        written = self._fields.set(refs, field, value, fanout=fanout)
        for issue in written.failed:
            failed[issue.vm] = f"{fails_as}: {issue.reason}"
        return sorted(written.annotated, key=order.__getitem__)

    def _unclaim(
        self, refs: list[VmRef], now: dict[VmRef, VmNow], field: str, fanout: Fanout
    ) -> None:
        # Best effort: were it to fail, the next resume still sees a stopped VM with our
        # claim, and powers it on.
        for ref in refs:
            before = now[ref].annotation if ref in now else None
            if before:
                self._fields.set([ref], field, before, fanout=fanout)

    def run(
        self,
        marks: Sequence[VmMark],
        *,
        workflow_id: str,
        annotation_field: str,
        annotation_json: str,
        fanout: Fanout,
        powered_on_before: Collection[VmRef] = (),
        on_powering_on: Callable[[VmRef], None] = lambda _: None,
    ) -> ResumeOutcome:
        by_ref = {m.ref: m for m in marks}  # the last mark of a VM named twice
        refs = list(by_ref)
        order = {r: i for i, r in enumerate(refs)}
        key = self._fields.key(annotation_field)
        try:
            now, _ = read_now(self._session, refs, annotation_key=key)
        except vmodl.MethodFault as read_fault:
            raise self._session.error(read_fault, "read the VMs to resume") from None
        fanout.heartbeat(f"resume: {len(now)} of {len(refs)} VMs read")

        tally = _Tally()
        to_power = tally.judge(by_ref, now, workflow_id, powered_on_before)
        claimed = self._claim(
            to_power, annotation_field, annotation_json, fanout, tally.failed, order
        )
        ends = self._runner.run(
            claimed, _power_on, what="power-on", fanout=fanout,
            before_each=on_powering_on,  # said before acting: a retry knows, even if it hangs
        )  # fmt: skip
        to_confirm = [ref for ref, end in ends.items() if tally.ended(ref, end, self._session)]
        if to_confirm:
            try:
                states, _ = read_power_states(self._session, to_confirm)
            except vmodl.MethodFault as read_fault:
                raise self._session.error(read_fault, "confirm the power-ons") from None
            tally.confirm(to_confirm, states)
        resumed, skipped, failed = tally.resumed, tally.skipped, tally.failed
        # A claimed VM that did not come on: its annotation says again what it said before.
        self._unclaim(
            [r for r in claimed if (r not in resumed and r not in skipped) or r in failed],
            now, annotation_field, fanout,
        )  # fmt: skip

        for ref in set(tally.unclaimed) - set(self._claim(
            tally.unclaimed, annotation_field, annotation_json, fanout, failed, order,
            fails_as="powered on, but the resumed annotation failed",
        )):  # fmt: skip
            resumed.discard(ref)  # on, but its annotation could not say so: reported failed
        log.info(
            "vcenter.resume",
            workflow_id=workflow_id,
            marked=len(refs),
            resumed=len(resumed),
            skipped=len(skipped),
            failed=len(failed),
        )
        return ResumeOutcome(
            resumed=sorted(resumed, key=order.__getitem__),
            skipped=[VmIssue(r, skipped[r]) for r in sorted(skipped, key=order.__getitem__)],
            failed=[VmIssue(r, failed[r]) for r in sorted(failed, key=order.__getitem__)],
        )
