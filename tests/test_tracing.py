"""Tracing: off unless OTEL_* turns it on; on, one trace from the alarm event to the annotation.

The end-to-end test runs the function (its app, its Temporal link) and the worker in this
process against the real Temporal dev server and vcsim, with an in-memory span exporter as
the process's tracer provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.function.conftest import alarm_event, as_binary, function_settings
from tests.temporal.helpers import unique, wait_for
from tests.temporal.rig import Rigs, read_annotations
from vsphere_preemption import tracing, worker
from vsphere_preemption.devtools.devservers import TemporalDevServer
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.function.app import create_app
from vsphere_preemption.function.temporal_link import TemporalLink
from vsphere_preemption.logs import get_logger
from vsphere_preemption.settings import WorkerSettings, load


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_the_otel_variables_say_so(env: dict[str, str], on: bool) -> None:
    assert tracing.enabled(env) is on


def test_the_function_does_not_import_opentelemetry_when_tracing_is_off() -> None:
    code = (
        "import sys; import vsphere_preemption.cli.function_cmd, vsphere_preemption.function.app;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: OpenTelemetry allows no other
    yield exporter
    provider.shutdown()


async def test_one_trace_from_the_alarm_event_to_the_annotation(
    spans: InMemorySpanExporter, temporal_server: TemporalDevServer, worker_rig: Rigs
) -> None:
    _, vcenter, scene, queue, env = worker_rig("traced", on=2, off=0)
    alarm = unique("alarm")
    settings = function_settings(alarm, queue, temporal_server.address, K_SINK="http://x.invalid")
    with EventSink() as sink:
        settings = dataclasses.replace(settings, k_sink=sink.url)
        link = TemporalLink(
            temporal_server.address,
            namespace=settings.temporal_namespace,
            task_queue=queue,
            log=get_logger("function"),
            tracing=True,
        )
        await link.connect()
        app = create_app(settings, link=link, tracing=True)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(load(WorkerSettings, env), stop, tracing=True))
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://function") as fn:
                headers, body = as_binary(alarm_event(alarm, "green", "red"))
                reply = await fn.post("/", headers=headers, content=body)
            assert reply.status_code == 200, reply.text
            await wait_for(lambda: len(sink.events) == 1, what="the VmPreemptedEvent")
        finally:
            stop.set()
            await running
    assert set(read_annotations(vcenter, scene.on)) == set(scene.on)
    vcenter.close()

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    handled = [s for s in finished if s.name == "handle alarm event"]
    assert len(handled) == 1
    assert handled[0].attributes is not None
    assert handled[0].attributes["cloudevents.event_id"] == reply.json()["eventID"]
    assert handled[0].context is not None
    trace_id = handled[0].context.trace_id
    in_trace = [s for s in finished if s.context is not None and s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    # The function's handling, its signal, the workflow, each activity and vCenter's requests.
    assert "SignalWithStartWorkflow:PreemptVMsWorkflow" in names
    assert "RunWorkflow:PreemptVMsWorkflow" in names
    for activity in ("PlanPreemption", "PowerOffVMs", "AnnotateVms", "SendPreemptedEvent"):
        assert f"RunActivity:{activity}" in names, sorted(names)
    by_id = {s.context.span_id: s for s in in_trace if s.context is not None}
    vcenter_spans = [s for s in in_trace if s.name.startswith("vcenter ")]
    assert {s.name for s in vcenter_spans} >= {"vcenter soap", "vcenter rest"}
    # Each vCenter request hangs under an activity's span.
    for span in vcenter_spans:
        assert span.parent is not None
        parent = by_id[span.parent.span_id]
        assert parent.name.startswith("RunActivity:"), parent.name
    # Everything the worker did for this alarm is in the one trace.
    outside = [s.name for s in finished if s.name.startswith("RunActivity:") and s not in in_trace]
    assert outside == []
