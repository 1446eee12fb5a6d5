"""The function's Prometheus metrics, in a registry of its own (one per app, so tests can
run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "vsphere_preemption_function"
# Handling is sub-millisecond when ignored and one Temporal round trip when acted on.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory and CPU of this process
        self.received = Counter(
            f"{PREFIX}_events_received",
            "Requests received on the event endpoint.",
            registry=self.registry,
        )
        self.ignored = Counter(
            f"{PREFIX}_events_ignored",
            "Events ignored, by reason: other_event (not an alarm status change), other_alarm, "
            "duplicate (the same source and id acted on lately).",
            ["reason"],
            registry=self.registry,
        )
        self.acted = Counter(
            f"{PREFIX}_events_acted",
            "Alarm events acted on, by action (preempt, cancel) and outcome.",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.merged = Counter(
            f"{PREFIX}_events_merged",
            "Raising events signalled together with others: they arrived while a signal for "
            "the same alarm and entity was in flight, and rode the next one (whose event is the "
            "latest, at the most severe criticality).",
            registry=self.registry,
        )
        self.rejected = Counter(
            f"{PREFIX}_events_rejected",
            "Requests refused with a 4xx, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_event_handling_seconds",
            "Time to handle one event, by decision.",
            ["decision"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
