"""Booting (function/boot.py) in front of the real app, served by uvicorn on loopback: liveness
while the app is being built, events held until it is, and a build that fails."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
from collections.abc import AsyncIterator, Callable

import httpx
import uvicorn

from tests.function.conftest import _QuietServer, alarm_event, as_binary, function_settings, post
from vsphere_preemption.function.app import FunctionApp, create_app
from vsphere_preemption.function.boot import App, Booting, collector_off
from vsphere_preemption.function.http_protocol import CoalescingHttpToolsProtocol

ALARM = "cluster-cpu-above-80"


@contextlib.asynccontextmanager
async def served(app: Booting) -> AsyncIterator[httpx.AsyncClient]:
    """`app` behind uvicorn as `preemptctl function` runs it (httptools, one write a reply)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, http=CoalescingHttpToolsProtocol, lifespan="on", ws="none", access_log=False,
        log_config=None, log_level="error",
    )  # fmt: skip
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def blocked_build(release: threading.Event) -> Callable[[], App]:
    def build() -> FunctionApp:
        assert release.wait(30), "the test never let the build finish"
        return create_app(function_settings(ALARM))

    return build


async def test_liveness_answers_while_the_app_is_built_and_events_wait_for_it() -> None:
    release = threading.Event()
    booting = Booting(blocked_build(release))
    async with served(booting) as client:
        headers, body = as_binary(alarm_event("other", "green", "red"))
        event = asyncio.create_task(client.post("/", headers=headers, content=body))
        alive = await client.get("/health/liveness")
        assert alive.status_code == 200 and alive.json() == {"status": "alive"}
        ready = await client.get("/health/readiness")
        assert ready.status_code == 503 and ready.json()["reason"] == "starting"
        assert not event.done()  # held while the app is being built, not refused
        release.set()
        answer = await event
        assert answer.status_code == 200 and answer.json()["decision"] == "ignore"
        assert booting.app is not None
        # The app's own answers from now on: not connected to Temporal (there is none).
        ready = await client.get("/health/readiness")
        assert ready.status_code == 503 and ready.json()["reason"] != "starting"
        assert (await client.get("/metrics")).status_code == 200


async def test_a_failed_build_is_told_and_every_request_is_503_with_why() -> None:
    failures: list[BaseException] = []

    def broken() -> FunctionApp:
        raise RuntimeError("no settings today")

    async with served(Booting(broken, on_failure=failures.append)) as client:
        answer = await post(client, as_binary(alarm_event(ALARM, "green", "red")))
        assert answer.status_code == 503
        assert answer.json() == {"error": "function did not start: RuntimeError: no settings today"}
        assert (await client.get("/health/liveness")).status_code == 503
    assert [str(exc) for exc in failures] == ["no settings today"]


def test_the_collector_is_off_while_building_and_on_again_after() -> None:
    assert gc.isenabled()
    with collector_off():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_off():
            pass
        assert not gc.isenabled()  # as it was
    finally:
        gc.enable()
