"""The function served by uvicorn on a loopback socket, against the real Temporal dev server.

No worker runs `PreemptVMsWorkflow` here: the workflows the function starts stay open with a
scheduled task, which is all these tests look at (their histories). Each test uses its own
task queue and alarm names, and terminates what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tests.function.conftest import (
    CLUSTER,
    SINK,
    RunningFunction,
    Serve,
    alarm_event,
    as_binary,
    as_structured,
    function_settings,
    on,
    post,
    reference_event,
    reference_signal_bytes,
)
from tests.temporal.helpers import unique
from vsphere_preemption.devtools.devservers import TemporalDevServer, free_port
from vsphere_preemption.temporal.client import PreemptionClient
from vsphere_preemption.wire import SIGNAL_NAME, WORKFLOW_TYPE

REFERENCE_ALARM = "cluster-cpu-above-80"


async def ready(serve: Serve, alarm: str, temporal: str, **extra: str) -> RunningFunction:
    """A function for `alarm` on a task queue of its own, once it is ready."""
    function = await serve(function_settings(alarm, unique("queue"), temporal, **extra))
    await function.wait_ready()
    return function


async def history(client: Client, workflow_id: str) -> list[HistoryEvent]:
    return list((await client.get_workflow_handle(workflow_id).fetch_history()).events)


def signals(events: list[HistoryEvent]) -> list[Any]:
    found = []
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            assert attrs.signal_name == SIGNAL_NAME
            (payload,) = attrs.input.payloads
            assert payload.metadata["encoding"] == b"json/plain"
            found.append(payload.data)
    return found


def cancel_requested(events: list[HistoryEvent]) -> bool:
    wanted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    return any(event.event_type == wanted for event in events)


async def not_found(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND
    return False


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_raising_starts_the_alarms_workflow_with_the_reference_signal(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
    mode: str,
) -> None:
    queue = unique("queue")
    # The Go form of the workflow ID: what the Go function does, byte for byte.
    settings = function_settings(
        REFERENCE_ALARM,
        queue,
        temporal_server.address,
        K_SINK=SINK,
        DEBUG="true",
        WORKFLOW_ID_MODE="alarm",
    )
    function = await serve(settings)
    await function.wait_ready()
    # The reference alarm name is not unique to this test: start from no run at all.
    with contextlib.suppress(RPCError):
        await temporal_client.get_workflow_handle(REFERENCE_ALARM).terminate("test start")
    cleanup.append(REFERENCE_ALARM)
    event = reference_event()
    request = as_binary(event) if mode == "binary" else as_structured(event)
    async with function.client() as client:
        with capture_logs() as logs:
            response = await post(client, request)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["decision"] == "preempt" and reply["workflowID"] == REFERENCE_ALARM

    events = await history(temporal_client, REFERENCE_ALARM)
    started = events[0].workflow_execution_started_event_attributes
    assert started.workflow_type.name == WORKFLOW_TYPE
    assert started.task_queue.name == queue
    assert started.workflow_execution_timeout.ToTimedelta() == timedelta(hours=24)
    assert not started.HasField("input") or not started.input.payloads
    # Byte for byte what the Go function sent (events/02_*).
    assert signals(events) == [reference_signal_bytes()]
    description = await temporal_client.get_workflow_handle(REFERENCE_ALARM).describe()
    assert description.run_id == reply["runID"]
    assert description.status == WorkflowExecutionStatus.RUNNING

    triggered = next(entry for entry in logs if entry["event"] == "preemption triggered")
    assert triggered["eventID"] == event["id"] and triggered["decision"] == "preempt"
    assert (triggered["criticality"], triggered["sink"]) == ("HIGH", SINK)
    assert triggered["runID"] == reply["runID"]


async def test_a_second_raising_event_signals_the_same_run(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm = unique("alarm")
    cleanup.append(on(alarm))
    function = await ready(serve, alarm, temporal_server.address)
    first = alarm_event(alarm, "green", "yellow")
    second = alarm_event(alarm, "yellow", "red", xml=True)  # Tanzu Sources' default encoding
    async with function.client() as client:
        one = await post(client, as_binary(first))
        two = await post(client, as_binary(second))
    assert one.status_code == two.status_code == 200
    assert one.json()["runID"] == two.json()["runID"]
    assert one.json()["workflowID"] == on(alarm)

    sent = [json.loads(data) for data in signals(await history(temporal_client, on(alarm)))]
    assert [s["criticality"] for s in sent] == ["MEDIUM", "HIGH"]
    assert [s["event"]["id"] for s in sent] == [first["id"], second["id"]]
    assert sent[0]["event"]["data"] == first["data"]
    assert sent[1]["event"]["data"] == second["data"]  # the XML text, as a string
    assert sent[1]["event"]["datacontenttype"] == "application/xml"
    assert all(s["replyTo"] == "" and s["tag"] == "preemptible" for s in sent)


async def test_lowering_cancels_only_that_alarms_workflow(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    queue = unique("queue")
    alarm_a, alarm_b = unique("alarm-a"), unique("alarm-b")
    cleanup += [on(alarm_a), on(alarm_b)]
    function_a = await serve(function_settings(alarm_a, queue, temporal_server.address))
    function_b = await serve(function_settings(alarm_b, queue, temporal_server.address))
    await function_a.wait_ready()
    await function_b.wait_ready()
    async with function_a.client() as client_a, function_b.client() as client_b:
        assert (await post(client_a, as_binary(alarm_event(alarm_a, "green", "red")))).is_success
        assert (await post(client_b, as_binary(alarm_event(alarm_b, "gray", "red")))).is_success
        # B's lowering sent to A's function is another alarm for it: ignored.
        ignored = await post(client_a, as_binary(alarm_event(alarm_b, "red", "green")))
        assert ignored.json()["decision"] == "ignore"
        lowered = await post(
            client_a, as_structured(alarm_event(alarm_a, "red", "green", old_router=True))
        )
    assert lowered.status_code == 200
    assert lowered.json()["decision"] == "cancel"
    assert lowered.json()["outcome"] == "cancel_requested"

    assert cancel_requested(await history(temporal_client, on(alarm_a)))
    assert not cancel_requested(await history(temporal_client, on(alarm_b)))
    description = await temporal_client.get_workflow_handle(on(alarm_b)).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING


async def test_one_alarm_on_two_clusters_is_two_workflows_and_lowering_one_leaves_the_other(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm = unique("alarm")
    cleanup += [on(alarm, "domain-c7"), on(alarm, "domain-c8")]
    function = await ready(serve, alarm, temporal_server.address)
    async with function.client() as client:
        a = await post(client, as_binary(alarm_event(alarm, "green", "red", entity="domain-c7")))
        b = await post(
            client, as_binary(alarm_event(alarm, "green", "yellow", xml=True, entity="domain-c8"))
        )
        assert (a.json()["workflowID"], b.json()["workflowID"]) == (
            on(alarm, "domain-c7"),
            on(alarm, "domain-c8"),
        )
        lowered = await post(
            client, as_binary(alarm_event(alarm, "yellow", "green", entity="domain-c8"))
        )
    assert (lowered.json()["workflowID"], lowered.json()["outcome"]) == (
        on(alarm, "domain-c8"),
        "cancel_requested",
    )
    assert cancel_requested(await history(temporal_client, on(alarm, "domain-c8")))
    assert not cancel_requested(await history(temporal_client, on(alarm, "domain-c7")))
    still = await temporal_client.get_workflow_handle(on(alarm, "domain-c7")).describe()
    assert still.status == WorkflowExecutionStatus.RUNNING
    assert await not_found(temporal_client, alarm)  # nothing under the alarm's name alone


async def test_the_go_id_mode_shares_one_workflow_between_clusters(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm = unique("alarm")
    cleanup.append(alarm)
    function = await ready(serve, alarm, temporal_server.address, WORKFLOW_ID_MODE="alarm")
    async with function.client() as client:
        a = await post(client, as_binary(alarm_event(alarm, "green", "red", entity="domain-c7")))
        b = await post(client, as_binary(alarm_event(alarm, "green", "red", entity="domain-c8")))
    assert a.json()["workflowID"] == b.json()["workflowID"] == alarm
    assert a.json()["runID"] == b.json()["runID"]


@pytest.mark.parametrize(("mode", "timeout"), [("entity", None), ("alarm", timedelta(hours=24))])
async def test_only_the_go_id_mode_gives_the_workflow_an_execution_timeout(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
    mode: str,
    timeout: timedelta | None,
) -> None:
    # Temporal counts an execution timeout across continue-as-new: an alarm raised longer
    # than it would lose its workflow, and what it stopped, silently. The per-entity form
    # sets none (the workflow ends itself); the Go form keeps the Go function's 24 h.
    alarm = unique("alarm")
    function = await ready(serve, alarm, temporal_server.address, WORKFLOW_ID_MODE=mode)
    async with function.client() as client:
        reply = await post(
            client, as_binary(alarm_event(alarm, "green", "red", entity="domain-c7"))
        )
    workflow_id = reply.json()["workflowID"]
    cleanup.append(workflow_id)
    assert workflow_id == (on(alarm, "domain-c7") if mode == "entity" else alarm)
    description = await temporal_client.get_workflow_handle(workflow_id).describe()
    configured = description.raw_description.execution_config.workflow_execution_timeout
    assert (configured.ToTimedelta() if configured.ToNanoseconds() else None) == timeout
    started = (await history(temporal_client, workflow_id))[0]
    attrs = started.workflow_execution_started_event_attributes
    assert attrs.HasField("workflow_execution_timeout") == (timeout is not None)


async def test_one_function_serves_several_alarms(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    cpu, memory, other = unique("cpu"), unique("memory"), unique("other")
    cleanup += [on(cpu), on(memory)]
    settings = function_settings(
        cpu, unique("queue"), temporal_server.address, VSPHERE_ALARM_NAMES=f'["{memory}"]'
    )
    function = await serve(settings)
    await function.wait_ready()
    async with function.client() as client:
        replies = [
            (await post(client, as_binary(alarm_event(name, "green", "red")))).json()
            for name in (cpu, memory, other)
        ]
    assert [r["decision"] for r in replies] == ["preempt", "preempt", "ignore"]
    assert [r.get("workflowID") for r in replies] == [on(cpu), on(memory), None]
    assert await not_found(temporal_client, on(other))


async def test_lowering_with_no_workflow_running_is_fine(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm = unique("alarm")
    cleanup.append(on(alarm))
    function = await ready(serve, alarm, temporal_server.address)
    async with function.client() as client:
        never = await post(client, as_binary(alarm_event(alarm, "yellow", "green")))
        assert (never.status_code, never.json()["outcome"]) == (200, "not_running")
        # A closed run is not running either.
        assert (await post(client, as_binary(alarm_event(alarm, "green", "red")))).is_success
        await temporal_client.get_workflow_handle(on(alarm)).terminate("closed for the test")
        closed = await post(client, as_binary(alarm_event(alarm, "red", "gray")))
        assert (closed.status_code, closed.json()["outcome"]) == (200, "not_running")
        # And the next raising event starts a new run.
        again = await post(client, as_binary(alarm_event(alarm, "gray", "yellow")))
    assert again.status_code == 200
    description = await temporal_client.get_workflow_handle(on(alarm)).describe()
    assert description.run_id == again.json()["runID"]
    assert description.status == WorkflowExecutionStatus.RUNNING


async def test_a_non_matching_alarm_starts_nothing(
    temporal_server: TemporalDevServer, temporal_client: Client, serve: Serve
) -> None:
    mine, other = unique("alarm"), unique("other")
    function = await ready(serve, mine, temporal_server.address)
    async with function.client() as client:
        for request in (
            as_binary(alarm_event(other, "green", "red")),
            as_structured(alarm_event(other, "green", "yellow", xml=True)),
            as_binary(alarm_event(other, "red", "green", old_router=True)),
        ):
            response = await post(client, request)
            assert (response.status_code, response.json()["decision"]) == (200, "ignore")
    assert await not_found(temporal_client, mine)
    assert await not_found(temporal_client, other)


def raw_http(port: int, request: bytes) -> bytes:
    """Send bytes on a fresh connection and read the answer until the server closes it.

    Blocking: run it in a thread, the server shares the test's event loop."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_each_bad_input_gets_its_status_and_the_server_goes_on(
    temporal_server: TemporalDevServer, serve: Serve
) -> None:
    alarm = unique("alarm")
    function = await ready(serve, alarm, temporal_server.address)
    good = as_binary(alarm_event("someone-else", "green", "red"))
    headers, _ = as_binary(alarm_event(alarm, "green", "red"))
    cases: list[tuple[str, dict[str, str], bytes, int]] = [
        ("POST", {"content-type": "application/json"}, b'{"a": 1}', 400),
        ("POST", headers, b"<not json>", 400),
        ("POST", *as_structured(alarm_event(alarm, "", "red")), 400),  # no status change
        ("POST", {"content-type": "application/cloudevents+json"}, b"\x00\xff", 400),
        ("GET", {}, b"", 405),
        ("PUT", headers, b"{}", 405),
    ]
    async with function.client() as client:
        for method, request_headers, body, status in cases:
            response = await client.request(method, "/", headers=request_headers, content=body)
            assert response.status_code == status, (method, body)
            assert "error" in response.json()
            assert (await post(client, good)).status_code == 200

        port = int(function.url.rsplit(":", 1)[1])
        # Announced too large: refused before a byte of the body is read.
        head = b"POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 2000000\r\n\r\n"
        announced = await asyncio.to_thread(raw_http, port, head)
        assert announced.startswith(b"HTTP/1.1 413 ")
        # Streamed (chunked, no length): refused once past 1 MiB.
        chunk = b"x" * 65536
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16))
        body += b"1\r\nx\r\n0\r\n\r\n"
        head = b"POST / HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n"
        streamed = await asyncio.to_thread(raw_http, port, head + body)
        assert streamed.startswith(b"HTTP/1.1 413 ")
        assert (await post(client, good)).status_code == 200
        assert (await client.get("/health/readiness")).status_code == 200


