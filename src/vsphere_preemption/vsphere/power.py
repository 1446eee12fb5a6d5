"""Powering VMs off and confirming it, at a bounded number of calls in flight.

Where the Go worker fired `PowerOffVM_Task` or `ShutdownGuest` and moved on, this
waits: a VM counts as powered off only once vCenter says so (task succeeded, or its
power state reads `poweredOff`).

- hard (`force`): `PowerOffVM_Task` per VM, then all tasks are watched with one
  batched read per poll.
- soft: `ShutdownGuest` per VM, then all power states are polled with one batched
  read per poll until every VM is off or the grace period ends (it starts once every
  shutdown request is in); the VMs still on are forced (`forced_after_grace`). A VM
  whose guest shutdown vCenter refuses (no VMware Tools, suspended, busy...) is forced
  at once, with vCenter's reason
  (`forced_without_grace`): waiting could not help it.
- Safe to run twice: VMs already off are counted as powered off without a call; a
  call that finds the VM already off (`InvalidPowerState`) counts it too.
- vCenter's per-VM refusals are results (`failed`, with the reason); losing vCenter
  itself (unreachable, login refused) raises `VSphereError`, so the caller's retry
  policy can run the whole operation again, which is safe.
- `max_concurrency` bounds the calls in flight (a thread pool of that size; polls
  happen between phases, never beside them). Tasks, once accepted, run in vCenter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

from vsphere_preemption.domain.model import PowerOffOutcome, VmIssue, VmRef
from vsphere_preemption.domain.selection import VIRTUAL_MACHINE, PowerState, dedupe
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.vsphere.reads import TaskState, read_power_states, wait_for_tasks
from vsphere_preemption.vsphere.sdk import vim, vmodl
from vsphere_preemption.vsphere.soap import SoapSession, ref_of

log = get_logger(__name__)

Heartbeat = Callable[[str], None]

HEARTBEAT_EVERY = 1.0  # seconds between heartbeats while calls are in flight
VANISHED = "virtual machine not found (deleted?)"


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

    def _sorted(self, refs: Sequence[VmRef] | set[VmRef] | dict[VmRef, str]) -> list[VmRef]:
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
        )


def _is_off_already(fault: Any) -> bool:
    return (
        isinstance(fault, vim.fault.InvalidPowerState)
        and fault.existingState == PowerState.POWERED_OFF
    )


class PowerOff:
    def __init__(
        self,
        session: SoapSession,
        *,
        poll_interval: float = 1.0,
        task_timeout: timedelta = timedelta(minutes=2),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session
        self._poll_interval = poll_interval
        self._task_timeout = task_timeout.total_seconds()
        self._clock = clock
        self._sleep = sleep

    def run(
        self,
        vms: Sequence[VmRef],
        *,
        force: bool,
        soft_shutdown_grace: timedelta,
        max_concurrency: int,
        heartbeat: Heartbeat,
    ) -> PowerOffOutcome:
        # max_concurrency was checked by VSphereClient.power_off, the only caller.
        refs = dedupe(vms)
        tally = Tally(order={r: i for i, r in enumerate(refs)})
        candidates = []
        for ref in refs:
            if ref.type == VIRTUAL_MACHINE:
                candidates.append(ref)
            else:
                tally.failed[ref] = f"not a virtual machine ({ref.type})"
        states, missing = self._read_power(candidates)
        for ref in missing:
            tally.failed[ref] = VANISHED
        # Off already (a retry after a crash, or someone else): confirmed, no new call.
        tally.powered_off.update(r for r, s in states.items() if s == PowerState.POWERED_OFF)
        running = [r for r in candidates if r in states and r not in tally.powered_off]

        pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="vsphere-power")
        try:
            if force:
                to_force = running
            else:
                to_force = self._soft(pool, running, soft_shutdown_grace, tally, heartbeat)
            self._hard(pool, to_force, tally, heartbeat)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        outcome = tally.outcome()
        log.info(
            "vcenter.power_off",
            force=force,
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
        interval = min(0.1, self._poll_interval)
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
            interval = min(interval * 2, self._poll_interval)
        return waiting

    # -- hard -----------------------------------------------------------------------

    def _hard(
        self, pool: ThreadPoolExecutor, refs: list[VmRef], tally: Tally, heartbeat: Heartbeat
    ) -> None:
        results = self._each(pool, refs, self._power_off_task, "power-off", heartbeat)
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
                tally.failed[ref] = self._failure(tally, ref, result.detail)
        self._wait_tasks(tasks, tally, heartbeat)

    def _power_off_task(self, ref: VmRef) -> CallResult:
        try:
            task = self._session.call(lambda conn: conn.managed(ref).PowerOffVM_Task())
        except vmodl.MethodFault as fault:
            return self._fault_result(fault)
        return CallResult(Kind.ACCEPTED, task=ref_of(task))

    def _wait_tasks(self, tasks: dict[VmRef, VmRef], tally: Tally, heartbeat: Heartbeat) -> None:
        total = len(tasks)
        lost: list[VmRef] = []

        def on_poll(ended: dict[VmRef, TaskState], missing: set[VmRef]) -> None:
            for task in missing:  # vCenter forgot the task (restart): ask the VM instead
                lost.append(tasks[task])
            for task, state in ended.items():
                ref = tasks[task]
                if state.state == "success" or _is_off_already(state.error):
                    tally.powered_off.add(ref)
                else:
                    detail = self._session.text(state.error) if state.error else "task failed"
                    tally.failed[ref] = self._failure(tally, ref, detail)

        running = wait_for_tasks(
            self._session,
            list(tasks),
            on_poll,
            timeout=self._task_timeout,
            poll_interval=self._poll_interval,
            waiting=lambda left: heartbeat(f"power-off: {total - left} of {total} tasks done"),
            clock=self._clock,
            sleep=self._sleep,
        )
        for task in running:
            tally.failed[tasks[task]] = (
                f"power-off task still running after {self._task_timeout:.0f}s"
            )
        if lost:
            states_now, missing_now = self._read_power(lost)
            for ref in lost:
                if states_now.get(ref) == PowerState.POWERED_OFF:
                    tally.powered_off.add(ref)
                else:
                    tally.failed[ref] = VANISHED if ref in missing_now else "power-off task lost"

    # -- helpers --------------------------------------------------------------------

    def _failure(self, tally: Tally, ref: VmRef, detail: str) -> str:
        first = tally.forced_without_grace.get(ref)
        return f"{first}; power-off failed: {detail}" if first else f"power-off failed: {detail}"

    def _fault_result(self, fault: Any) -> CallResult:
        if _is_off_already(fault):
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
        """One call per VM on the pool; heartbeat while they run; transport errors raise."""
        futures: dict[Future[CallResult], VmRef] = {pool.submit(call, ref): ref for ref in refs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=HEARTBEAT_EVERY, return_when=FIRST_EXCEPTION)
            for future in done:
                exc = future.exception()
                if exc is not None:
                    for other in pending:
                        other.cancel()
                    acted = sum(1 for f in futures if f.done() and f.exception() is None)
                    raise VSphereError(
                        f"{what} stopped after {acted} of {len(refs)} calls: "
                        f"{self._session.error(exc, what)}; running it again is safe"
                    ) from None
            if pending:
                heartbeat(f"{what}: {len(futures) - len(pending)} of {len(futures)} calls done")
        return {ref: future.result() for future, ref in futures.items()}
