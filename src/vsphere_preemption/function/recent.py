"""The CloudEvents this function acted on lately, so a redelivered one is not acted on twice.

A broker delivers at least once: VEBA redelivers an event whose answer it did not get (a
timeout, a restart), and a source may send one twice. CloudEvents names an event by its
`source` and `id`; an event acted on successfully (a signal sent, a cancel requested) is
remembered here, and the same pair again is answered as a duplicate without a second signal.
A failure is never remembered: the broker's retry must get through.

Bounded both ways: at most `max_events` pairs (the least recently acted on go first) and
none older than `window`. Only a digest of each pair is kept, whatever the event's size.
In memory, per process: with several replicas each remembers what it handled itself.

While an event is being acted on, the same event waits for that to end, then is a duplicate
if it succeeded or acted on anew if it failed; two deliveries at once make one signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

Key = bytes


def event_key(source: str, event_id: str) -> Key:
    """A fixed-size name for the pair (length-prefixed, so no two pairs share one)."""
    text = f"{len(source)}:{source}{event_id}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).digest()


class RecentEvents:
    def __init__(
        self,
        max_events: int,
        window: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_events
        self._window = window.total_seconds()
        self._clock = clock
        self._acted: OrderedDict[Key, float] = OrderedDict()  # oldest first
        self._in_flight: dict[Key, asyncio.Event] = {}

    @property
    def enabled(self) -> bool:
        return self._max > 0 and self._window > 0

    def __len__(self) -> int:
        self._expire()
        return len(self._acted)

    def seen(self, key: Key) -> bool:
        """Whether the event was acted on within the window."""
        self._expire()
        return key in self._acted

    def remember(self, key: Key) -> None:
        if not self.enabled:
            return
        self._acted.pop(key, None)
        self._acted[key] = self._clock()
        while len(self._acted) > self._max:
            self._acted.popitem(last=False)

    def _expire(self) -> None:
        # Remembered in time order (remember moves a pair to the end): drop from the front.
        cutoff = self._clock() - self._window
        while self._acted:
            key, at = next(iter(self._acted.items()))
            if at > cutoff:
                break
            del self._acted[key]

    @contextlib.asynccontextmanager
    async def handling(self, key: Key) -> AsyncIterator[bool]:
        """Act on the event inside: yields True when it is a duplicate (do nothing then).

        Waits while the same event is being acted on elsewhere in this process.
        """
        if not self.enabled:
            yield False
            return
        while (busy := self._in_flight.get(key)) is not None:
            await busy.wait()
        if self.seen(key):
            yield True
            return
        done = self._in_flight[key] = asyncio.Event()
        try:
            yield False
        finally:
            del self._in_flight[key]
            done.set()