async def test_an_unknown_namespace_is_a_502_with_temporals_reason(
    temporal_server: TemporalDevServer, serve: Serve
) -> None:
    alarm = unique("alarm")
    function = await ready(
        serve, alarm, temporal_server.address, TEMPORAL_NAMESPACE="no-such-namespace"
    )
    async with function.client() as client:
        response = await post(client, as_binary(alarm_event(alarm, "green", "red")))
        assert response.status_code == 502
        error = response.json()["error"]
        assert error.startswith("failed to run preemption: signal-with-start: Temporal NOT_FOUND")
        assert "no-such-namespace" in error
        assert (await client.get("/health/liveness")).status_code == 200


@pytest.mark.temporal
async def test_temporal_going_away_is_a_503_the_broker_retries(serve: Serve) -> None:
    alarm = unique("alarm")
    with TemporalDevServer() as private:
        function = await serve(function_settings(alarm, unique("queue"), private.address))
        await function.wait_ready()
        async with function.client() as client:
            assert (await post(client, as_binary(alarm_event(alarm, "green", "red")))).is_success
    async with function.client() as client:
        raising = await post(client, as_binary(alarm_event(alarm, "yellow", "red")))
        assert raising.status_code == 503
        assert raising.headers["retry-after"] == "5"
        assert raising.json()["error"].startswith("failed to run preemption: signal-with-start:")
        # Lowering: the cancel failure is logged, success returned (docs/wire.md, decision rule 8).
        lowering = await post(client, as_binary(alarm_event(alarm, "red", "green")))
        assert (lowering.status_code, lowering.json()["outcome"]) == (200, "cancel_failed")
        assert (await client.get("/health/liveness")).status_code == 200


