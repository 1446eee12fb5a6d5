"""function/handler.py without a server: headers and body in, status and JSON body out.

Each branch of the decision rules (docs/wire.md) answered, counted and logged, and what the
handler asked of Temporal. Temporal itself is not here: `Temporal` below stands in for the
client at the handler's one boundary (`Link` and `Signaller`), recording each signal and
cancel and answering as a test tells it to. What the real server does with them is
tests/function/test_end_to_end.py's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.conftest import FIXTURES
from tests.function.conftest import (
    CLUSTER,
    SINK,
    Request,
    alarm_event,
    as_binary,
    as_structured,
    function_settings,
)
from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.domain.workflow_ids import IdMode
from vsphere_preemption.function import handler as handler_module
from vsphere_preemption.function.handler import EventHandler, Reply
from vsphere_preemption.function.metrics import PREFIX, Metrics
from vsphere_preemption.logs import get_logger
from vsphere_preemption.temporal.client import (
    Cancellation,
    CancelOutcome,
    StartedRun,
    TemporalError,
    TemporalRejected,
    TemporalUnavailable,
    execution_timeout_for,
)
from vsphere_preemption.wire import WorkflowRequest

ALARM = "cluster-cpu-above-80"
WORKFLOW = f"{ALARM}/{CLUSTER}"


@dataclass(frozen=True)
class Signal:
    workflow_id: str
    request: WorkflowRequest
    task_queue: str
    execution_timeout: timedelta | None


class Temporal:
    """Stands in for the function's Temporal client: records what the handler sends, and
    answers with a run, a cancel outcome, or `error` (raised by every call while set).
    Signals wait for `gate` while it is closed."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []
        self.cancels: list[str] = []
        self.error: TemporalError | None = None
        self.cancel_outcome = CancelOutcome.CANCEL_REQUESTED
        self.gate = asyncio.Event()
        self.gate.set()

    async def require(self) -> Temporal:
        return self

    async def signal_with_start(
        self,
        workflow_id: str,
        request: WorkflowRequest,
        *,
        execution_timeout: timedelta | None,
        task_queue: str,
    ) -> StartedRun:
        self.signals.append(Signal(workflow_id, request, task_queue, execution_timeout))
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return StartedRun(workflow_id, f"run-{len(self.signals)}")

    async def cancel(self, workflow_id: str) -> Cancellation:
        self.cancels.append(workflow_id)
        if self.error is not None:
            raise self.error
        return Cancellation(self.cancel_outcome, None)


