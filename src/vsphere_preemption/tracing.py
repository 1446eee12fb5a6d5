"""OpenTelemetry tracing, off unless the standard OTEL_* variables turn it on.

One trace per alarm: the function's handling of the event, its signal-with-start, the
workflow, each activity and the vCenter requests under it, joined through the Temporal SDK's
`TracingInterceptor` (the trace context travels in Temporal headers). On when an OTLP endpoint
is named (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or
`OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`); `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` keeps it off. The OTLP exporter reads the other OTEL_* variables
itself (headers, protocol, timeouts, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).

Nothing here imports OpenTelemetry until tracing is on: the function's cold start does not
pay for it when it is off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

TRACER = "vsphere_preemption"


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def install(service_name: str, environ: Mapping[str, str] | None = None) -> None:
    """The process's tracer provider, exporting as the OTEL_* variables say."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    env = os.environ if environ is None else environ
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over this default.
    resource = Resource.create({"service.name": service_name})
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def temporal_interceptors() -> list[Any]:
    """The Temporal SDK's tracing interceptor, for a client (and the workers on it)."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


class VCenterSpans:
    """A request observer (vsphere.soap.RoundTrips) that records each vCenter round trip as
    a span, under the span current where the request was made (the activity's)."""

    def __init__(self) -> None:
        from opentelemetry import trace

        self._tracer = trace.get_tracer(TRACER)

    def __call__(self, api: str, outcome: str, seconds: float | None) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        end = time.time_ns()
        start = end - int((seconds or 0.0) * 1e9)
        span = self._tracer.start_span(
            f"vcenter {api}",
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes={"vcenter.api": api, "vcenter.outcome": outcome},
        )
        if outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end(end_time=end)


def event_span(event_id: str | None = None) -> Any:
    """A span around one event's handling in the function (a context manager)."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer(TRACER)
    attributes = {"cloudevents.event_id": event_id} if event_id else {}
    return tracer.start_as_current_span(
        "handle alarm event", kind=SpanKind.SERVER, attributes=attributes
    )
