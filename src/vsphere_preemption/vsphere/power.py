"""Stopping VMs (power off, guest shutdown, suspend) and confirming it, at a bounded
number of calls in flight.

Where the Go worker fired `PowerOffVM_Task` or `ShutdownGuest` and moved on, this
waits: a VM counts as stopped only once vCenter says so (task succeeded, or its
power state reads `poweredOff`, or `suspended` for a suspend).

- hard (`StopAction.POWER_OFF`): `PowerOffVM_Task` per VM, then all tasks are watched
  with one batched read per poll.
- suspend (`StopAction.SUSPEND`): `SuspendVM_Task` per VM, watched the same way; a VM
  suspended or off already counts as done.
- soft (`StopAction.SHUTDOWN`): `ShutdownGuest` per VM, then all power states are
  polled with one batched read per poll until every VM is off or the grace period ends
  (it starts once every shutdown request is in); the VMs still on are forced
  (`forced_after_grace`). A VM whose guest shutdown vCenter refuses (no VMware Tools,
  suspended, busy...) is forced at once, with vCenter's reason (`forced_without_grace`):
  waiting could not help it.
- Safe to run twice: VMs already off (or suspended, for a suspend) are counted as
  stopped without a call; a call that finds the VM so already (`InvalidPowerState`)
  counts it too.
- Then one batched read takes each stopped VM's mark (`VmMark`: change version, host,
  resource pool, power state), which also confirms it: a VM found powered on again
  there is a failure, not a stopped VM.
- vCenter's per-VM refusals are results (`failed`, with the reason); losing vCenter
  itself (unreachable, login refused) raises `VSphereError`, so the caller's retry
  policy can run the whole operation again, which is safe.
- The caller's `Fanout` says how it runs: its `max_concurrency` bounds the calls in
  flight (a thread pool of that size; polls happen between phases, never beside them),
  and its `heartbeat` hears of the progress when a call completes, never on a timer: a
  call that hangs reports nothing, which is how the activity above notices it. Tasks,
  once accepted, run in vCenter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

from vsphere_preemption.domain.model import PowerOffOutcome, StopAction, VmIssue, VmMark, VmRef
from vsphere_preemption.domain.resume import VmNow
from vsphere_preemption.domain.selection import VIRTUAL_MACHINE, PowerState, dedupe
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.reads import (
    TaskPacing,
    TaskState,
    read_now,
    read_power_states,
    wait_for_tasks,
)
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import SoapSession, ref_of
from vsphere_preemption.vsphere.tasks import Fanout, Heartbeat, call_each

log = get_logger(__name__)

VANISHED = "virtual machine not found (deleted?)"
SUSPENDED = "suspended"


@dataclass(frozen=True)
class Method:
    """A stopping task: its name, its words for messages, the states that mean done."""

    name: str
    what: str
    done: frozenset[str]


POWER_OFF_TASK = Method("PowerOffVM_Task", "power-off", frozenset({PowerState.POWERED_OFF}))
SUSPEND_TASK = Method("SuspendVM_Task", "suspend", frozenset({PowerState.POWERED_OFF, SUSPENDED}))


class Kind(Enum):
    ACCEPTED = "accepted"  # guest shutdown requested / power-off task started
    ALREADY_OFF = "already off"
    GONE = "gone"
    REFUSED = "refused"


@dataclass(frozen=True)
class CallResult:
    kind: Kind
    detail: str = ""  # the fault text when refused
    task: VmRef | None = None


@dataclass
class Tally:
    """What happened to each VM so far; lists come out in the caller's order."""

    order: dict[VmRef, int]
    powered_off: set[VmRef] = field(default_factory=set)
    failed: dict[VmRef, str] = field(default_factory=dict)
    forced_after_grace: set[VmRef] = field(default_factory=set)
    forced_without_grace: dict[VmRef, str] = field(default_factory=dict)
    marks: dict[VmRef, VmMark] = field(default_factory=dict)

    def _sorted(self, refs: Iterable[VmRef]) -> list[VmRef]:
        return sorted(refs, key=self.order.__getitem__)

    def outcome(self) -> PowerOffOutcome:
        return PowerOffOutcome(
            powered_off=self._sorted(self.powered_off),
            failed=[VmIssue(r, self.failed[r]) for r in self._sorted(self.failed)],
            forced_after_grace=self._sorted(self.forced_after_grace),
            forced_without_grace=[
                VmIssue(r, self.forced_without_grace[r])
                for r in self._sorted(self.forced_without_grace)
            ],
            marks=[self.marks[r] for r in self._sorted(self.marks)],
        )


def _is_off_already(fault: Any, done: frozenset[str] = POWER_OFF_TASK.done) -> bool:
    """The call found the VM in a state that means done already (a retry, or someone else)."""
    return isinstance(fault, vim.fault.InvalidPowerState) and fault.existingState in done