@pytest.mark.temporal
async def test_readiness_waits_for_temporal(serve: Serve) -> None:
    server = TemporalDevServer(port=free_port())  # not started yet
    function = await serve(function_settings(unique("alarm"), unique("queue"), server.address))
    async with function.client() as client:
        waiting = await client.get("/health/readiness")
        assert waiting.status_code == 503
        assert (
            "cannot reach" in waiting.json()["reason"] or "connecting" in waiting.json()["reason"]
        )
        with server:
            await function.wait_ready()
            assert (await client.get("/health/readiness")).json() == {"status": "ready"}


@pytest.mark.temporal
async def test_a_raise_while_the_first_connection_is_under_way_waits_for_it(
    serve: Serve,
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    go_on = asyncio.Event()
    connect = PreemptionClient.connect

    async def slow_connect(*args: Any, **kwargs: Any) -> PreemptionClient:
        await go_on.wait()  # the first attempt is under way until the test says
        return await connect(*args, **kwargs)

    monkeypatch.setattr(PreemptionClient, "connect", slow_connect)
    alarm = unique("alarm")
    function = await serve(function_settings(alarm, unique("queue"), temporal_server.address))
    async with function.client() as client:
        assert function.app.state.link.ready is False
        ignored = await post(client, as_binary(alarm_event("other-alarm", "green", "red")))
        assert ignored.status_code == 200  # an ignored event never waits
        headers, body = as_binary(alarm_event(alarm, "green", "red"))
        raising = asyncio.create_task(client.post("/", headers=headers, content=body))
        await asyncio.sleep(0.3)
        assert not raising.done()  # waiting for the connection, not refused
        go_on.set()
        answer = await raising
        assert answer.status_code == 200, answer.text
        assert len(signals(await history(temporal_client, on(alarm)))) == 1
        await temporal_client.get_workflow_handle(on(alarm)).terminate("test done")


@pytest.mark.temporal
async def test_connecting_on_first_use_is_ready_at_once_and_a_raise_connects_and_signals(
    serve: Serve, temporal_server: TemporalDevServer, temporal_client: Client
) -> None:
    alarm = unique("alarm")
    function = await serve(
        function_settings(
            alarm, unique("queue"), temporal_server.address, TEMPORAL_CONNECT="first-use"
        )
    )
    async with function.client() as client:
        assert (await client.get("/health/readiness")).json() == {"status": "ready"}
        other = await post(client, as_binary(alarm_event("other-alarm", "green", "red")))
        assert other.status_code == 200
        assert function.app.state.link._task is None  # an ignored event needs no Temporal
        raising = await post(client, as_binary(alarm_event(alarm, "green", "red")))
        assert raising.status_code == 200, raising.text  # waited for the connection
        assert len(signals(await history(temporal_client, on(alarm)))) == 1
        assert (await client.get("/health/readiness")).json() == {"status": "ready"}
        await temporal_client.get_workflow_handle(on(alarm)).terminate("test done")


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the /metrics text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"vsphere_preemption_function_{name}{{{wanted}}} " if labels else f"{name} "
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(found[0].split()[-1]) if found else 0.0


async def test_a_redelivered_event_is_answered_as_a_duplicate_and_signalled_once(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm = unique("alarm")
    cleanup.append(on(alarm))
    function = await ready(serve, alarm, temporal_server.address)
    event = alarm_event(alarm, "green", "red")
    other = alarm_event(alarm, "green", "red")  # another event: a new id
    async with function.client() as client:
        first = await post(client, as_binary(event))
        again = await post(client, as_binary(event))  # the broker redelivers
        structured = await post(client, as_structured(event))  # the same event, other mode
        # Two deliveries at once: one waits for the other, then is a duplicate.
        both = await asyncio.gather(*(post(client, as_binary(other)) for _ in range(2)))
        scraped = (await client.get("/metrics")).text
    assert (first.status_code, first.json()["decision"]) == (200, "preempt")
    for reply in (again, structured):
        assert (reply.status_code, reply.json()["decision"]) == (200, "duplicate")
        assert reply.json()["eventID"] == event["id"]
        assert reply.json()["workflowID"] == on(alarm)
        assert "runID" not in reply.json()
    assert sorted(r.json()["decision"] for r in both) == ["duplicate", "preempt"]

    sent = [json.loads(data) for data in signals(await history(temporal_client, on(alarm)))]
    assert [s["event"]["id"] for s in sent] == [event["id"], other["id"]]
    assert metric(scraped, "events_ignored_total", reason="duplicate") == 3
    assert metric(scraped, "events_acted_total", action="preempt", outcome="signalled") == 2
    assert metric(scraped, "event_handling_seconds_count", decision="duplicate") == 3


async def test_a_redelivered_lowering_event_cancels_once(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm = unique("alarm")
    cleanup.append(on(alarm))
    function = await ready(serve, alarm, temporal_server.address)
    lowering = alarm_event(alarm, "red", "green")
    async with function.client() as client:
        assert (await post(client, as_binary(alarm_event(alarm, "green", "red")))).is_success
        first = await post(client, as_binary(lowering))
        again = await post(client, as_binary(lowering))
    assert first.json()["outcome"] == "cancel_requested"
    assert (again.status_code, again.json()["decision"]) == (200, "duplicate")
    assert "outcome" not in again.json()
    assert cancel_requested(await history(temporal_client, on(alarm)))


async def test_duplicates_can_be_turned_off(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm = unique("alarm")
    cleanup.append(on(alarm))
    function = await ready(serve, alarm, temporal_server.address, DEDUP_MAX_EVENTS="0")
    event = alarm_event(alarm, "green", "red")
    async with function.client() as client:
        replies = [(await post(client, as_binary(event))).json() for _ in range(2)]
    assert [r["decision"] for r in replies] == ["preempt", "preempt"]
    assert len(signals(await history(temporal_client, on(alarm)))) == 2


async def test_a_refused_event_is_not_remembered_so_its_retry_is_acted_on(
    temporal_server: TemporalDevServer, serve: Serve
) -> None:
    alarm = unique("alarm")
    function = await ready(
        serve, alarm, temporal_server.address, TEMPORAL_NAMESPACE="no-such-namespace"
    )
    event = alarm_event(alarm, "green", "red")
    async with function.client() as client:
        statuses = [(await post(client, as_binary(event))).status_code for _ in range(2)]
    assert statuses == [502, 502]  # the retry was tried again, not called a duplicate


@pytest.mark.temporal
async def test_after_a_503_the_brokers_retry_signals(serve: Serve) -> None:
    alarm = unique("alarm")
    server = TemporalDevServer(port=free_port())  # not started yet: Temporal is down
    function = await serve(function_settings(alarm, unique("queue"), server.address))
    event = alarm_event(alarm, "green", "red")
    async with function.client() as client:
        down = await post(client, as_binary(event))
        assert (down.status_code, down.headers["retry-after"]) == (503, "5")
        with server:
            await function.wait_ready()
            retried = await post(client, as_binary(event))  # the broker's retry
            assert (retried.status_code, retried.json()["decision"]) == (200, "preempt")
            redelivered = await post(client, as_binary(event))
            assert redelivered.json()["decision"] == "duplicate"
            private = await Client.connect(server.address, namespace="vsphere-preemption")
            sent = signals(await history(private, on(alarm)))
            assert [json.loads(s)["event"]["id"] for s in sent] == [event["id"]]
            await private.get_workflow_handle(on(alarm)).terminate("test done")


async def test_an_event_whose_signal_the_workflow_would_drop_is_a_400(
    temporal_server: TemporalDevServer, temporal_client: Client, serve: Serve
) -> None:
    alarm = unique("alarm")
    function = await ready(serve, alarm, temporal_server.address)
    # Under 1 MiB as a body, over it as a signal: Go's JSON writes each `<` as `\u003c`.
    event = alarm_event(alarm, "green", "red")
    event["data"]["FullFormattedMessage"] = "<" * 200_000
    headers, body = as_binary(event, pretty=False)
    assert len(body) < 1024 * 1024
    async with function.client() as client:
        response = await post(client, (headers, body))
        assert response.status_code == 400
        assert response.json()["error"].startswith("event cannot be signalled: the signal is 1")
        event["data"]["FullFormattedMessage"] = "<" * 100
        assert (await post(client, as_binary(event))).json()["decision"] == "preempt"
    assert len(signals(await history(temporal_client, on(alarm)))) == 1
    await temporal_client.get_workflow_handle(on(alarm)).terminate("test done")


async def test_several_vcenters_each_event_to_its_vcenters_task_queue(
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    serve: Serve,
    cleanup: list[str],
) -> None:
    alarm, queue_a, queue_b = unique("alarm"), unique("queue-a"), unique("queue-b")
    # The same moref on both vCenters: two workflows, one per vCenter.
    id_a = f"{alarm}/vcsa-a.example.com/{CLUSTER}"
    id_b = f"{alarm}/vcsa-b.example.com/{CLUSTER}"
    cleanup += [id_a, id_b]
    mapping = {"https://vcsa-a.example.com/sdk": queue_a, "VCSA-B.example.com": queue_b}
    settings = function_settings(
        alarm, "not-this-queue", temporal_server.address, VCENTER_TASKQUEUES=json.dumps(mapping)
    )
    function = await serve(settings)
    await function.wait_ready()
    a, b = "https://vcsa-a.example.com/sdk", "https://VCSA-B.example.com:443/sdk/"
    c = "https://vcsa-c.example.com/sdk"
    async with function.client() as client:
        raised_a = await post(client, as_binary(alarm_event(alarm, "green", "red", source=a)))
        raised_b = await post(client, as_binary(alarm_event(alarm, "green", "yellow", source=b)))
        with capture_logs() as logs:
            unknown = await post(client, as_binary(alarm_event(alarm, "green", "red", source=c)))
            # Whatever its data: not ours to judge either.
            headers, _ = as_binary(alarm_event(alarm, "green", "red", source=c))
            garbled = await client.post("/", headers=headers, content=b"<not json>")
        lowered_b = await post(client, as_binary(alarm_event(alarm, "yellow", "green", source=b)))
        metrics = (await client.get("/metrics")).text

    assert (raised_a.status_code, raised_a.json()["workflowID"]) == (200, id_a)
    assert (raised_b.status_code, raised_b.json()["workflowID"]) == (200, id_b)
    for workflow_id, queue in ((id_a, queue_a), (id_b, queue_b)):
        started = (await history(temporal_client, workflow_id))[0]
        assert started.workflow_execution_started_event_attributes.task_queue.name == queue

    for reply in (unknown, garbled):
        assert reply.status_code == 200
        assert reply.json()["decision"] == "ignore"
        assert reply.json()["reason"] == "unknown vCenter vcsa-c.example.com"
    warnings = [e for e in logs if e["event"] == "event from an unknown vCenter ignored"]
    assert len(warnings) == 2 and {w["log_level"] for w in warnings} == {"warning"}
    assert warnings[0]["source"] == c
    assert warnings[0]["known"] == ["vcsa-a.example.com", "vcsa-b.example.com"]
    assert 'vsphere_preemption_function_events_ignored_total{reason="unknown_source"} 2.0' in (
        metrics
    )
    assert await not_found(temporal_client, f"{alarm}/vcsa-c.example.com/{CLUSTER}")
    assert await not_found(temporal_client, on(alarm))  # nothing in the single-vCenter form

    # B's alarm lowering cancels B's workflow only.
    assert (lowered_b.json()["workflowID"], lowered_b.json()["outcome"]) == (
        id_b,
        "cancel_requested",
    )
    assert cancel_requested(await history(temporal_client, id_b))
    assert not cancel_requested(await history(temporal_client, id_a))
