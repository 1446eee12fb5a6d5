"""The function's memory of events acted on: bounded by count and by age, per pair."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from vsphere_preemption.function.recent import RecentEvents, event_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_event_is_its_source_and_id_together() -> None:
    assert event_key("s", "1") == event_key("s", "1")
    assert event_key("s", "1") != event_key("t", "1")
    assert event_key("ab", "c") != event_key("a", "bc")  # no two pairs share a name
    assert len(event_key("s", "x" * 1_000_000)) == 32  # a digest, whatever the size


def test_events_are_forgotten_after_the_window() -> None:
    clock = Clock()
    recent = RecentEvents(10, timedelta(minutes=10), clock)
    recent.remember(event_key("s", "1"))
    clock.now += 300
    recent.remember(event_key("s", "2"))
    clock.now += 299
    assert recent.seen(event_key("s", "1")) and recent.seen(event_key("s", "2"))
    clock.now += 1  # the first is 600 s old
    assert not recent.seen(event_key("s", "1"))
    assert recent.seen(event_key("s", "2"))
    assert len(recent) == 1


def test_remembering_again_moves_an_event_to_the_back() -> None:
    clock = Clock()
    recent = RecentEvents(2, timedelta(hours=1), clock)
    one, two, three = (event_key("s", str(n)) for n in (1, 2, 3))
    recent.remember(one)
    recent.remember(two)
    recent.remember(one)  # acted on again (after a failure, say): the newest now
    recent.remember(three)  # over the bound: the least recent goes
    assert [recent.seen(one), recent.seen(two), recent.seen(three)] == [True, False, True]
    assert len(recent) == 2


def test_zero_turns_it_off() -> None:
    for recent in (RecentEvents(0, timedelta(hours=1)), RecentEvents(5, timedelta(0))):
        recent.remember(event_key("s", "1"))
        assert not recent.enabled and not recent.seen(event_key("s", "1"))


async def test_the_same_event_at_once_waits_and_a_failure_lets_the_next_act() -> None:
    recent = RecentEvents(10, timedelta(hours=1))
    key = event_key("s", "1")
    order: list[str] = []
    release = asyncio.Event()

    async def deliver(name: str, succeed: bool) -> bool:
        async with recent.handling(key) as duplicate:
            order.append(f"{name} {'duplicate' if duplicate else 'acts'}")
            if not duplicate:
                await release.wait()
                if succeed:
                    recent.remember(key)
            return duplicate

    failing = asyncio.create_task(deliver("a", succeed=False))
    await asyncio.sleep(0)
    retry = asyncio.create_task(deliver("b", succeed=True))
    late = asyncio.create_task(deliver("c", succeed=True))
    await asyncio.sleep(0.01)
    assert order == ["a acts"]  # b and c wait for a
    release.set()
    assert list(await asyncio.gather(failing, retry, late)) == [False, False, True]
    assert order == ["a acts", "b acts", "c duplicate"]
