"""What a platform team reads off the running programs: metrics, the dashboard's queries, logs.

The function and the worker run as `preemptctl function` and `preemptctl worker` processes
(their own logging set-up, JSON lines on stdout) against the real Temporal dev server and
vcsim; one red alarm goes through the function, the worker powers off the tagged VMs, and
the sink refuses the first VmPreemptedEvent (so an activity fails once and is retried).
Then both programs' metrics are scraped and their log lines read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.function.conftest import alarm_event, as_binary
from tests.temporal.helpers import unique
from tests.temporal.rig import SECRET, rig_on, vcsim_args
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim, free_ports
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.wire import DEFAULT_NAMESPACE

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]

DASHBOARD = Path(__file__).parents[2] / "deploy" / "dashboard.json"
W = "vsphere_preemption_worker"
F = "vsphere_preemption_function"


@dataclass
class Operated:
    worker_metrics: str
    function_metrics: str
    worker_log: str
    function_log: str
    reply: dict[str, Any]
    stopped: list[VmRef]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and wanted <= ls)


def exported_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        names |= {s.name for s in family.samples}
    return names


@pytest.fixture(scope="module")
async def operated(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> Operated:
    tmp = tmp_path_factory.mktemp("operating")
    sim = Vcsim(args=vcsim_args()).start()
    metrics_port, function_port = free_ports(2)
    _, vcenter, scene, queue, env = rig_on(
        sim, temporal_server.address, tmp, "operating", on=3, off=1,
        METRICS_ADDRESS=f"127.0.0.1:{metrics_port}", LOG_FORMAT="json",
    )  # fmt: skip
    alarm = unique("cpu-alarm")
    with EventSink(statuses=[503]) as sink:
        worker = WorkerProcess(env, tmp / "worker.log").start()
        function_env = {
            **os.environ,
            "TEMPORAL_URL": temporal_server.address,
            "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
            "TEMPORAL_TASKQUEUE": queue,
            "VSPHERE_PREEMPTION_TAG": "preemptible",
            "VSPHERE_ALARM_NAME": alarm,
            "K_SINK": sink.url,
            "PORT": str(function_port),
            "LOG_FORMAT": "json",
        }
        function_log = tmp / "function.log"
        with open(function_log, "wb") as out:
            function = subprocess.Popen(
                [sys.executable, "-m", "vsphere_preemption", "function"],
                env=function_env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        base = f"http://127.0.0.1:{function_port}"
        worker_url = f"http://127.0.0.1:{metrics_port}/metrics"
        try:
            wait_until(
                lambda: (r := get(f"{base}/health/readiness")) is not None and r.is_success,
                "the function to be ready",
            )
            wait_until(lambda: get(worker_url) is not None, "the worker's metrics endpoint")
            headers, body = as_binary(alarm_event(alarm, "green", "red", event_id=unique("ev")))
            reply = httpx.post(base, headers=headers, content=body, timeout=30)
            assert reply.status_code == 200, reply.text
            wait_until(lambda: len(sink.events) == 2, "the VmPreemptedEvent, twice")

            def worker_counted() -> bool:
                r = get(worker_url)
                return r is not None and value(r.text, f"{W}_runs_total") >= 1

            wait_until(worker_counted, "the run in the worker's metrics")
            worker_text = httpx.get(worker_url, timeout=5).text
            function_text = httpx.get(f"{base}/metrics", timeout=5).text
        finally:
            function.terminate()
            function.wait(30)
            try:
                worker.terminate()  # SIGTERM: the worker stops gracefully
            finally:
                worker.stop()
            vcenter.close()
            sim.stop()
    return Operated(
        worker_metrics=worker_text,
        function_metrics=function_text,
        worker_log=worker.log(),
        function_log=function_log.read_text(),
        reply=reply.json(),
        stopped=scene.on,
    )


async def test_the_worker_serves_the_sdks_metrics_and_ours_on_one_endpoint(
    operated: Operated,
) -> None:
    text = operated.worker_metrics
    on = len(operated.stopped)
    assert value(text, f"{W}_runs_total", kind="preempt", outcome="acted") == 1
    assert value(text, f"{W}_run_duration_seconds_count", kind="preempt", outcome="acted") == 1
    assert value(text, f"{W}_vms_preempted_total", action="poweroff", criticality="HIGH") == on
    # The VM already off and the two tagged objects that are no VMs: left out, with reasons.
    assert value(text, f"{W}_vms_left_out_total", reason="not_running") == 1
    assert value(text, f"{W}_vms_left_out_total", reason="not_a_vm") == 2
    assert value(text, f"{W}_vcenter_requests_total", api="soap", outcome="ok") > 0
    assert value(text, f"{W}_vcenter_requests_total", api="rest", outcome="ok") > 0
    assert value(text, f"{W}_vcenter_request_duration_seconds_count", api="soap") > 0
    # The sink refused the first delivery: counted, and the SDK saw the activity fail.
    assert value(text, f"{W}_events_sent_total", outcome="failed") == 1
    assert value(text, f"{W}_events_sent_total", outcome="ok") == 1
    failed = "temporal_activity_execution_failed_total"
    assert value(text, failed, activity_type="SendPreemptedEvent") == 1
    assert value(text, "temporal_workflow_task_schedule_to_start_latency_seconds_count") > 0
    assert value(text, "temporal_activity_execution_latency_seconds_count") > 0
    assert value(text, "process_resident_memory_bytes") > 0
    # Nothing failed on a VM: the family is there (for the dashboard), with no samples.
    assert f"{W}_vm_failures_total" in exported_names(text)
    assert value(text, f"{W}_vm_failures_total") == 0
    # Prometheus' conventions: counters end in _total, durations are seconds.
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            assert "_ms" not in sample.name and "milliseconds" not in sample.name
    # The function's names are as they were.
    assert value(operated.function_metrics, f"{F}_events_acted_total", action="preempt",
                 outcome="signalled") == 1  # fmt: skip
    assert value(operated.function_metrics, f"{F}_event_handling_seconds_count") == 1


# PromQL words that are not metric names.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "le", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are no function, keyword,
    label (inside {} or by/without/on lists), range or Grafana variable."""
    text = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)
    text = re.sub(r'"[^"]*"', "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(a_seconds_bucket{job="x"}'
        "[$__rate_interval]))) + on (x) b_total - sum without (y) (c)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}


async def test_every_dashboard_query_names_metrics_the_programs_export(
    operated: Operated,
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names(operated.worker_metrics) | exported_names(operated.function_metrics)
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(queries) >= 15
    named = set()
    for expr in queries:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: {sorted(names - exported)} not exported"
        named |= names
    # The panels an on-call engineer wants: decisions, outcomes, VMs, failures, latencies.
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("decision", "outcome", "vms preempted", "failures", "latency"):
        assert topic in titles
    assert {f"{F}_events_acted_total", f"{W}_runs_total", f"{W}_vms_preempted_total"} <= named


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


async def test_log_lines_are_json_naming_event_workflow_run_and_vm_never_the_secret(
    operated: Operated,
) -> None:
    event_id = operated.reply["eventID"]
    workflow_id, run_id = operated.reply["workflowID"], operated.reply["runID"]
    function_lines = json_lines(operated.function_log)
    triggered = [line for line in function_lines if line["event"] == "preemption triggered"]
    assert len(triggered) == 1
    assert (triggered[0]["eventID"], triggered[0]["workflowID"], triggered[0]["runID"]) == (
        event_id, workflow_id, run_id,
    )  # fmt: skip

    worker_lines = json_lines(operated.worker_log)
    ours = [line for line in worker_lines if line.get("workflowID") == workflow_id]
    workflow_lines = [line for line in ours if line.get("logger") == "temporalio.workflow"]
    activity_lines = [line for line in ours if line.get("logger") == "temporalio.activity"]
    assert workflow_lines and activity_lines
    # Every line of the run names the run and the event it acts on; but the signal's line,
    # which comes before the run and names the event in its message, and the SDK's own line
    # for a failed attempt (logged outside the activity), which names workflow, run and
    # activity only.
    assert any(line["event"] == "Completing activity as failed" for line in activity_lines)
    for line in workflow_lines + activity_lines:
        assert line["runID"] == run_id, line
        assert line["program"] == "worker", line
        if not line["event"].startswith(("received preemption request", "Completing activity")):
            assert line["eventID"] == event_id, line
    assert {line["activity"] for line in activity_lines} >= {"PlanPreemption", "PowerOffVMs"}
    # The adapter's lines under an activity carry them too.
    stop = [line for line in worker_lines if line["event"] == "vcenter.stop"]
    assert stop and stop[0]["eventID"] == event_id and stop[0]["runID"] == run_id
    # Per-VM lines name their VM.
    victims = {line["vm"] for line in workflow_lines if line["event"].startswith("victim ")}
    assert victims == {vm.value for vm in operated.stopped}

    for text in (operated.worker_log, operated.function_log):
        assert SECRET not in text
