"""The worker's own metrics, recorded through the Temporal SDK's meter.

Workflow code records through `workflow.metric_meter()`, which records nothing while a
history replays, so a worker restart never counts a run twice; activities through
`activity.metric_meter()`; the vCenter adapter's requests through the runtime's meter.
The runtime hands everything, the SDK's own metrics included, to the one Prometheus
endpoint (temporal/prometheus.py), which adds `_total` to counters and `_seconds` to
durations. Without METRICS_ADDRESS the meters are no-ops.

Standard library, temporalio, our wire and domain only: the workflow's sandbox imports it.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.common import MetricCounter, MetricHistogramFloat, MetricMeter

from vsphere_preemption.domain.shapes import RunRecord
from vsphere_preemption.wire import parse_time

PREFIX = "vsphere_preemption_worker"
# Names as the meter knows them; the endpoint serves counters with `_total`, and the
# histograms (unit "s") with `_seconds`: see EXPORTED below.
RUNS = f"{PREFIX}_runs"
RUN_DURATION = f"{PREFIX}_run_duration"
VMS_PREEMPTED = f"{PREFIX}_vms_preempted"
VMS_LEFT_OUT = f"{PREFIX}_vms_left_out"
VM_FAILURES = f"{PREFIX}_vm_failures"
NOTICES = f"{PREFIX}_notices"
GUEST_NOTICES = f"{PREFIX}_guest_notices"
VMS_RESUMED = f"{PREFIX}_vms_resumed"
EVENTS_SENT = f"{PREFIX}_events_sent"
VCENTER_REQUESTS = f"{PREFIX}_vcenter_requests"
VCENTER_REQUEST_DURATION = f"{PREFIX}_vcenter_request_duration"

COUNTERS = (RUNS, VMS_PREEMPTED, VMS_LEFT_OUT, VM_FAILURES, NOTICES, GUEST_NOTICES,
            VMS_RESUMED, EVENTS_SENT, VCENTER_REQUESTS)  # fmt: skip
HISTOGRAMS = (RUN_DURATION, VCENTER_REQUEST_DURATION)
HELP = {
    RUNS: "Runs of PreemptVMsWorkflow, by kind and outcome.",
    RUN_DURATION: "Time from a run's start to its end (notice and grace included), by kind and outcome.",  # noqa: E501
    VMS_PREEMPTED: "VMs a run stopped (confirmed by vCenter), by action and criticality.",
    VMS_LEFT_OUT: "Tagged objects a plan left out, by reason.",
    VM_FAILURES: "VMs a step failed on (stop, annotate, notice, resume), after the step's own retries.",  # noqa: E501
    NOTICES: "Notices given before acting, by criticality and outcome (cancelled: the alarm lowered during the notice).",  # noqa: E501
    GUEST_NOTICES: "Guest notices written or cleared in the VMs' guestinfo, by op.",
    VMS_RESUMED: "VMs a resume handled, by result: resumed, skipped (changed since), failed.",
    EVENTS_SENT: "CloudEvents sent to replyTo, by type and outcome (ok, failed).",
    VCENTER_REQUESTS: "HTTP round trips to vCenter, by api (soap, rest) and outcome (ok, fault, error).",  # noqa: E501
    VCENTER_REQUEST_DURATION: "Time of one HTTP round trip to vCenter, by api.",
}
# What a scrape shows, before anything was recorded too (histograms as their _bucket, _sum
# and _count series): (name, type, help).
EXPORTED = (
    *((f"{name}_total", "counter", HELP[name]) for name in COUNTERS),
    *((f"{name}_seconds", "histogram", HELP[name]) for name in HISTOGRAMS),
)  # fmt: skip


def _counter(meter: MetricMeter, name: str) -> MetricCounter:
    return meter.create_counter(name, HELP[name])


def _seconds(meter: MetricMeter, name: str) -> MetricHistogramFloat:
    return meter.create_histogram_float(name, HELP[name], "s")


def record_run(meter: MetricMeter, record: RunRecord, ended: str) -> None:
    """A finished run, from its history record (domain/shapes.py, as the workflow wrote it):
    its outcome and duration, the VMs it stopped by action and criticality, whether it gave
    notice."""
    kind = record.get("kind", "preempt")
    outcome = record.get("outcome", "")
    criticality = record.get("criticality", "")
    attrs = {"kind": kind, "outcome": outcome}
    _counter(meter, RUNS).add(1, attrs)
    seconds = (parse_time(ended) - parse_time(record["startedAt"])).total_seconds()
    _seconds(meter, RUN_DURATION).record(max(seconds, 0.0), attrs)
    stopped = record.get("stopped", [])
    if stopped:
        _counter(meter, VMS_PREEMPTED).add(
            len(stopped), {"action": record.get("action", ""), "criticality": criticality}
        )
    if "notice" in record:
        _counter(meter, NOTICES).add(1, {"criticality": criticality, "outcome": outcome})
    left_off = record.get("stayOff", [])  # a resume that found no room for them in time
    if left_off:
        _counter(meter, VMS_RESUMED).add(len(left_off), {"result": "left off"})


def count_left_out(meter: MetricMeter, reasons: Sequence[str]) -> None:
    counter = _counter(meter, VMS_LEFT_OUT)
    for reason in sorted(set(reasons)):
        counter.add(reasons.count(reason), {"reason": reason})


def count_vm_failures(meter: MetricMeter, step: str, failed: int) -> None:
    if failed:
        _counter(meter, VM_FAILURES).add(failed, {"step": step})


def count_guest_notices(meter: MetricMeter, op: str, written: int) -> None:
    if written:
        _counter(meter, GUEST_NOTICES).add(written, {"op": op})


def count_resumed(meter: MetricMeter, resumed: int, skipped: int, failed: int) -> None:
    counter = _counter(meter, VMS_RESUMED)
    for result, n in (("resumed", resumed), ("skipped", skipped), ("failed", failed)):
        if n:
            counter.add(n, {"result": result})


def count_event_sent(meter: MetricMeter, event_type: str, outcome: str) -> None:
    _counter(meter, EVENTS_SENT).add(1, {"type": event_type, "outcome": outcome})


class VCenterRequests:
    """The vSphere adapter's request observer (vsphere.soap.RoundTrips): every HTTP round
    trip to vCenter, by API (soap, rest) and outcome (ok, fault: vCenter answered with an
    error, error: no answer), and how long it took."""

    def __init__(self, meter: MetricMeter) -> None:
        self._count = _counter(meter, VCENTER_REQUESTS)
        self._duration = _seconds(meter, VCENTER_REQUEST_DURATION)

    def __call__(self, api: str, outcome: str, seconds: float | None) -> None:
        self._count.add(1, {"api": api, "outcome": outcome})
        if seconds is not None:
            self._duration.record(seconds, {"api": api})
