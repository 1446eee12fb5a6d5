"""The Temporal server stopped and started again on the same database, mid-run.

Real parts: a Temporal dev server of this test's own, on a SQLite file and a fixed port (so
that it can come back as the same server), vcsim, the worker as its own process, the function
served by uvicorn. The function receives a raising alarm; while the run powers VMs off (each
takes 1.5 s in vcsim), Temporal stops; the function's readiness turns 503; Temporal starts
again on the same file and port; readiness is 200 again; the run completes, each VM off
once; a later event reaches the workflow as a signal; neither the worker nor the function
was restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tests.e2e.world import run_history
from tests.function.conftest import (
    CLUSTER,
    Serve,
    alarm_event,
    as_binary,
    function_settings,
    on,
    post,
)
from tests.temporal.helpers import eventually, unique, wait_for
from tests.temporal.rig import Observer, powered_off, rig_on, vcsim_args
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim, free_port
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.wire import DEFAULT_NAMESPACE, PREEMPTED_EVENT_TYPE

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]


async def readiness(client: httpx.AsyncClient) -> int:
    return (await client.get("/health/readiness")).status_code


async def test_temporal_restarted_on_its_database_mid_run_the_run_completes_nobody_restarts(
    serve: Serve, vcsim_factory: Callable[..., Vcsim], tmp_path: Path
) -> None:
    sim = vcsim_factory(*vcsim_args("-method-delay", "PowerOffVM_Task:1500"))
    server = TemporalDevServer(
        port=free_port(), db_file=tmp_path / "temporal.db", log_file=tmp_path / "temporal.log"
    )
    _, vcenter, scene, queue, env = rig_on(
        sim, server.address, tmp_path, "queue", on=3, off=0,
        PREEMPTION_NOTICE_HIGH="0", PREEMPTION_COOLDOWN="0", PREEMPTION_MAX_CONCURRENCY="1",
    )  # fmt: skip
    observer = Observer(sim)
    observer.mark("VmPoweredOffEvent")
    alarm = unique("alarm")
    workflow_id = on(alarm, CLUSTER)
    with server, EventSink() as sink:
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            function = await serve(function_settings(alarm, queue, server.address, K_SINK=sink.url))
            await function.wait_ready()
            temporal = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
            handle = temporal.get_workflow_handle(workflow_id)
            async with function.client() as http:
                raising = await post(http, as_binary(alarm_event(alarm, "green", "red")))
                assert raising.status_code == 200, raising.text

                async def some_off() -> set[Any]:
                    return await asyncio.to_thread(powered_off, vcenter, scene.on)

                await eventually(some_off, bool, what="the first VM off", timeout=60)
                server.stop()
                assert await asyncio.to_thread(powered_off, vcenter, scene.on) != set(scene.on)
                down = await eventually(
                    lambda: http.get("/health/readiness"), lambda r: r.status_code == 503,
                    what="readiness 503", timeout=30,
                )  # fmt: skip
                server.start()  # the same SQLite file, the same port
                await eventually(
                    lambda: readiness(http), lambda s: s == 200, what="ready again", timeout=30
                )
                first = await eventually(
                    lambda: run_history(handle), lambda r: bool(r) and "outcome" in r[0],
                    what="the run", timeout=90,
                )  # fmt: skip
                await wait_for(lambda: bool(sink.events), what="the event", timeout=30)
                # A later event: signalled, as the workflow's history of runs shows.
                later = await post(http, as_binary(alarm_event(alarm, "yellow", "red")))
                assert later.status_code == 200, later.text
                both = await eventually(
                    lambda: run_history(handle), lambda r: len(r) == 2, what="run 2", timeout=60
                )
            assert worker.proc is not None and worker.proc.poll() is None  # never restarted
            await handle.terminate("test over")
        finally:
            worker.stop()

    assert down.json()["status"] == "not ready"
    assert down.json()["reason"].startswith(f"Temporal at {server.address} does not answer")
    assert first[0]["outcome"] == "acted"
    assert sorted(first[0]["stopped"]) == sorted(r.value for r in scene.on)
    assert powered_off(vcenter, scene.on) == set(scene.on)
    assert observer.events("VmPoweredOffEvent") == {
        ("VmPoweredOffEvent", r.value): 1 for r in scene.on
    }
    observer.close()
    vcenter.close()
    assert [e.type for e in sink.events] == [PREEMPTED_EVENT_TYPE]
    # The later raise: a run of its own; nothing left on to stop.
    assert both[1]["run"] == 2 and both[1]["outcome"] != "acted"
