"""One vCenter task per VM, at a bounded number of calls in flight, all watched together.

How an action over many VMs runs is one `Fanout`: how many calls may be in flight, and
who hears of the progress. The tasks are started on a thread pool of the fanout's
`max_concurrency`, then watched with one batched read of their states per poll until
each has ended or `task_timeout` passes.
A per-VM refusal (a fault when starting, a task that ends in error) is a result; a
transport error (vCenter unreachable) raises `VSphereError`, for the caller to retry
the whole operation, which each caller keeps safe. Progress is told to the fanout's
`heartbeat` when a call completes or a poll is read, never on a timer, so a hung call
shows as a stall.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.vsphere.reads import TaskPacing, TaskState, wait_for_tasks
from vsphere_preemption.vsphere.sdk import vmodl
from vsphere_preemption.vsphere.soap import Connection, SoapSession, ref_of

Heartbeat = Callable[[str], None]
Start = Callable[[Connection, VmRef], Any]  # starts the task, returns it

CHECK_EVERY = 1.0  # seconds between looks at the calls in flight
T = TypeVar("T")


def _no_heartbeat(_: str) -> None:
    pass


@dataclass(frozen=True)
class Fanout:
    """How an action over many VMs runs: at most `max_concurrency` vCenter calls in flight
    (a thread pool of that size), and `heartbeat` told of the progress.

    The bound spares vCenter a burst of one call per VM at once. The heartbeat hears of
    progress as calls complete (or a poll is read), never on a timer: a call that hangs
    tells it nothing, which is how an activity above notices a stall. Raises ValueError
    for a bound below 1.
    """

    max_concurrency: int = 5
    heartbeat: Heartbeat = _no_heartbeat

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {self.max_concurrency}")


DEFAULT_FANOUT = Fanout()  # five calls in flight, progress told to no one


@dataclass(frozen=True)
class TaskEnd:
    """How one VM's task ended: `fault` is vCenter's MethodFault, or None with a `detail`."""

    ok: bool
    fault: Any = None
    detail: str = ""


class TaskRunner:
    def __init__(self, session: SoapSession, pacing: TaskPacing) -> None:
        self._session = session
        self._pacing = pacing

    def run(
        self,
        refs: Sequence[VmRef],
        start: Start,
        *,
        what: str,
        fanout: Fanout,
        before_each: Callable[[VmRef], None] = lambda _: None,
    ) -> dict[VmRef, TaskEnd]:
        """Start `start` on every VM and wait for every task.

        `before_each` hears of each VM just before its call, on the pool's thread; if it
        raises, that call is not made and the error ends the run (the calls not started
        yet are dropped).
        """
        ends: dict[VmRef, TaskEnd] = {}
        tasks: dict[VmRef, VmRef] = {}  # task -> VM
        pool = ThreadPoolExecutor(fanout.max_concurrency, thread_name_prefix="vsphere-task")
        try:
            started = self._start_each(pool, refs, start, what, fanout.heartbeat, before_each)
        finally:  # a caller's heartbeat may raise (attempt abandoned): start no more calls
            pool.shutdown(wait=False, cancel_futures=True)
        for ref in refs:
            result = started[ref]
            if isinstance(result, vmodl.MethodFault):
                ends[ref] = TaskEnd(False, fault=result)
            else:
                tasks[ref_of(result)] = ref
        ends.update(self._wait(tasks, what, fanout.heartbeat))
        return ends

    def _start_each(
        self, pool: ThreadPoolExecutor, refs: Sequence[VmRef], start: Start, what: str,
        heartbeat: Heartbeat, before_each: Callable[[VmRef], None],
    ) -> dict[VmRef, Any]:  # fmt: skip
        def call(ref: VmRef) -> Any:
            before_each(ref)
            try:
                return self._session.call(lambda conn: start(conn, ref))
            except vmodl.MethodFault as fault:
                return fault

        return call_each(self._session, pool, refs, call, what=what, heartbeat=heartbeat)

    def _wait(
        self, tasks: dict[VmRef, VmRef], what: str, heartbeat: Heartbeat
    ) -> dict[VmRef, TaskEnd]:
        ends: dict[VmRef, TaskEnd] = {}
        total = len(tasks)

        def on_poll(ended: dict[VmRef, TaskState], missing: set[VmRef]) -> None:
            for task in missing:  # vCenter forgot it (a restart): the caller looks again
                ends[tasks[task]] = TaskEnd(False, detail=f"{what} task lost")
            for task, state in ended.items():
                ok = state.state == "success"
                ends[tasks[task]] = TaskEnd(ok, fault=None if ok else state.error,
                                            detail="" if ok else "task failed")  # fmt: skip
            heartbeat(f"{what}: {len(ends)} of {total} tasks done")

        try:
            running = wait_for_tasks(
                self._session,
                list(tasks),
                on_poll,
                self._pacing,
            )
        except vmodl.MethodFault as fault:
            raise self._session.error(fault, f"read the {what} tasks") from None
        for task in running:
            ends[tasks[task]] = TaskEnd(False, detail=self._pacing.overdue(what))
        return ends


def call_each(
    session: SoapSession,
    pool: ThreadPoolExecutor,
    refs: Sequence[VmRef],
    call: Callable[[VmRef], T],
    *,
    what: str,
    heartbeat: Heartbeat,
) -> dict[VmRef, T]:
    """One call per VM on the pool, results by VM; a transport error raises VSphereError.

    Progress is heard only when a call completes, never on a timer: a hung call shows as a
    stall (and ends in the activity's heartbeat timeout). A call that raises stops the rest
    (those not started are cancelled); running the whole operation again is safe.
    """
    # Each call in a copy of the caller's context: the activity's log fields and trace span.
    futures: dict[Future[T], VmRef] = {
        pool.submit(contextvars.copy_context().run, call, ref): ref for ref in refs
    }
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=CHECK_EVERY, return_when=FIRST_COMPLETED)
        for future in done:
            exc = future.exception()
            if exc is not None:
                for other in pending:
                    other.cancel()
                acted = sum(1 for f in futures if f.done() and f.exception() is None)
                raise VSphereError(
                    f"{what} stopped after {acted} of {len(refs)} calls: "
                    f"{session.error(exc, what)}; running it again is safe"
                ) from None
        if done:
            heartbeat(f"{what}: {len(futures) - len(pending)} of {len(futures)} calls done")
    return {ref: future.result() for future, ref in futures.items()}
