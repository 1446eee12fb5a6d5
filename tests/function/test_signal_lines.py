"""function/signal_lines.py: one signal in flight per alarm and entity, raises merged behind it,
lowerings in order, each event answered with the outcome of the signal that carried it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.function.signal_lines import Delivered, SignalLines
from vsphere_preemption.wire import WorkflowRequest


def raised(event_id: str, criticality: Criticality = Criticality.MEDIUM) -> WorkflowRequest:
    event = {"specversion": "1.0", "id": event_id, "source": "vc", "type": "alarm"}
    return WorkflowRequest(tag="preemptible", criticality=criticality, event=event)


class Temporal:
    """Records what it was sent; each call waits until the test lets it through."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, Any]] = []
        self.gate = asyncio.Event()
        self.failing: set[str] = set()  # the event ids whose signal Temporal refuses

    async def signal(self, request: WorkflowRequest) -> str:
        self.calls.append((time.monotonic(), "signal", request))
        await self.gate.wait()
        if request.event["id"] in self.failing:
            raise RuntimeError("Temporal refused")
        return f"run-of-{request.event['id']}"

    async def cancel(self) -> str:
        self.calls.append((time.monotonic(), "cancel", None))
        await self.gate.wait()
        return "cancelled"


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_raises_that_arrive_during_a_signal_ride_the_next_one_merged() -> None:
    lines, temporal = SignalLines(spacing=0), Temporal()
    key = ("alarm/domain-c7", "domain-c7")
    first = asyncio.ensure_future(lines.raise_(key, raised("e1"), temporal.signal))
    await settle()
    later = [
        asyncio.ensure_future(lines.raise_(key, raised(f"e{n}", c), temporal.signal))
        for n, c in ((2, Criticality.LOW), (3, Criticality.HIGH), (4, Criticality.MEDIUM))
    ]
    await settle()
    assert len(temporal.calls) == 1  # one in flight; the others wait, unanswered
    assert not any(f.done() for f in later)
    temporal.gate.set()
    assert await first == Delivered("run-of-e1", 1, "e1")
    answers = await asyncio.gather(*later)
    # One signal for the three: the latest event, the most severe criticality.
    assert [call[1] for call in temporal.calls] == ["signal", "signal"]
    sent = temporal.calls[1][2]
    assert (sent.event["id"], sent.criticality) == ("e4", Criticality.HIGH)
    assert answers == [Delivered("run-of-e4", 3, "e4")] * 3
    await settle()
    assert len(lines) == 0  # a quiet line keeps nothing


async def test_a_failed_signal_fails_every_event_it_carried_and_the_next_goes_on() -> None:
    lines, temporal = SignalLines(spacing=0), Temporal()
    temporal.failing = {"e3"}
    first = asyncio.ensure_future(lines.raise_("k", raised("e1"), temporal.signal))
    await settle()
    waiting = [
        asyncio.ensure_future(lines.raise_("k", raised(e), temporal.signal)) for e in ["e2", "e3"]
    ]
    await settle()
    temporal.gate.set()
    assert (await first).carried == 1
    for answer in waiting:  # both rode the signal of e3, which failed
        with pytest.raises(RuntimeError, match="Temporal refused"):
            await answer
    # The broker redelivers them: signalled again.
    temporal.failing = set()
    assert (await lines.raise_("k", raised("e3"), temporal.signal)).carried == 1


async def test_a_lowering_goes_after_the_raises_before_it_and_is_never_merged() -> None:
    lines, temporal = SignalLines(spacing=0), Temporal()
    first = asyncio.ensure_future(lines.raise_("k", raised("e1"), temporal.signal))
    await settle()
    second = asyncio.ensure_future(lines.raise_("k", raised("e2"), temporal.signal))
    lowered = asyncio.ensure_future(lines.lower("k", temporal.cancel))
    third = asyncio.ensure_future(lines.raise_("k", raised("e3"), temporal.signal))
    await settle()
    temporal.gate.set()
    await asyncio.gather(first, second, lowered, third)
    order = [(kind, None if r is None else r.event["id"]) for _, kind, r in temporal.calls]
    assert order == [("signal", "e1"), ("signal", "e2"), ("cancel", None), ("signal", "e3")]
    assert await lowered == "cancelled"


async def test_signals_of_one_line_are_spaced_and_other_lines_are_not_held() -> None:
    lines, temporal = SignalLines(spacing=0.2), Temporal()
    temporal.gate.set()
    started = time.monotonic()
    await lines.raise_("k", raised("e1"), temporal.signal)
    await lines.raise_("other", raised("o1"), temporal.signal)
    assert time.monotonic() - started < 0.15  # the first of each line goes at once
    await lines.raise_("k", raised("e2"), temporal.signal)
    times = {r.event["id"]: t for t, _, r in temporal.calls}
    assert times["e2"] - times["e1"] >= 0.19
    # A lowering does not wait for the spacing.
    before = time.monotonic()
    await lines.lower("k", temporal.cancel)
    assert time.monotonic() - before < 0.1
