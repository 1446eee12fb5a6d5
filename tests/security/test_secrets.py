"""Secrets reach nothing but the files they are read from.

The function and two workers run as `preemptctl` processes at DEBUG, through mutual TLS and
an API key to Temporal (nginx in front of the dev server), the function behind a bearer
token. One alarm is acted on (worker A, the right vCenter password: VMs off, the event sent);
one fails (worker B, a password vcsim refuses: the run's activities fail). Then every log
line, both workflows' histories (every event's bytes, payloads included), every CloudEvent
the sink received, and the command line and environment of every process are searched for
the vCenter passwords, the Temporal API key and the function's token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.function.conftest import alarm_event, as_binary
from tests.security.conftest import API_KEY, TemporalProxy, tls_env
from tests.temporal.helpers import unique
from tests.temporal.rig import SECRET, client_for, prepare, vcsim_args, worker_env
from vsphere_preemption.devtools.devservers import Vcsim, free_port
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.wire import DEFAULT_NAMESPACE

pytestmark = [pytest.mark.temporal, pytest.mark.vcsim]

TOKEN = "fn-token-5e2a8c31-never-logged"
WRONG_PASSWORD = "Wr0ng-pa55-never-logged-either"
REFUSING_VCENTER = "https://vc-refuses.example.com/sdk"  # the failing run's event source
ALARM = "secrets-alarm"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def secret_dir(directory: Path, username: str, password: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "username").write_text(username)
    (directory / "password").write_text(password + "\n")
    return directory


def proc_text(pid: int) -> str:
    """What `ps e` and /proc show of a process: its command line and its environment."""
    base = Path(f"/proc/{pid}")
    raw = (base / "cmdline").read_bytes() + b"\n" + (base / "environ").read_bytes()
    return raw.replace(b"\0", b"\n").decode(errors="replace")


async def history_text(client: Client, workflow_id: str) -> str:
    """The history as JSON and as every event's protobuf bytes (payloads as sent, not base64)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    return history.to_json() + raw.decode("utf-8", errors="replace")


async def test_no_secret_in_logs_histories_events_or_the_process_list(
    temporal_proxy: TemporalProxy,
    temporal_client: Client,
    vcsim_factory: Callable[..., Vcsim],
    tmp_path: Path,
) -> None:
    sim = vcsim_factory(*vcsim_args())
    vcenter = client_for(sim)
    prepare(Inventory(vcenter), on=2, off=0)
    vcenter.close()
    pki = temporal_proxy.pki
    (tmp_path / "api-key").write_text(API_KEY + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    temporal = tls_env(
        temporal_proxy, temporal_proxy.mtls_key, ca=pki.ca_crt, cert=pki.client_crt,
        key=pki.client_key, api_key_file=tmp_path / "api-key",
    )  # fmt: skip
    common = {**temporal, "DEBUG": "true", "LOG_FORMAT": "json"}
    queue_a, queue_b = unique("secrets-ok"), unique("secrets-refused")
    with EventSink() as sink:
        workers = [
            WorkerProcess(
                worker_env(sim, secret_dir(tmp_path / name, sim.username, password),
                           temporal_proxy.mtls_key, queue, **common),
                tmp_path / f"worker-{name}.log",
            ).start()
            for name, password, queue in (("a", SECRET, queue_a), ("b", WRONG_PASSWORD, queue_b))
        ]  # fmt: skip
        port = free_port()
        function_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "VCENTER"))},
            **common,
            "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
            "VCENTER_TASKQUEUES": json.dumps({sim.url: queue_a, REFUSING_VCENTER: queue_b}),
            "VSPHERE_PREEMPTION_TAG": "preemptible",
            "VSPHERE_ALARM_NAME": ALARM,
            "K_SINK": sink.url,
            "PORT": str(port),
            "FUNCTION_TOKEN_FILE": str(tmp_path / "token"),
        }
        function_log = tmp_path / "function.log"
        with open(function_log, "wb") as out:
            function = subprocess.Popen(
                [sys.executable, "-m", "vsphere_preemption", "function", "--host", "127.0.0.1"],
                env=function_env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes = [function.pid, *(w.proc.pid for w in workers if w.proc)]
        base = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                try:
                    return httpx.get(f"{base}/health/readiness", timeout=5).is_success
                except httpx.HTTPError:
                    return False

            wait_until(ready, "the function to connect through mTLS with the API key")
            auth = {"Authorization": f"Bearer {TOKEN}"}
            ids = {}
            for source in (sim.url, REFUSING_VCENTER):
                headers, body = as_binary(alarm_event(ALARM, "green", "red", source=source))
                # A wrong token first: refused, and logged without either token.
                wrong = {**headers, "Authorization": "Bearer not-the-token"}
                assert httpx.post(base, headers=wrong, content=body, timeout=30).status_code == 401
                reply = httpx.post(base, headers={**headers, **auth}, content=body, timeout=30)
                assert reply.status_code == 200, reply.text
                ids[source] = reply.json()["workflowID"]
            wait_until(lambda: len(sink.events) >= 1, "the VmPreemptedEvent of the good run")

            async def failed() -> bool:
                history = await temporal_client.get_workflow_handle(
                    ids[REFUSING_VCENTER]
                ).fetch_history()
                return any(
                    e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
                    for e in history.events
                )

            deadline = time.monotonic() + 90
            while not await failed():
                assert time.monotonic() < deadline, "the refused run never failed"
                time.sleep(0.3)
            # While everything still runs: what `ps e` would show of each process.
            process_list = {pid: proc_text(pid) for pid in processes}
        finally:
            function.terminate()
            function.wait(30)
            for worker in workers:
                worker.stop()
        events = [
            json.dumps(dict(m.headers)) + m.body.decode(errors="replace") for m in sink.received
        ]
    for workflow_id in ids.values():
        await temporal_client.get_workflow_handle(workflow_id).terminate("test over")

    logs = {
        "function": function_log.read_text(),
        **{f"worker {w.log_file.name}": w.log() for w in workers},
    }
    histories = {wid: await history_text(temporal_client, wid) for wid in ids.values()}
    places = {
        **{f"log of the {name}": text for name, text in logs.items()},
        **{f"history of {wid}": text for wid, text in histories.items()},
        **{f"event {i}": text for i, text in enumerate(events)},
        **{f"/proc/{pid}": text for pid, text in process_list.items()},
    }
    # The search means something: DEBUG was on, both runs happened and failed as meant, and the
    # process list is read (the key's file is named there, not the key).
    lines = [json.loads(line) for text in logs.values() for line in text.splitlines() if line]
    assert any(line.get("level") == "debug" for line in lines)
    assert any(line.get("event") == "preemption triggered" for line in lines)
    assert "refused the REST login of user 'preemptor'" in histories[ids[REFUSING_VCENTER]]
    assert len(process_list) == 3
    assert all(f"TEMPORAL_API_KEY_FILE={tmp_path / 'api-key'}" in t for t in process_list.values())
    assert temporal_proxy.authorizations(temporal_proxy.mtls_key)[-1] == f"Bearer {API_KEY}"
    for secret in (SECRET, WRONG_PASSWORD, API_KEY, TOKEN):
        found = [place for place, text in places.items() if secret in text]
        assert found == [], f"{secret!r} found in {found}"
