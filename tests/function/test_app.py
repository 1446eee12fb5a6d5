"""The ASGI app in process (httpx's ASGI transport; uvicorn on loopback where HTTP itself is
the point), with its Temporal link not connected: the HTTP around the handler (paths,
methods, body limits and deadlines, health, metrics, a bug's 500) and the answers when
Temporal is not there. Each decision of the handler itself, without HTTP: test_handler.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.function.conftest import (
    alarm_event,
    as_binary,
    function_settings,
    post,
)
from tests.function.test_boot import served
from tests.function.test_http_protocol import read_reply
from vsphere_preemption.function import handler as handler_module
from vsphere_preemption.function.app import DRAIN_BYTES, MAX_BODY, BodyDeadlines, create_app
from vsphere_preemption.function.boot import Booting
from vsphere_preemption.settings import FunctionSettings

ALARM = "cluster-cpu-above-80"


def client_for(settings: FunctionSettings) -> httpx.AsyncClient:
    # No lifespan runs under this transport: the Temporal link stays unconnected.
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://function")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(function_settings(ALARM)) as c:
        yield c


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_liveness_at_once_readiness_only_when_connected(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/liveness")).status_code == 200
    ready = await client.get("/health/readiness")
    assert ready.status_code == 503
    assert "cannot reach" in ready.json()["reason"] or "connecting" in ready.json()["reason"]


async def test_each_event_is_counted_and_the_handlers_answer_and_metrics_served(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, as_binary(alarm_event("other-alarm", "green", "red")))
    assert response.status_code == 200
    assert response.json()["decision"] == "ignore"
    assert await metric(client, "vsphere_preemption_function_events_received_total") == 1
    ignored = "vsphere_preemption_function_events_ignored_total"
    assert await metric(client, ignored, reason="other_alarm") == 1
    latency = "vsphere_preemption_function_event_handling_seconds_count"
    assert await metric(client, latency, decision="ignore") == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "POST CloudEvents here" in response.json()["error"]


async def test_unknown_paths_are_404_in_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/events")
    assert response.status_code == 404 and "error" in response.json()


async def test_a_body_announced_over_1_mib_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/", content=b"x" * (MAX_BODY + 1))
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    rejected = "vsphere_preemption_function_events_rejected_total"
    assert await metric(client, rejected, reason="too_large") == 1


async def test_a_streamed_body_is_refused_once_over_1_mib_and_drained_within_bounds(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1024):  # 64 MiB offered, without a Content-Length
            sent += 1
            yield b"x" * 65536

    headers, _ = as_binary(alarm_event(ALARM, "green", "red"))
    response = await client.post("/", headers=headers, content=chunks())
    assert response.status_code == 413
    assert "over 1048576 bytes" in response.json()["error"]
    # Refused past 1 MiB; then what follows is read and dropped (the 413 must reach a client
    # still sending, RFC 9112 9.6), up to DRAIN_BYTES, not the whole of it.
    assert 16 < sent < 1024
    assert (sent - 16) * 65536 <= DRAIN_BYTES + 65536


async def test_a_body_of_exactly_1_mib_is_read(client: httpx.AsyncClient) -> None:
    headers, _ = as_binary(alarm_event(ALARM, "green", "red"))
    response = await client.post("/", headers=headers, content=b" " * MAX_BODY)
    assert response.status_code == 400  # read, then found empty: not 413


async def test_raising_without_temporal_is_503_with_the_reason(client: httpx.AsyncClient) -> None:
    response = await post(client, as_binary(alarm_event(ALARM, "green", "red")))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert error.startswith("failed to run preemption: not connected to Temporal at 127.0.0.1:1")
    acted = "vsphere_preemption_function_events_acted_total"
    assert await metric(client, acted, action="preempt", outcome="failed") == 1


async def test_lowering_without_temporal_is_logged_and_200(client: httpx.AsyncClient) -> None:
    event = alarm_event(ALARM, "red", "green")
    with capture_logs() as logs:
        response = await post(client, as_binary(event))
    assert response.status_code == 200
    assert response.json()["outcome"] == "cancel_failed"
    failed = [entry for entry in logs if entry["event"] == "cancel failed"]
    assert failed and failed[0]["eventID"] == event["id"] and failed[0]["decision"] == "cancel"
    assert failed[0]["log_level"] == "error"


async def test_a_bug_is_a_handled_500_and_the_next_request_is_served(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(handler_module, "decide", broken)
    with capture_logs() as logs:
        response = await post(client, as_binary(alarm_event(ALARM, "green", "red")))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: RuntimeError"}
    assert any(entry["event"] == "event handling failed" for entry in logs)
    monkeypatch.undo()
    response = await post(client, as_binary(alarm_event("other", "green", "red")))
    assert response.status_code == 200


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {
        "vsphere_preemption_function_events_received",
        "vsphere_preemption_function_event_handling_seconds",
        "process_resident_memory_bytes",
    } <= names


async def test_reply_bodies_are_json_objects(client: httpx.AsyncClient) -> None:
    response = await post(client, as_binary(alarm_event("other-alarm", "red", "green")))
    assert json.loads(response.content) == {
        "eventID": response.json()["eventID"],
        "decision": "ignore",
        "reason": "alarm 'other-alarm' is not 'cluster-cpu-above-80'",
    }


async def test_a_body_shorter_than_its_content_length_is_408_after_the_body_timeout() -> None:
    # Over real HTTP (uvicorn, as the function serves): the head says 1,000 bytes, 10 come.
    settings = function_settings(ALARM, BODY_TIMEOUT="0.3")
    async with served(Booting(lambda: create_app(settings))) as client:
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        headers, _ = as_binary(alarm_event(ALARM, "green", "red"))
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        started = time.monotonic()
        writer.write(f"POST / HTTP/1.1\r\nhost: f\r\n{lines}content-length: 1000\r\n\r\n".encode())
        writer.write(b'{"short": ')
        status, reply_headers, body = await read_reply(reader)
        waited = time.monotonic() - started
        assert status.startswith(b"HTTP/1.1 408") and reply_headers["connection"] == "close"
        assert json.loads(body) == {
            "error": "request body not received within 0.3 s (10 of 1000 bytes came)"
        }
        assert 0.3 <= waited < 2
        assert await reader.read() == b""  # and the connection closed
        writer.close()
        await writer.wait_closed()
        rejected = "vsphere_preemption_function_events_rejected_total"
        assert await metric(client, rejected, reason="body_timeout") == 1


async def test_a_stalled_streamed_body_is_408_and_a_slow_one_in_time_is_read() -> None:
    settings = function_settings(ALARM, BODY_TIMEOUT="0.4")
    headers, body = as_binary(alarm_event("other-alarm", "green", "red"))

    async def slowly(pause: float) -> AsyncIterator[bytes]:
        for i in range(0, len(body), len(body) // 3 + 1):
            yield body[i : i + len(body) // 3 + 1]
            await asyncio.sleep(pause)

    async with client_for(settings) as client:
        in_time = await client.post("/", headers=headers, content=slowly(0.05))
        assert in_time.status_code == 200 and in_time.json()["decision"] == "ignore"
        stalled = await client.post("/", headers=headers, content=slowly(30))
        assert stalled.status_code == 408
        assert stalled.json()["error"].startswith("request body not received within 0.4 s")


async def test_body_deadlines_watch_only_while_someone_reads() -> None:
    deadlines = BodyDeadlines(0.2)
    assert deadlines.tick == 0.05

    async def whole() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    assert await deadlines.read({}, whole) == b"{}"
    await asyncio.sleep(0.1)  # the watcher saw nobody reading, and went
    assert deadlines._watcher is None and not deadlines._readers
    assert BodyDeadlines(0).tick == 0.01  # 0: no bound (read as is)
    assert await BodyDeadlines(0).read({}, whole) == b"{}"


async def test_connecting_on_first_use_is_ready_at_once_and_a_raise_gets_the_first_attempt() -> (
    None
):
    settings = function_settings(ALARM, TEMPORAL_CONNECT="first-use")  # an unreachable Temporal
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        await app.startup()  # connects nothing: only when an event needs it
        ready = await client.get("/health/readiness")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        ignored = await post(client, as_binary(alarm_event("other-alarm", "green", "red")))
        assert ignored.status_code == 200 and app.state.link._task is None
        raising = await post(client, as_binary(alarm_event(ALARM, "green", "red")))
        assert raising.status_code == 503 and raising.headers["retry-after"] == "5"
        assert "cannot reach the Temporal server" in raising.json()["error"]
        # It tries on in the background, and readiness says why it is not ready.
        waiting = await client.get("/health/readiness")
        assert waiting.status_code == 503 and "cannot reach" in waiting.json()["reason"]
        await app.shutdown()
        assert app.state.link._task is None
