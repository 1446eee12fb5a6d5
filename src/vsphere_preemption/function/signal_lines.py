"""One line of signals per alarm and entity: what keeps a storm of events from flooding a workflow.

A workflow takes every signal into its history, and Temporal refuses a workflow's
continue-as-new while signals keep arriving (temporalio/temporal#1289): a storm sent through
as it came grew one run's history past 3,000 events, until its workflow tasks outlasted the
deadlock detector and it never answered again (issue 16). So, per (workflow ID, entity), a
replica of the function:

- has at most one signal in flight;
- merges the raising events that arrive meanwhile into the next signal: the most severe
  criticality, the latest event (the workflow would coalesce them to the same run anyway);
- sends that next signal no sooner than `spacing` after the one before, so the workflow has
  quiet gaps in which its continue-as-new completes (BENCHMARKS.md, "Signal storm");
- passes a lowering (a cancel) through at once, in order after the raises before it, and
  starts a new signal for the raises after it (never merged across a lowering).

Nothing is lost: each event's answer waits for the signal that carries it, so it is a 2xx
only once Temporal accepted that signal, and the signal's error (a 5xx, the broker redelivers)
when it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.wire import WorkflowRequest

T = TypeVar("T")

# A replica's least time between two signals to one workflow and entity (SIGNAL_SPACING). The
# first raise goes at once; later ones wait at most this long, merged. Measured with two
# replicas sending without pause (bench/signal_storm.py, BENCHMARKS.md): one signal in flight
# each already lets continue-as-new through within a few dozen events, but a dozen of its
# attempts a minute met a signal and failed their workflow task; 0.1 s between signals left
# none or one, and still passes a raise that matters (the first, or a more severe one after a
# run) within a tenth of a second.
SPACING = 0.1

Send = Callable[[WorkflowRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Delivered:
    """What a signal that carried an event did: Temporal's answer, and how many events it
    carried (1: this one alone) and the id of the event it carried (the latest merged)."""

    result: Any
    carried: int
    signal_event_id: str


@dataclass
class _Raise:
    request: WorkflowRequest
    send: Send
    waiters: list[asyncio.Future[Delivered]] = field(default_factory=list)
    sending: bool = False  # sent (or being sent): it takes no more events


@dataclass
class _Lower:
    act: Callable[[], Awaitable[Any]]
    waiter: asyncio.Future[Any]


@dataclass
class _Line:
    queue: deque[_Raise | _Lower] = field(default_factory=deque)
    last_signal: float = -1e18  # monotonic time the last signal was sent
    task: asyncio.Task[None] | None = None
    woken: asyncio.Event = field(default_factory=asyncio.Event)  # something joined the queue


class SignalLines:
    def __init__(self, spacing: float = SPACING, clock: Callable[[], float] = time.monotonic):
        self.spacing = spacing
        self._clock = clock
        self._lines: dict[Hashable, _Line] = {}

    def __len__(self) -> int:
        return len(self._lines)

    async def raise_(self, key: Hashable, request: WorkflowRequest, send: Send) -> Delivered:
        """Deliver `request` (a raise) in the next signal of `key`'s line; what it did.

        Raises what `send` raised for the signal that carried it."""
        line = self._line(key)
        waiter: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        tail = line.queue[-1] if line.queue else None
        if isinstance(tail, _Raise) and not tail.sending:
            tail.request = merge(tail.request, request)
            tail.waiters.append(waiter)
        else:
            line.queue.append(_Raise(request, send, [waiter]))
        self._drain(key, line)
        return await asyncio.shield(waiter)  # a client gone away does not stop the signal

    async def lower(self, key: Hashable, act: Callable[[], Awaitable[T]]) -> T:
        """Run `act` (a cancel) after the raises of `key` before it; its result or error."""
        line = self._line(key)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        line.queue.append(_Lower(act, waiter))
        self._drain(key, line)
        result: T = await asyncio.shield(waiter)
        return result

    def _line(self, key: Hashable) -> _Line:
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line()
        return line

    def _drain(self, key: Hashable, line: _Line) -> None:
        line.woken.set()
        if line.task is None or line.task.done():
            line.task = asyncio.create_task(self._run(key, line))

    async def _run(self, key: Hashable, line: _Line) -> None:
        try:
            while await self._step(line):
                pass
        finally:
            self._close(key, line)

    async def _step(self, line: _Line) -> bool:
        """One turn of the line: the lowering or the signal at its head, or a wait; False
        when the line is done (empty, and its spacing over)."""
        if not line.queue:
            return await self._linger(line)
        head = line.queue[0]
        if isinstance(head, _Lower):
            await _settle(head.waiter, head.act)
            line.queue.popleft()
            return True
        rest = self._rest(line)
        if rest > 0:
            await asyncio.sleep(rest)  # raises arriving meanwhile merge into head
            return True
        await self._signal(line, head)
        return True

    async def _linger(self, line: _Line) -> bool:
        """An empty line stays for the rest of the spacing, so that a raise arriving now waits
        it too; False once that is over (then the line goes: a quiet entity keeps nothing)."""
        rest = self._rest(line)
        if rest <= 0:
            return False
        line.woken.clear()
        with contextlib.suppress(TimeoutError):  # a lowering must not wait
            await asyncio.wait_for(line.woken.wait(), rest)
        return True

    def _rest(self, line: _Line) -> float:
        """How long until the line may signal again (<= 0: now)."""
        return line.last_signal + self.spacing - self._clock()

    async def _signal(self, line: _Line, head: _Raise) -> None:
        """Send the head's signal (from now on it takes no more events), then answer every
        event it carried with what Temporal did."""
        head.sending = True
        line.last_signal = self._clock()
        request = head.request
        try:
            result = await head.send(request)
        except Exception as exc:  # noqa: BLE001 (each waiter answers with it)
            outcome: BaseException | Delivered = exc
        else:
            outcome = Delivered(result, len(head.waiters), _event_id(request))
        line.queue.popleft()
        for waiter in head.waiters:
            if waiter.done():
                continue
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)

    def _close(self, key: Hashable, line: _Line) -> None:
        """The line goes. Cancelled (the app stops): nobody will answer what still waits."""
        for op in line.queue:
            for waiter in op.waiters if isinstance(op, _Raise) else [op.waiter]:
                waiter.cancel()
        line.queue.clear()
        if self._lines.get(key) is line:
            del self._lines[key]


async def _settle(waiter: asyncio.Future[Any], act: Callable[[], Awaitable[Any]]) -> None:
    try:
        result = await act()
    except Exception as exc:  # noqa: BLE001 (the waiter answers with it)
        if not waiter.done():
            waiter.set_exception(exc)
        return
    if not waiter.done():
        waiter.set_result(result)


def merge(waiting: WorkflowRequest, arriving: WorkflowRequest) -> WorkflowRequest:
    """The arriving request at the more severe of the two criticalities (its event: the latest)."""
    severity = list(Criticality)
    worst = max(waiting.criticality, arriving.criticality, key=severity.index)
    return arriving if worst is arriving.criticality else replace(arriving, criticality=worst)


def _event_id(request: WorkflowRequest) -> str:
    return str(request.event.get("id", ""))