@dataclass
class Function:
    handler: EventHandler
    metrics: Metrics
    temporal: Temporal

    async def send(self, request: Request) -> Reply:
        headers, body = request
        return await self.handler.handle(headers, body)

    def count(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(f"{PREFIX}_{name}", labels)
        return 0.0 if value is None else value

    def handled(self, decision: str) -> float:
        return self.count("event_handling_seconds_count", decision=decision)


def function(*, tracing: bool = False, **env: str) -> Function:
    """The handler as the app builds it, for ALARM, talking to a `Temporal` stand-in."""
    temporal, metrics = Temporal(), Metrics()
    settings = function_settings(ALARM, K_SINK=SINK, **env)
    log = get_logger("function")
    handler = EventHandler(settings, temporal, metrics, log, tracing=tracing, signal_spacing=0)
    return Function(handler, metrics, temporal)


@pytest.fixture
def fn() -> Function:
    return function()


def raising(**kw: Any) -> dict[str, Any]:
    return alarm_event(ALARM, "green", "red", **kw)


def logged(logs: Sequence[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the handler never got there")


# -- refused: 400 -------------------------------------------------------------------------


def bad_inputs() -> list[Any]:
    headers, body = as_binary(raising())
    xml_headers, _ = as_binary(raising(xml=True))
    doctype = '<!DOCTYPE a [<!ENTITY x "y">]><AlarmStatusChangedEvent/>'
    nan = body.replace(b'"ChangeTag": ""', b'"X": NaN')
    return [
        pytest.param({"content-type": "application/json"}, b"{}", "not_cloudevent",
                     "not a CloudEvent", id="plain-json"),
        pytest.param({**headers, "ce-specversion": "9"}, b"{}", "not_cloudevent",
                     "'specversion' must be '1.0' or '0.3', got '9'", id="bad-specversion"),
        pytest.param(headers, b"{not json", "invalid_payload",
                     "event payload must be valid AlarmStatusChangedEvent", id="bad-json"),
        pytest.param(headers, b"", "invalid_payload", "no data", id="no-data"),
        pytest.param(headers, b'{"From": 3}', "invalid_payload", "From must be a string",
                     id="wrong-type"),
        pytest.param(xml_headers, doctype.encode(), "invalid_payload", "DOCTYPE", id="doctype"),
        pytest.param(*as_binary(alarm_event(ALARM, "", "red")), "invalid_payload",
                     "without From or To", id="no-from"),
        pytest.param(*as_binary(raising(entity="domain c7")), "invalid_payload",
                     "not a managed object id: 'domain c7'", id="entity-no-moref"),
        pytest.param(headers, nan, "invalid_signal",
                     "event cannot be signalled: the signal is not JSON", id="signal-dropped"),
    ]  # fmt: skip


@pytest.mark.parametrize(("headers", "body", "reason", "message"), bad_inputs())
async def test_bad_inputs_are_400_with_a_one_line_reason_and_reach_no_workflow(
    fn: Function, headers: dict[str, str], body: bytes, reason: str, message: str
) -> None:
    with capture_logs() as logs:
        reply = await fn.send((headers, body))
    assert reply.status == 400
    error = reply.body["error"]
    assert message in error and "\n" not in error
    assert fn.count("events_rejected_total", reason=reason) == 1
    # Counted under its decision: a signal the workflow would drop was decided "preempt".
    assert fn.handled("preempt" if reason == "invalid_signal" else "rejected") == 1
    assert (fn.temporal.signals, fn.temporal.cancels) == ([], [])
    (rejected,) = logged(logs, "event rejected")
    assert (rejected["log_level"], rejected["status"], rejected["error"]) == ("warning", 400, error)


# -- ignored: 200 -------------------------------------------------------------------------


def other_events() -> list[Any]:
    ours = raising()
    headers, body = as_binary(ours)
    drs = "com.vmware.vsphere.DrsVmPoweredOnEvent.v0"
    drs_body = (FIXTURES / "06_new-tanzu-sources_DrsVmPoweredOnEvent.txt").read_text()
    drs_data = drs_body.split("Data,", 1)[1].strip()
    return [
        pytest.param(*as_structured({**ours, "type": drs}), id="other-type-structured"),
        pytest.param({**headers, "ce-type": drs}, drs_data.encode(), id="drs-event-binary"),
        pytest.param({**headers, "ce-type": drs}, b"{not json", id="other-type-bad-data"),
        pytest.param({**headers, "ce-type": "com.vmware.event.router/event",
                      "ce-subject": "DrsVmPoweredOnEvent"}, body, id="old-router-other-subject"),
    ]  # fmt: skip


@pytest.mark.parametrize(("headers", "body"), other_events())
async def test_events_of_other_types_are_ignored_with_200_whatever_their_data(
    fn: Function, headers: dict[str, str], body: bytes
) -> None:
    # Even with our alarm's name, green to red, in its data: the type says it is not ours.
    reply = await fn.send((headers, body))
    assert reply.status == 200
    assert reply.body["decision"] == "ignore"
    assert "not an AlarmStatusChangedEvent" in reply.body["reason"]
    assert fn.count("events_ignored_total", reason="other_event") == 1
    assert fn.count("events_rejected_total", reason="invalid_payload") == 0
    assert fn.handled("ignore") == 1
    assert fn.temporal.signals == []


async def test_another_alarm_is_ignored_with_200_and_its_reason(fn: Function) -> None:
    event = alarm_event("other-alarm", "green", "red")
    reply = await fn.send(as_binary(event))
    assert (reply.status, reply.body) == (
        200,
        {
            "eventID": event["id"],
            "decision": "ignore",
            "reason": "alarm 'other-alarm' is not 'cluster-cpu-above-80'",
        },
    )
    assert fn.count("events_ignored_total", reason="other_alarm") == 1
    assert fn.handled("ignore") == 1
    assert fn.temporal.signals == []


async def test_with_several_vcenters_an_unknown_ones_event_is_ignored_a_known_one_routed() -> None:
    fn = function(VCENTER_TASKQUEUES='{"https://vcsa-1.example.com/sdk": "queue-1"}')
    unknown = raising(source="https://vcsa-2.example.com/sdk")
    with capture_logs() as logs:
        # Whatever its data: the vCenter is read first (a 4xx would dead-letter it).
        reply = await fn.send((as_binary(unknown)[0], b"{not json"))
    reason = "unknown vCenter vcsa-2.example.com"
    assert (reply.status, reply.body) == (
        200,
        {"eventID": unknown["id"], "decision": "ignore", "reason": reason},
    )
    assert fn.count("events_ignored_total", reason="unknown_source") == 1
    (warning,) = logged(logs, "event from an unknown vCenter ignored")
    assert (warning["log_level"], warning["known"]) == ("warning", ["vcsa-1.example.com"])
    assert fn.temporal.signals == []

    reply = await fn.send(as_binary(raising(source="https://VCSA-1.example.com:443/sdk/")))
    assert reply.status == 200
    (signal,) = fn.temporal.signals
    assert (signal.workflow_id, signal.task_queue) == (
        f"{ALARM}/vcsa-1.example.com/{CLUSTER}",
        "queue-1",
    )


# -- raised: signalled --------------------------------------------------------------------


async def test_a_raise_signals_its_alarm_and_entitys_workflow(fn: Function) -> None:
    event = raising()
    with capture_logs() as logs:
        reply = await fn.send(as_binary(event))
    assert (reply.status, reply.body) == (
        200,
        {
            "eventID": event["id"],
            "decision": "preempt",
            "reason": "alarm raising: green to red",
            "workflowID": WORKFLOW,
            "runID": "run-1",
        },
    )
    (signal,) = fn.temporal.signals
    assert (signal.workflow_id, signal.task_queue) == (WORKFLOW, "vsphere-preemption")
    assert signal.execution_timeout is None  # the per-entity workflow lives as its alarm does
    request = signal.request
    assert (request.tag, request.criticality, request.reply_to) == (
        "preemptible",
        Criticality.HIGH,
        SINK,
    )
    assert request.event["id"] == event["id"]
    assert request.event["data"].value() == event["data"]  # the JSON as it came
    assert fn.count("events_acted_total", action="preempt", outcome="signalled") == 1
    assert fn.handled("preempt") == 1
    (triggered,) = logged(logs, "preemption triggered")
    assert (triggered["workflowID"], triggered["runID"]) == (WORKFLOW, "run-1")


async def test_in_alarm_mode_one_workflow_per_alarm_with_a_timeout() -> None:
    fn = function(WORKFLOW_ID_MODE="alarm")
    reply = await fn.send(as_binary(raising()))
    assert reply.body["workflowID"] == ALARM
    (signal,) = fn.temporal.signals
    assert signal.workflow_id == ALARM
    assert signal.execution_timeout == execution_timeout_for(IdMode.ALARM) is not None


@pytest.mark.parametrize(
    ("error", "status"),
    [(TemporalUnavailable("Temporal at t:7233 does not answer"), 503),
     (TemporalRejected("namespace not found"), 502)],
)  # fmt: skip
async def test_a_failed_signal_asks_the_broker_to_retry_and_the_retry_is_signalled(
    fn: Function, error: TemporalError, status: int
) -> None:
    event = raising()
    fn.temporal.error = error
    reply = await fn.send(as_binary(event))
    assert (reply.status, reply.headers) == (status, {"Retry-After": "5"})
    assert reply.body == {"error": f"failed to run preemption: {error}"}
    assert fn.count("events_acted_total", action="preempt", outcome="failed") == 1
    # A failure is not remembered: the broker's redelivery is signalled, not a duplicate.
    fn.temporal.error = None
    reply = await fn.send(as_binary(event))
    assert (reply.status, reply.body["decision"]) == (200, "preempt")
    assert len(fn.temporal.signals) == 2


async def test_a_redelivered_event_is_a_duplicate_and_not_signalled_again(fn: Function) -> None:
    event = raising()
    await fn.send(as_binary(event))
    reply = await fn.send(as_structured(event))  # the same source and id, in another mode
    assert (reply.status, reply.body) == (
        200,
        {
            "eventID": event["id"],
            "decision": "duplicate",
            "reason": f"event {event['id']!r} from {event['source']!r} was acted on already "
            "(preempt)",
            "workflowID": WORKFLOW,
        },
    )
    assert len(fn.temporal.signals) == 1
    assert fn.count("events_ignored_total", reason="duplicate") == 1
    assert fn.handled("duplicate") == 1
    # The same id from another source is another event.
    await fn.send(as_binary({**event, "source": "https://vcsa-2.example.com/sdk"}))
    assert len(fn.temporal.signals) == 2


async def test_raises_during_a_signal_ride_the_next_one_and_say_so(fn: Function) -> None:
    fn.temporal.gate.clear()
    first = asyncio.ensure_future(fn.send(as_binary(raising(event_id="e1"))))
    await until(lambda: len(fn.temporal.signals) == 1)
    later = [
        asyncio.ensure_future(fn.send(as_binary(raising(event_id=event_id))))
        for event_id in ("e2", "e3")
    ]
    await asyncio.sleep(0.01)
    assert len(fn.temporal.signals) == 1 and not any(task.done() for task in later)
    fn.temporal.gate.set()
    alone, *merged = [reply.body for reply in await asyncio.gather(first, *later)]
    assert "signalCarried" not in alone and alone["runID"] == "run-1"
    # e2 and e3 went in one signal, e3's (the latest): both answered with its outcome.
    assert [(b["eventID"], b["runID"], b["signalEventID"], b["signalCarried"]) for b in merged] == [
        ("e2", "run-2", "e3", 2),
        ("e3", "run-2", "e3", 2),
    ]
    assert [s.request.event["id"] for s in fn.temporal.signals] == ["e1", "e3"]
    assert fn.count("events_merged_total") == 1  # e2: carried by another event's signal


# -- lowered: cancelled -------------------------------------------------------------------


@pytest.mark.parametrize("outcome", list(CancelOutcome))
async def test_a_lowering_cancels_its_workflow(fn: Function, outcome: CancelOutcome) -> None:
    fn.temporal.cancel_outcome = outcome
    event = alarm_event(ALARM, "red", "green")
    reply = await fn.send(as_binary(event))
    assert (reply.status, reply.body) == (
        200,
        {
            "eventID": event["id"],
            "decision": "cancel",
            "reason": "alarm lowering: red to green",
            "workflowID": WORKFLOW,
            "outcome": outcome.value,
        },
    )
    assert fn.temporal.cancels == [WORKFLOW]
    assert fn.temporal.signals == []
    assert fn.count("events_acted_total", action="cancel", outcome=outcome.value) == 1
    assert fn.handled("cancel") == 1


async def test_a_failed_cancel_is_logged_answered_200_and_tried_again_on_redelivery(
    fn: Function,
) -> None:
    event = alarm_event(ALARM, "red", "green")
    fn.temporal.error = TemporalUnavailable("Temporal at t:7233 does not answer")
    with capture_logs() as logs:
        reply = await fn.send(as_binary(event))
    # 200 all the same, so the broker does not redeliver it (as the Go function does).
    assert reply.status == 200
    assert (reply.body["outcome"], reply.body["error"]) == (
        "cancel_failed",
        "Temporal at t:7233 does not answer",
    )
    (failed,) = logged(logs, "cancel failed")
    assert (failed["log_level"], failed["workflowID"]) == ("error", WORKFLOW)
    assert fn.count("events_acted_total", action="cancel", outcome="failed") == 1
    fn.temporal.error = None
    assert (await fn.send(as_binary(event))).body["outcome"] == "cancel_requested"
    assert fn.temporal.cancels == [WORKFLOW, WORKFLOW]


# -- DEBUG --------------------------------------------------------------------------------


@pytest.mark.parametrize("xml", [True, False], ids=["xml", "json"])
async def test_debug_logs_the_whole_event(xml: bool) -> None:
    event = alarm_event("other-alarm", "green", "red", xml=xml)
    fn = function(DEBUG="true")
    with capture_logs() as logs:
        assert (await fn.send(as_binary(event))).status == 200
    received = logged(logs, "event received")[0]
    assert received["eventID"] == event["id"]
    assert received["cloudEvent"] == event  # attributes, data (plain values) and extensions
    ignored = logged(logs, "event ignored")[0]
    assert ignored["decision"] == "ignore"


async def test_without_debug_the_event_is_not_logged(fn: Function) -> None:
    with capture_logs() as logs:
        await fn.send(as_binary(alarm_event("other-alarm", "green", "red")))
    assert logged(logs, "event received") == []


async def test_debug_shows_undecodable_data_too() -> None:
    headers, _ = as_binary(raising())
    fn = function(DEBUG="true")
    with capture_logs() as logs:
        reply = await fn.send((headers, b"{broken"))
    assert reply.status == 400
    received = logged(logs, "event received")[0]
    assert received["cloudEvent"]["data"] == "{broken"
    assert json.dumps(received["cloudEvent"])  # plain values: the log renderer writes them


# -- tracing ------------------------------------------------------------------------------


class Span:
    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def set_attribute(self, name: str, value: Any) -> None:
        self.attributes[name] = value


@pytest.mark.parametrize("tracing", [True, False])
async def test_with_tracing_each_event_is_a_span_with_its_decision_and_status(
    monkeypatch: pytest.MonkeyPatch, tracing: bool
) -> None:
    # tracing.event_span's span (OpenTelemetry's, set up once per process by test_tracing.py)
    # stood in for by one that keeps its attributes.
    opened: list[tuple[str | None, Span]] = []

    @contextlib.contextmanager
    def event_span(event_id: str | None = None) -> Iterator[Span]:
        opened.append((event_id, Span()))
        yield opened[-1][1]

    monkeypatch.setattr(handler_module, "event_span", event_span)
    fn = function(tracing=tracing)
    event = raising()
    await fn.send(as_binary(event))
    await fn.send(({"content-type": "application/json"}, b"{}"))
    if not tracing:
        assert opened == []
        return
    assert [(event_id, span.attributes) for event_id, span in opened] == [
        (event["id"], {"vsphere_preemption.decision": "preempt", "http.response.status_code": 200}),
        (None, {"vsphere_preemption.decision": "rejected", "http.response.status_code": 400}),
    ]
