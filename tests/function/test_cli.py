"""`preemptctl function` as a process: settings errors at start, then a real run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
from temporalio.client import Client

from tests.function.conftest import SINK, alarm_event, as_binary, on, post
from tests.temporal.helpers import unique
from vsphere_preemption.devtools.devservers import TemporalDevServer, free_port
from vsphere_preemption.wire import DEFAULT_NAMESPACE

SETTINGS = (
    "TEMPORAL_URL", "TEMPORAL_NAMESPACE", "TEMPORAL_TASKQUEUE", "VSPHERE_PREEMPTION_TAG",
    "VSPHERE_ALARM_NAME", "K_SINK", "PORT", "DEBUG",
)  # fmt: skip


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return {**env, **settings}


def test_bad_settings_exit_non_zero_naming_every_variable() -> None:
    env = clean_env(TEMPORAL_NAMESPACE=" ", PORT="eighty", VSPHERE_PREEMPTION_TAG="preemptible")
    done = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "function"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()  # one message, no traceback
    for name in ("TEMPORAL_URL", "TEMPORAL_NAMESPACE", "TEMPORAL_TASKQUEUE",
                 "VSPHERE_ALARM_NAME", "PORT"):  # fmt: skip
        assert name in line
    assert "VSPHERE_PREEMPTION_TAG" not in line and "eighty" not in line


def test_bad_settings_read_after_listening_exit_2_all_the_same() -> None:
    # A plain PORT: the process listens (liveness) before it reads the other settings.
    env = clean_env(PORT=str(free_port()), TEMPORAL_URL="127.0.0.1:1")
    done = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "function", "--host", "127.0.0.1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("preemptctl function: invalid function settings:")
    assert "TEMPORAL_NAMESPACE" in line and "TEMPORAL_URL" not in line


async def test_the_process_serves_events_and_stops_on_sigterm(
    temporal_server: TemporalDevServer, temporal_client: Client
) -> None:
    alarm, queue, port = unique("alarm"), unique("queue"), free_port()
    env = clean_env(
        TEMPORAL_URL=temporal_server.address,
        TEMPORAL_NAMESPACE=DEFAULT_NAMESPACE,
        TEMPORAL_TASKQUEUE=queue,
        VSPHERE_PREEMPTION_TAG="preemptible",
        VSPHERE_ALARM_NAME=alarm,
        K_SINK=SINK,
        PORT=str(port),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsphere_preemption", "function", "--host", "127.0.0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(600):
                try:
                    if (await client.get("/health/readiness")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                await asyncio.sleep(0.05)
            event = alarm_event(alarm, "green", "red")
            response = await post(client, as_binary(event))
        assert response.status_code == 200, response.text
        handle = temporal_client.get_workflow_handle(on(alarm))
        assert (await handle.describe()).run_id == response.json()["runID"]
        await handle.terminate("test done")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    # A graceful stop: uvicorn finishes its shutdown, then re-raises the signal it caught so
    # that the parent sees why the process ended (exit status 143 from a shell).
    assert proc.returncode == -signal.SIGTERM, err
    assert err == b""
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.decode().splitlines()]
    assert {"function starting", "connected to temporal", "preemption triggered"} <= {
        line["event"] for line in lines
    }
    triggered = next(line for line in lines if line["event"] == "preemption triggered")
    assert triggered["eventID"] == event["id"] and triggered["decision"] == "preempt"
    assert triggered["level"] == "info" and triggered["program"] == "function"
