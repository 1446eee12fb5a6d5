"""The worker's one Prometheus endpoint: the Temporal SDK's metrics and ours, on METRICS_ADDRESS.

The SDK's runtime records into a `MetricBuffer` (its own task and poll latencies, poll results,
activity failures, and ours, which go through the same meter: temporal/run_metrics.py); this
collector drains it and keeps the running totals, which prometheus_client serves with the
process's CPU and memory. Why not the SDK's own `PrometheusConfig` server: that would be a
second endpoint (ours need prometheus_client or the SDK's meter anyway), and here the names
follow Prometheus' conventions whatever the SDK version does: counters end in `_total`,
durations are seconds and end in `_seconds`, every family has its HELP text.

The buffer is drained at each scrape and every `DRAIN_EVERY` seconds in between, so it
never fills (a full buffer drops updates).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BufferedMetricUpdate,
    MetricBuffer,
    MetricBufferDurationFormat,
)

BUFFER_SIZE = 100_000  # updates between two drains; a run makes a few hundred
DRAIN_EVERY = 2.0  # seconds
# Seconds: from one vCenter call (milliseconds) to a run with a notice and a grace (minutes).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
           300.0, 600.0, 1800.0)  # fmt: skip

Labels = tuple[tuple[str, str], ...]


def new_buffer() -> MetricBuffer:
    return MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)


def exported_name(name: str, kind: int, unit: str | None) -> str:
    """The name a scrape shows for a metric of the SDK's meter."""
    if kind == BUFFERED_METRIC_KIND_COUNTER:
        return name if name.endswith("_total") else f"{name}_total"
    if unit == "s" and not name.endswith("_seconds"):
        return f"{name}_seconds"
    return name


@dataclass
class _Histogram:
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))
    count: float = 0.0
    total: float = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(BUCKETS, value)
        if index < len(BUCKETS):
            self.buckets[index] += 1
        self.count += 1
        self.total += value


@dataclass
class _Family:
    name: str
    kind: int
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    histograms: dict[Labels, _Histogram] = field(default_factory=dict)


class BufferCollector(Collector):
    """Running totals of what the SDK's meter recorded, as Prometheus metric families."""

    def __init__(self, buffer: MetricBuffer, declared: Iterable[tuple[str, str, str]] = ()) -> None:
        self._buffer = buffer
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        # Families shown (without samples) before anything is recorded in them, so that a
        # dashboard's queries name metrics that exist: (name, type, help).
        self._declared = tuple(declared)

    def drain(self) -> None:
        with self._lock:
            try:
                updates = self._buffer.retrieve_updates()
            except RuntimeError:
                return  # no runtime yet (nothing connected): nothing recorded
            self._apply(updates)

    def _apply(self, updates: Iterable[BufferedMetricUpdate]) -> None:
        for update in updates:
            metric = update.metric
            name = exported_name(metric.name, metric.kind, metric.unit)
            family = self._families.get(name)
            if family is None:
                family = _Family(name, metric.kind, metric.description or metric.name)
                self._families[name] = family
            labels = _labels(update.attributes)
            value = float(update.value)
            if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                family.values[labels] = family.values.get(labels, 0.0) + value
            elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                family.values[labels] = value
            else:
                family.histograms.setdefault(labels, _Histogram()).observe(value)

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for family in self._families.values():
                yield _metric(family)
            for name, kind, text in self._declared:
                if name not in self._families:
                    yield Metric(name.removesuffix("_total"), text, kind)


def _labels(attributes: Mapping[str, Any]) -> Labels:
    return tuple(sorted((key, str(value)) for key, value in attributes.items()))


def _metric(family: _Family) -> Metric:
    if family.kind == BUFFERED_METRIC_KIND_COUNTER:
        base = family.name.removesuffix("_total")
        metric = Metric(base, family.help, "counter")
        for labels, value in family.values.items():
            metric.add_sample(f"{base}_total", dict(labels), value)
        return metric
    if family.kind == BUFFERED_METRIC_KIND_GAUGE:
        metric = Metric(family.name, family.help, "gauge")
        for labels, value in family.values.items():
            metric.add_sample(family.name, dict(labels), value)
        return metric
    metric = Metric(family.name, family.help, "histogram")
    for labels, hist in family.histograms.items():
        cumulative = 0.0
        for bound, n in zip(BUCKETS, hist.buckets, strict=True):
            cumulative += n
            le = {**dict(labels), "le": _bound(bound)}
            metric.add_sample(f"{family.name}_bucket", le, cumulative)
        inf = {**dict(labels), "le": "+Inf"}
        metric.add_sample(f"{family.name}_bucket", inf, hist.count)
        metric.add_sample(f"{family.name}_count", dict(labels), hist.count)
        metric.add_sample(f"{family.name}_sum", dict(labels), hist.total)
    return metric


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (`0.0.0.0:9090`, `[::]:9090`, `:9090`) as (host, port); ValueError if not."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port, as 0.0.0.0:9090")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (all interfaces, as asked)


class MetricsServer:
    """prometheus_client's HTTP server for one registry: the buffer's metrics and the
    process's; `/metrics` (any path answers the same)."""

    def __init__(
        self, address: str, buffer: MetricBuffer, declared: Iterable[tuple[str, str, str]] = ()
    ) -> None:
        self.collector = BufferCollector(buffer, declared)
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        host, port = split_address(address)
        self._server, self._thread = start_http_server(port, host, registry=self.registry)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
