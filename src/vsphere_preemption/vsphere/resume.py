"""Powering on again the VMs a workflow stopped, unless someone touched them since.

1. One batched read of every marked VM as it is now: power state, change version,
   host, resource pool and our annotation (the custom field).
2. `domain.resume.judge` decides per VM: resume, resumed already (an earlier attempt
   did it), or skip with the reason (deleted, powered on by hand, reconfigured,
   moved, annotation removed or replaced).
3. `PowerOnVM_Task` per VM to resume, watched together; then one batched read
   confirms each is `poweredOn`.
4. The resumed annotation is written on every resumed VM (the same value again for
   those resumed already: idempotent).

Safe to run again: a VM whose annotation says this workflow resumed it counts as
resumed; a VM an earlier attempt set out to power on (`on_powering_on`, said before
the call) and that is on now is named by the caller (`powered_on_before`, from the
activity's heartbeat) and counts as resumed too, never as "powered on by hand".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from vsphere_preemption.domain.model import ResumeOutcome, VmIssue, VmMark, VmRef
from vsphere_preemption.domain.resume import DELETED, POWERED_ON, POWERED_ON_BY_HAND, Verdict, judge
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.fields import CustomFields
from vsphere_preemption.vsphere.reads import read_now, read_power_states
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import Connection, SoapSession
from vsphere_preemption.vsphere.tasks import TaskRunner

log = get_logger(__name__)

Heartbeat = Callable[[str], None]


def _power_on(conn: Connection, ref: VmRef) -> object:
    return conn.managed(ref).PowerOnVM_Task()


class Resume:
    def __init__(self, session: SoapSession, fields: CustomFields, runner: TaskRunner) -> None:
        self._session = session
        self._fields = fields
        self._runner = runner

    def run(
        self,
        marks: Sequence[VmMark],
        *,
        workflow_id: str,
        annotation_field: str,
        annotation_json: str,
        max_concurrency: int,
        heartbeat: Heartbeat,
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
        heartbeat(f"resume: {len(now)} of {len(refs)} VMs read")

        resumed: set[VmRef] = set()
        skipped: dict[VmRef, str] = {}
        failed: dict[VmRef, str] = {}
        to_power: list[VmRef] = []
        for ref in refs:
            judgement = judge(
                by_ref[ref], now.get(ref), workflow_id, powered_on_by_us=ref in powered_on_before
            )
            if judgement.verdict is Verdict.RESUME:
                to_power.append(ref)
            elif judgement.verdict is Verdict.RESUMED_ALREADY:
                resumed.add(ref)
            else:
                skipped[ref] = judgement.reason

        ends = self._runner.run(
            to_power, _power_on, what="power-on", max_concurrency=max_concurrency,
            heartbeat=heartbeat,
            before_each=on_powering_on,  # said before acting: a retry knows, even if it hangs
        )  # fmt: skip
        to_confirm: list[VmRef] = []
        for ref, end in ends.items():
            fault = end.fault
            if end.ok or (fault is None and end.detail.endswith("task lost")):
                to_confirm.append(ref)  # the power state says how it ended
            elif isinstance(fault, vmodl.fault.ManagedObjectNotFound):
                skipped[ref] = DELETED
            elif isinstance(fault, vim.fault.InvalidPowerState) and (
                fault.existingState == POWERED_ON
            ):
                skipped[ref] = POWERED_ON_BY_HAND  # in the instant since we read it
            else:
                why = self._session.text(fault) if fault is not None else end.detail
                failed[ref] = f"power-on failed: {why}"
        if to_confirm:
            try:
                states, _ = read_power_states(self._session, to_confirm)
            except vmodl.MethodFault as read_fault:
                raise self._session.error(read_fault, "confirm the power-ons") from None
            for ref in to_confirm:
                state = states.get(ref)
                if state == POWERED_ON:
                    resumed.add(ref)
                elif state is None:
                    skipped[ref] = DELETED
                else:
                    failed[ref] = f"power-on done, but the VM is {state}"

        if resumed:
            annotated = self._fields.set(
                sorted(resumed, key=order.__getitem__),
                annotation_field,
                annotation_json,
                max_concurrency=max_concurrency,
                heartbeat=heartbeat,
            )
            for issue in annotated.failed:
                resumed.discard(issue.vm)
                failed[issue.vm] = f"powered on, but the resumed annotation failed: {issue.reason}"

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
