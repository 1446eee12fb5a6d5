"""The worker's health endpoint (HEALTH_ADDRESS), which the chart's probes ask: the real
`preemptctl worker` process against the Temporal dev server and vcsim, and the server alone
for what a process cannot be made to do on demand (a blocked event loop)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.temporal.helpers import unique
from tests.temporal.rig import vcsim_args, worker_env, write_secret
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.settings import SettingsError, WorkerSettings, load
from vsphere_preemption.temporal.health import HealthServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(
    probe: Callable[[], tuple[int, dict[str, Any]]],
    done: Callable[[tuple[int, dict[str, Any]]], bool],
    worker: WorkerProcess,
    timeout: float = 60.0,
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()
        try:
            last = probe()
            if done(last):
                return last  # type: ignore[no-any-return]
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {last!r}\n{worker.log()}")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"worker-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def test_a_running_worker_is_alive_and_ready_then_stops_cleanly(
    temporal_server: TemporalDevServer,
    vcsim_factory: Callable[..., Vcsim],
    started: Callable[[dict[str, str]], WorkerProcess],
    tmp_path: Path,
) -> None:
    sim = vcsim_factory(*vcsim_args())
    port = free_port()
    env = worker_env(sim, write_secret(tmp_path / "vsphere", sim), temporal_server.address,
                     unique("health"), HEALTH_ADDRESS=f"127.0.0.1:{port}")  # fmt: skip
    worker = started(env)
    alive = wait_for(lambda: get(port, "/health/liveness"), lambda a: a[0] == 200, worker)
    assert alive == (200, {"status": "ok"})
    ready = wait_for(lambda: get(port, "/health/readiness"), lambda a: a[0] == 200, worker)
    assert ready == (200, {"status": "ready", "checks": {"temporal": "ok", "vcenter": "ok"}})
    assert get(port, "/elsewhere")[0] == 404
    assert worker.terminate() == 0, worker.log()
    with pytest.raises(urllib.error.URLError):  # the port is closed with the worker
        get(port, "/health/liveness", timeout=2)


def test_a_worker_vcenter_refuses_is_alive_but_not_ready_and_says_why(
    temporal_server: TemporalDevServer,
    vcsim_factory: Callable[..., Vcsim],
    started: Callable[[dict[str, str]], WorkerProcess],
    tmp_path: Path,
) -> None:
    sim = vcsim_factory(*vcsim_args())
    secret = write_secret(tmp_path / "vsphere", sim)
    (secret / "password").write_text("not-the-password\n")
    port = free_port()
    env = worker_env(sim, secret, temporal_server.address, unique("health"),
                     HEALTH_ADDRESS=f"127.0.0.1:{port}")  # fmt: skip
    worker = started(env)
    # Polling Temporal (its check passes), but no vCenter session: not ready, and the
    # answer names the check that failed. Liveness is unaffected: a restart cures nothing.
    _, body = wait_for(
        lambda: get(port, "/health/readiness"),
        lambda a: a[0] == 503 and "temporal" not in a[1].get("checks", {"temporal": 1}),
        worker,
    )
    assert body["status"] == "not ready" and set(body["checks"]) == {"vcenter"}
    assert body["checks"]["vcenter"].startswith("no session")
    assert get(port, "/health/liveness") == (200, {"status": "ok"})
    assert "worker not ready" in worker.log()


def test_liveness_fails_when_the_event_loop_is_blocked() -> None:
    """The server answers from the worker's loop: a loop stuck in blocking code answers
    nothing, so the probe times out and Kubernetes restarts the pod."""
    loop = asyncio.new_event_loop()
    port = free_port()
    server = HealthServer(f"127.0.0.1:{port}", {})
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        assert get(port, "/health/liveness") == (200, {"status": "ok"})
        assert get(port, "/health/readiness") == (200, {"status": "ready", "checks": {}})
        loop.call_soon_threadsafe(time.sleep, 3)  # blocking code on the loop
        time.sleep(0.1)
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            get(port, "/health/liveness", timeout=1)
        time.sleep(3)
        assert get(port, "/health/liveness") == (200, {"status": "ok"})
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_slow_or_failing_check_is_a_named_503() -> None:
    async def slow() -> str | None:
        await asyncio.sleep(10)
        return None

    async def broken() -> str | None:
        raise RuntimeError("boom")

    async def main() -> Any:
        server = HealthServer("127.0.0.1:0", {"slow": slow, "broken": broken})
        return await server.answer("/health/readiness")

    answer = asyncio.run(main())
    assert answer.status == 503
    assert answer.body["checks"] == {
        "slow": "no answer within 3 s",
        "broken": "RuntimeError: boom",
    }


def test_health_address_is_a_checked_worker_setting() -> None:
    base = {"TEMPORAL_URL": "localhost:7233", "VCENTER_URL": "https://vc/sdk"}
    assert load(WorkerSettings, base).health_address == ""  # off unless asked for
    assert load(WorkerSettings, {**base, "HEALTH_ADDRESS": ":8081"}).health_address == ":8081"
    with pytest.raises(SettingsError, match="HEALTH_ADDRESS"):
        load(WorkerSettings, {**base, "HEALTH_ADDRESS": "8081"})