def _mark(ref: VmRef, seen: VmNow) -> VmMark:
    return VmMark(
        ref=ref,
        change_version=seen.change_version,
        host=seen.host,
        resource_pool=seen.resource_pool,
        power_state=seen.power_state,
    )


class PowerOff:
    def __init__(
        self,
        session: SoapSession,
        pacing: TaskPacing,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session
        self._pacing = pacing
        self._clock = clock
        self._sleep = sleep

    def run(
        self,
        vms: Sequence[VmRef],
        *,
        action: StopAction,
        soft_shutdown_grace: timedelta,
        fanout: Fanout,
    ) -> PowerOffOutcome:
        heartbeat = fanout.heartbeat
        refs = dedupe(vms)
        tally = Tally(order={r: i for i, r in enumerate(refs)})
        candidates = []
        for ref in refs:
            if ref.type == VIRTUAL_MACHINE:
                candidates.append(ref)
            else:
                tally.failed[ref] = f"not a virtual machine ({ref.type})"
        method = SUSPEND_TASK if action is StopAction.SUSPEND else POWER_OFF_TASK
        try:
            now, missing = read_now(self._session, candidates)
        except vmodl.MethodFault as fault:
            raise self._session.error(fault, "read VM power states") from None
        heartbeat(f"{action.value}: power states read")
        for ref in missing:
            tally.failed[ref] = VANISHED
        # Stopped already (a retry after a crash, or someone else): confirmed and marked
        # from this same read, no new call.
        for ref, seen in now.items():
            if seen.power_state in method.done:
                tally.powered_off.add(ref)
                tally.marks[ref] = _mark(ref, seen)
        running = [r for r in candidates if r in now and r not in tally.powered_off]

        pool = ThreadPoolExecutor(fanout.max_concurrency, thread_name_prefix="vsphere-power")
        try:
            if action is StopAction.SHUTDOWN:
                to_stop = self._soft(pool, running, soft_shutdown_grace, tally, heartbeat)
            else:
                to_stop = running
            self._hard(pool, to_stop, tally, heartbeat, method)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        self._mark(tally, method, heartbeat)
        outcome = tally.outcome()
        log.info(
            "vcenter.stop",
            action=action.value,
            requested=len(refs),
            powered_off=len(outcome.powered_off),
            failed=len(outcome.failed),
            forced_after_grace=len(outcome.forced_after_grace),
            forced_without_grace=len(outcome.forced_without_grace),
        )
        return outcome

    # -- soft -----------------------------------------------------------------------

    def _soft(
        self,
        pool: ThreadPoolExecutor,
        running: list[VmRef],
        grace: timedelta,
        tally: Tally,
        heartbeat: Heartbeat,
    ) -> list[VmRef]:
        """Ask every guest to shut down; wait; return the VMs to force."""
        results = self._each(pool, running, self._shutdown_guest, "guest shutdown", heartbeat)
        waiting: list[VmRef] = []
        refused: list[VmRef] = []
        for ref in running:
            result = results[ref]
            if result.kind is Kind.ACCEPTED:
                waiting.append(ref)
            elif result.kind is Kind.ALREADY_OFF:
                tally.powered_off.add(ref)
            elif result.kind is Kind.GONE:
                tally.failed[ref] = VANISHED
            else:
                refused.append(ref)
                tally.forced_without_grace[ref] = f"guest shutdown refused: {result.detail}"
        deadline = self._clock() + grace.total_seconds()
        still_on = self._wait_off(waiting, deadline, tally, heartbeat)
        tally.forced_after_grace.update(still_on)
        if still_on:
            log.info("vcenter.grace_expired", vms=[r.value for r in still_on])
        return refused + still_on

    def _shutdown_guest(self, ref: VmRef) -> CallResult:
        try:
            self._session.call(lambda conn: conn.managed(ref).ShutdownGuest())
        except vmodl.MethodFault as fault:
            return self._fault_result(fault)
        return CallResult(Kind.ACCEPTED)

    def _wait_off(
        self, waiting: list[VmRef], deadline: float, tally: Tally, heartbeat: Heartbeat
    ) -> list[VmRef]:
        interval = min(0.1, self._pacing.poll_interval)
        total = len(waiting)
        while waiting:
            states, missing = self._read_power(waiting)
            for ref in missing:
                tally.failed[ref] = VANISHED
            for ref, state in states.items():
                if state == PowerState.POWERED_OFF:
                    tally.powered_off.add(ref)
            waiting = [r for r in waiting if r in states and r not in tally.powered_off]
            left = deadline - self._clock()
            if not waiting or left <= 0:
                break
            heartbeat(
                f"soft shutdown: {total - len(waiting)} of {total} off, {left:.0f}s of grace left"
            )
            self._sleep(min(interval, left))
            interval = min(interval * 2, self._pacing.poll_interval)
        return waiting

    # -- hard -----------------------------------------------------------------------

    def _hard(
        self,
        pool: ThreadPoolExecutor,
        refs: list[VmRef],
        tally: Tally,
        heartbeat: Heartbeat,
        method: Method = POWER_OFF_TASK,
    ) -> None:
        def start(ref: VmRef) -> CallResult:
            return self._start_task(ref, method)

        results = self._each(pool, refs, start, method.what, heartbeat)
        tasks: dict[VmRef, VmRef] = {}
        for ref in refs:
            result = results[ref]
            if result.kind is Kind.ACCEPTED and result.task is not None:
                tasks[result.task] = ref
            elif result.kind is Kind.ALREADY_OFF:
                tally.powered_off.add(ref)
            elif result.kind is Kind.GONE:
                tally.failed[ref] = VANISHED
            else:
                tally.failed[ref] = self._failure(tally, ref, result.detail, method)
        self._wait_tasks(tasks, tally, heartbeat, method)

    def _start_task(self, ref: VmRef, method: Method) -> CallResult:
        try:
            task = self._session.call(lambda conn: getattr(conn.managed(ref), method.name)())
        except vmodl.MethodFault as fault:
            return self._fault_result(fault, method.done)
        return CallResult(Kind.ACCEPTED, task=ref_of(task))

    def _wait_tasks(
        self,
        tasks: dict[VmRef, VmRef],
        tally: Tally,
        heartbeat: Heartbeat,
        method: Method = POWER_OFF_TASK,
    ) -> None:
        total = len(tasks)
        lost: list[VmRef] = []

        def on_poll(ended: dict[VmRef, TaskState], missing: set[VmRef]) -> None:
            for task in missing:  # vCenter forgot the task (restart): ask the VM instead
                lost.append(tasks[task])
            for task, state in ended.items():
                ref = tasks[task]
                if state.state == "success" or _is_off_already(state.error, method.done):
                    tally.powered_off.add(ref)
                else:
                    detail = self._session.text(state.error) if state.error else "task failed"
                    tally.failed[ref] = self._failure(tally, ref, detail, method)

        running = wait_for_tasks(
            self._session,
            list(tasks),
            on_poll,
            self._pacing,
            waiting=lambda left: heartbeat(f"{method.what}: {total - left} of {total} tasks done"),
            clock=self._clock,
            sleep=self._sleep,
        )
        for task in running:
            tally.failed[tasks[task]] = self._pacing.overdue(method.what)
        if lost:
            states_now, missing_now = self._read_power(lost)
            for ref in lost:
                if states_now.get(ref) in method.done:
                    tally.powered_off.add(ref)
                else:
                    lost_task = f"{method.what} task lost"
                    tally.failed[ref] = VANISHED if ref in missing_now else lost_task

    # -- marks ----------------------------------------------------------------------

    def _mark(self, tally: Tally, method: Method, heartbeat: Heartbeat) -> None:
        """Each VM stopped by this run as left, in one batched read; one found running is not
        stopped. A VM deleted since it stopped stays stopped, without a mark (nothing to
        resume). VMs stopped before the run were marked by its first read.
        """
        stopped = sorted(tally.powered_off - set(tally.marks), key=tally.order.__getitem__)
        if not stopped:
            return
        try:
            now, _ = read_now(self._session, stopped)
        except vmodl.MethodFault as fault:
            raise self._session.error(fault, "read the stopped VMs") from None
        heartbeat(f"{method.what}: {len(now)} stopped VM(s) marked")
        for ref, seen in now.items():
            if seen.power_state not in method.done:
                tally.powered_off.discard(ref)
                tally.failed[ref] = f"{method.what} done, but the VM is {seen.power_state} now"
                continue
            tally.marks[ref] = _mark(ref, seen)

    # -- helpers --------------------------------------------------------------------

    def _failure(
        self, tally: Tally, ref: VmRef, detail: str, method: Method = POWER_OFF_TASK
    ) -> str:
        first = tally.forced_without_grace.get(ref)
        failed = f"{method.what} failed: {detail}"
        return f"{first}; {failed}" if first else failed

    def _fault_result(self, fault: Any, done: frozenset[str] = POWER_OFF_TASK.done) -> CallResult:
        if _is_off_already(fault, done):
            return CallResult(Kind.ALREADY_OFF)
        if isinstance(fault, vmodl.fault.ManagedObjectNotFound):
            return CallResult(Kind.GONE)
        return CallResult(Kind.REFUSED, detail=self._session.text(fault))

    def _read_power(self, refs: list[VmRef]) -> tuple[dict[VmRef, str], set[VmRef]]:
        try:
            return read_power_states(self._session, refs)
        except vmodl.MethodFault as fault:
            raise self._session.error(fault, "read VM power states") from None

    def _each(
        self,
        pool: ThreadPoolExecutor,
        refs: list[VmRef],
        call: Callable[[VmRef], CallResult],
        what: str,
        heartbeat: Heartbeat,
    ) -> dict[VmRef, CallResult]:
        """One call per VM on the pool; heartbeat as they complete; transport errors raise."""
        return call_each(self._session, pool, refs, call, what=what, heartbeat=heartbeat)
