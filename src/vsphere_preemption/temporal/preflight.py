"""Read-only probes of Temporal for `preemptctl check`, and the opt-in test event to the sink.

Temporal: connect as the worker and the function do (TEMPORAL_TLS*, the API key), describe the
namespace, and list the pollers of the task queue, workflow and activity alike (a preemption
worker polls both). Each step's failure is a one-line reason; nothing is started or signalled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from vsphere_preemption.domain.preflight import Poller
from vsphere_preemption.domain.text import one_line
from vsphere_preemption.temporal.client import RPC_TIMEOUT, PreemptionClient, TemporalError

if TYPE_CHECKING:
    import httpx
    from temporalio.runtime import Runtime

    from vsphere_preemption.settings import TemporalSecurity

# The type of the test event: a consumer that routes on the type can drop it by name.
TEST_EVENT_TYPE = "com.vmware.vsphere.preemption.check.v0"


@dataclass(frozen=True)
class TemporalFacts:
    """How far the probe got: an error ends it (the later steps are then not known)."""

    connect_error: str | None = None
    namespace_error: str | None = None
    pollers: tuple[Poller, ...] | None = None
    pollers_error: str | None = None
    details: dict[str, str] = field(default_factory=dict)


async def probe_temporal(
    target: str,
    *,
    namespace: str,
    task_queue: str,
    security: TemporalSecurity | None,
    runtime: Runtime | None = None,
) -> TemporalFacts:
    from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        DescribeTaskQueueRequest,
    )

    try:
        client = await PreemptionClient.connect(
            target, namespace=namespace, task_queue=task_queue, runtime=runtime, security=security
        )
    except TemporalError as exc:
        return TemporalFacts(connect_error=str(exc))
    service = client.client.workflow_service
    try:
        await service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=RPC_TIMEOUT
        )
    except Exception as exc:  # noqa: BLE001 - any refusal is the answer, in one line
        return TemporalFacts(namespace_error=_rpc_text(exc))
    pollers: list[Poller] = []
    kinds = (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    )
    for kind, queue_type in kinds:
        try:
            answer = await service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(
                        name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL
                    ),
                    task_queue_type=queue_type,
                ),
                timeout=RPC_TIMEOUT,
            )
        except Exception as exc:  # noqa: BLE001 - any refusal is the answer, in one line
            return TemporalFacts(pollers_error=_rpc_text(exc))
        for poller in answer.pollers:
            seen = (
                poller.last_access_time.ToDatetime(UTC).isoformat()
                if poller.HasField("last_access_time")
                else ""
            )
            pollers.append(Poller(identity=poller.identity, kind=kind, last_access=seen))
    return TemporalFacts(pollers=tuple(pollers))


def _rpc_text(exc: BaseException) -> str:
    status = getattr(getattr(exc, "status", None), "name", None)
    message = getattr(exc, "message", None) or exc
    return f"{status}: {one_line(message)}" if status else one_line(message)


def safe_url(url: str) -> str:
    """The URL without credentials or query, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def send_test_event(url: str, http: httpx.Client, source: str) -> str:
    """POST one CloudEvent in binary mode, as the worker sends its events; the answer's status
    line, or ValueError saying why it was not accepted."""
    import httpx
    from cloudevents.core.bindings.http import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    where = safe_url(url)
    event = CloudEvent(
        attributes={
            "id": str(uuid.uuid4()),
            "source": source,
            "type": TEST_EVENT_TYPE,
            "datacontenttype": "application/json",
            "time": datetime.now(UTC),
        },
        data=b'{"check":"preemptctl check --send-test-event"}',
    )
    message = to_binary(event, JSONFormat())
    try:
        response = http.post(url, headers=message.headers, content=message.body)
    except httpx.HTTPError as exc:
        detail = str(exc).replace(url, where)
        raise ValueError(
            f"sending a test event to {where} failed: {type(exc).__name__}: {detail}"
        ) from None
    if not response.is_success:
        raise ValueError(f"{where} answered HTTP {response.status_code} to a test event")
    return f"{where} answered HTTP {response.status_code}"
