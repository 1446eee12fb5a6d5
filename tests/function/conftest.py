"""Helpers for the function's tests: settings, CloudEvent requests, and the function served
by uvicorn on a loopback socket (in the test's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import fixture_json, fixture_text
from vsphere_preemption.domain.events import OLD_ROUTER_TYPE, TANZU_SOURCES_TYPE
from vsphere_preemption.function.app import FunctionApp, create_app
from vsphere_preemption.settings import FunctionSettings, load
from vsphere_preemption.wire import DEFAULT_NAMESPACE

SINK = "http://default-broker-ingress.vmware-functions.svc.cluster.local"
UNREACHABLE_TEMPORAL = "127.0.0.1:1"  # nothing listens on port 1

Request = tuple[dict[str, str], bytes]


# The cluster alarm_event's alarms fire on, unless told otherwise, and its vCenter.
CLUSTER = "domain-c7"
VCENTER = "https://vcsa.mydomain.com/sdk"


def on(alarm: str, entity: str = CLUSTER) -> str:
    """The workflow ID the function addresses for `alarm` on `entity` (entity mode)."""
    return f"{alarm}/{entity}"


def function_settings(
    alarm: str,
    queue: str = "vsphere-preemption",
    temporal: str = UNREACHABLE_TEMPORAL,
    **extra: str,
) -> FunctionSettings:
    env = {
        "TEMPORAL_URL": temporal,
        "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "TEMPORAL_TASKQUEUE": queue,
        "VSPHERE_PREEMPTION_TAG": "preemptible",
        "VSPHERE_ALARM_NAME": alarm,
        **extra,
    }
    return load(FunctionSettings, env)


def reference_event() -> dict[str, Any]:
    """The CloudEvent inside the reference signal (events/02_*), old router shape."""
    event: dict[str, Any] = fixture_json(
        "02_old-router_PreemptVMsChan-signal-WorkflowRequest.json"
    )["event"]
    return event


def reference_signal_bytes() -> bytes:
    return fixture_text("02_old-router_PreemptVMsChan-signal-WorkflowRequest.json").strip().encode()


def as_binary(event: dict[str, Any], *, pretty: bool = True) -> Request:
    """A structured-JSON event as a Knative broker delivers it: binary mode."""
    headers = {"content-type": event.get("datacontenttype", "application/json")}
    for name, value in event.items():
        if name not in {"data", "datacontenttype"}:
            headers[f"ce-{name}"] = str(value)
    data = event["data"]
    if isinstance(data, str):
        body = data.encode()
    else:
        body = json.dumps(data, indent=2 if pretty else None).encode()
    return headers, body


def as_structured(event: dict[str, Any]) -> Request:
    return {"content-type": "application/cloudevents+json"}, json.dumps(event).encode()


def alarm_event(
    alarm: str,
    frm: str,
    to: str,
    *,
    event_id: str | None = None,
    xml: bool = False,
    old_router: bool = False,
    entity: str = CLUSTER,
    source: str = VCENTER,
) -> dict[str, Any]:
    """A structured-JSON AlarmStatusChangedEvent for `alarm` on cluster `entity` (a moref
    value) of the vCenter `source` (its SDK URL, as VEBA names it), JSON or XML data, either
    shape."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": OLD_ROUTER_TYPE if old_router else TANZU_SOURCES_TYPE,
    }
    if old_router:
        attributes["subject"] = "AlarmStatusChangedEvent"
    if xml:
        text = fixture_text("07_new-tanzu-sources_AlarmStatusChangedEvent_data.xml")
        text = text.replace("cluster-cpu-above-80", alarm)
        text = text.replace("<from>green</from><to>red</to>", f"<from>{frm}</from><to>{to}</to>")
        text = text.replace(
            '<entity type="ClusterComputeResource">domain-c7</entity></entity>',
            f'<entity type="ClusterComputeResource">{entity}</entity></entity>',
        )
        data: Any = text
        attributes["datacontenttype"] = "application/xml"
    else:
        data = copy.deepcopy(fixture_json("05_AlarmStatusChangedEvent_data_green-to-yellow.json"))
        data["Alarm"]["Name"] = alarm
        data["From"], data["To"] = frm, to
        data["Entity"] = {
            "Name": f"cluster {entity}",
            "Entity": {"Type": "ClusterComputeResource", "Value": entity},
        }
        attributes["datacontenttype"] = "application/json"
    return {
        **attributes,
        "time": "2024-05-14T09:31:27.123999Z",
        "data": data,
        "eventclass": "event",
        "vsphereapiversion": "8.0.2.0",
    }


def post(client: httpx.AsyncClient, request: Request) -> Awaitable[httpx.Response]:
    headers, body = request
    return client.post("/", headers=headers, content=body)


class _QuietServer(uvicorn.Server):
    # The test process owns its signal handlers; uvicorn must not replace them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningFunction:
    url: str
    app: FunctionApp
    server: uvicorn.Server
    task: asyncio.Task[None]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)

    async def wait_ready(self, timeout: float = 30) -> None:
        async with self.client() as client:
            for _ in range(int(timeout / 0.05)):
                if (await client.get("/health/readiness")).status_code == 200:
                    return
                await asyncio.sleep(0.05)
        raise AssertionError(f"function at {self.url} not ready: {self.app.state.link.last_error}")


Serve = Callable[[FunctionSettings], Awaitable[RunningFunction]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve functions with uvicorn on loopback sockets; all are stopped after the test."""
    running: list[RunningFunction] = []

    async def start(settings: FunctionSettings) -> RunningFunction:
        app = create_app(settings)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="on", ws="none", access_log=False, log_config=None, log_level="error"
        )
        server = _QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        fn = RunningFunction(f"http://127.0.0.1:{port}", app, server, task)
        running.append(fn)
        return fn

    yield start
    for fn in running:
        fn.server.should_exit = True
    for fn in running:
        await fn.task


@pytest.fixture
async def cleanup(temporal_client: Client) -> AsyncIterator[list[str]]:
    """Workflow IDs to terminate after the test, so no run outlives it."""
    ids: list[str] = []
    yield ids
    for workflow_id in ids:
        with contextlib.suppress(RPCError):
            await temporal_client.get_workflow_handle(workflow_id).terminate("test done")
