"""Builds and runs the Temporal worker: PreemptVMsWorkflow and its vSphere activities.

Wiring only: settings in, one vCenter client (one session for every activity), one
HTTP client, one thread pool for the blocking activities, the Temporal worker on
TEMPORAL_TASKQUEUE. `run` returns once `stop` is set (SIGTERM/SIGINT in
`preemptctl worker`): the worker stops polling, gives running activities
`graceful_shutdown` to finish (then cancels them; Temporal retries them elsewhere,
and they are safe to run twice), and the vCenter session is logged out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta

import httpx
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from vsphere_preemption import logs
from vsphere_preemption.settings import WorkerSettings
from vsphere_preemption.temporal import run_metrics
from vsphere_preemption.temporal.activities import PreemptionActivities
from vsphere_preemption.temporal.client import (
    PreemptionClient,
    connect_failure_reason,
    security_options,
)
from vsphere_preemption.temporal.contracts import PreemptionPolicy
from vsphere_preemption.temporal.health import HealthServer
from vsphere_preemption.temporal.log_context import LogContextInterceptor
from vsphere_preemption.temporal.pause_registry import PauseRegistryWorkflow
from vsphere_preemption.temporal.prometheus import DRAIN_EVERY, MetricsServer, new_buffer
from vsphere_preemption.temporal.run_metrics import VCenterRequests
from vsphere_preemption.temporal.workflow import PreemptVMsWorkflow
from vsphere_preemption.tracing import VCenterSpans, temporal_interceptors
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.vsphere.soap import RequestObserver
from vsphere_preemption.wire import preempted_event_source

# Activities at once on this worker; each may run up to `max_concurrency` vCenter
# calls of its own. The thread pool matches, so no activity waits for a thread.
ACTIVITY_SLOTS = 8
GRACEFUL_SHUTDOWN = timedelta(seconds=20)  # inside Kubernetes' default 30 s
HTTP_TIMEOUT = 10.0
# A workflow task goes first to the sticky queue of the worker that ran the last one; if that
# worker was killed, the task waits there this long before any worker may take it (SDK
# default 10 s). 3 s: a dead worker delays a run little; a live but busy one rarely takes
# longer to start a task, and if it does, another worker replays the (short) history.
STICKY_SCHEDULE_TO_START = timedelta(seconds=3)
# Heartbeats reach Temporal at most this often (the SDK's default is 80 % of the heartbeat
# timeout, 2.4 s of its 3 s): every beat of the activities' 1 s ticker is sent, so one late
# beat does not time the activity out.
HEARTBEAT_THROTTLE = timedelta(seconds=1)

# A vCenter that refused a login is asked again by the readiness check no sooner than this:
# probes every few seconds must not turn into a stream of failed logins (and a lockout).
VCENTER_RETRY = 30.0

log = logs.get_logger(__name__)


class StartError(RuntimeError):
    """The worker could not start (Temporal unreachable, namespace unknown)."""


def core_logging() -> LoggingConfig:
    """The SDK core (Rust) writes its own text lines to stderr; forward them to our logs."""
    forward = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    return LoggingConfig(TelemetryFilter(core_level="WARN", other_level="ERROR"), forward)


def policy_from(settings: WorkerSettings) -> PreemptionPolicy:
    return PreemptionPolicy(
        cooldown_seconds=settings.cooldown.total_seconds(),
        max_vms=settings.max_vms,
        soft_shutdown_grace_seconds=settings.soft_shutdown_grace.total_seconds(),
        max_concurrency=settings.max_concurrency,
        selection=settings.policy.to_wire(),
    )


def vcenter_config(settings: WorkerSettings) -> VCenterConfig:
    """Credentials from the secret files only; raises vsphere.errors.ConfigError."""
    return VCenterConfig.from_secret_dir(
        settings.vcenter_url,
        settings.vcenter_secret_path,
        insecure=settings.vcenter_insecure,
        ca_bundle=settings.vcenter_ca_bundle,
    )


def build_worker(
    client: Client,
    task_queue: str,
    activities: PreemptionActivities,
    executor: Executor,
    *,
    graceful_shutdown: timedelta = GRACEFUL_SHUTDOWN,
    tracing: bool = False,
) -> Worker:
    runner = SandboxedWorkflowRunner()
    if tracing:
        # The tracing interceptor's workflow half uses OpenTelemetry's own module state.
        restrictions = SandboxRestrictions.default.with_passthrough_modules("opentelemetry")
        runner = SandboxedWorkflowRunner(restrictions=restrictions)
    return Worker(
        client,
        task_queue=task_queue,
        # The pause registry runs where the preemption workflows run: a worker polling the
        # task queue serves both, and the registry's announcements use its activities.
        workflows=[PreemptVMsWorkflow, PauseRegistryWorkflow],
        activities=activities.all(),
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_SLOTS,
        # The alarm event's id, the workflow and run ids on every activity's log lines.
        interceptors=[LogContextInterceptor()],
        graceful_shutdown_timeout=graceful_shutdown,
        workflow_runner=runner,
        sticky_queue_schedule_to_start_timeout=STICKY_SCHEDULE_TO_START,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )


async def run(
    settings: WorkerSettings,
    stop: asyncio.Event,
    *,
    vcenter: VSphereClient | None = None,
    graceful_shutdown: timedelta = GRACEFUL_SHUTDOWN,
    tracing: bool = False,
) -> None:
    """Run until `stop` is set.

    Raises vsphere.errors.ConfigError (vCenter settings) or StartError (Temporal
    unreachable, namespace unknown, the worker stopped by itself). A `vcenter`
    handed in stays open (tests read its counters). With `tracing` (the tracer provider
    installed: tracing.install), the workflow, its activities and their vCenter requests are
    spans of the trace the signal brought.
    """
    owned = vcenter is None
    vsphere = VSphereClient(vcenter_config(settings)) if vcenter is None else vcenter
    health = _Health(vsphere)
    server: HealthServer | None = None
    if settings.health_address:
        # First: liveness answers while the worker connects, readiness says what it waits for.
        server = HealthServer(
            settings.health_address, {"temporal": health.temporal, "vcenter": health.vcenter}
        )
        try:
            await server.start()
        except OSError as exc:
            raise StartError(f"cannot serve health on {settings.health_address}: {exc}") from None
        log.info("health served", address=settings.health_address, port=server.port)
    runtime: Runtime | None = None
    observers: list[RequestObserver] = []
    metrics: MetricsServer | None = None
    draining: asyncio.Task[None] | None = None
    if settings.metrics_address:
        # One runtime of our own, recording into the buffer the metrics endpoint drains.
        buffer = new_buffer()
        telemetry = TelemetryConfig(
            logging=core_logging(), metrics=buffer, attach_service_name=False
        )
        runtime = Runtime(telemetry=telemetry)
        metrics = MetricsServer(settings.metrics_address, buffer, run_metrics.EXPORTED)
        draining = asyncio.create_task(_drain(metrics))
        observers.append(VCenterRequests(runtime.metric_meter))
        log.info("metrics served", address=settings.metrics_address, port=metrics.port)
    if tracing:
        observers.append(VCenterSpans())
    vsphere.observe_requests(_each(observers) if observers else None)
    try:
        client = await _connect(settings, runtime, tracing)
        health.client = client
        health.vcenter_ok = await _warm_up(vsphere)
        with (
            ThreadPoolExecutor(ACTIVITY_SLOTS, thread_name_prefix="activity") as executor,
            sink_http_client(settings) as http,
        ):
            activities = PreemptionActivities(
                vsphere,
                policy_from(settings),
                preempted_event_source(settings.temporal_url, settings.temporal_namespace),
                http,
                pauses=PreemptionClient(client, task_queue=settings.temporal_taskqueue).read_pauses,
                loop=asyncio.get_running_loop(),
            )
            worker = build_worker(
                client,
                settings.temporal_taskqueue,
                activities,
                executor,
                graceful_shutdown=graceful_shutdown,
                tracing=tracing,
            )
            health.worker = worker
            await _run_until(worker, stop, settings, graceful_shutdown)
        log.info("worker stopped")
    finally:
        if owned:
            vsphere.close()  # logs the vCenter session out
        else:
            vsphere.observe_requests(None)
        if draining is not None:
            draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await draining
        if metrics is not None:
            metrics.close()
        if server is not None:
            await server.close()


class _Health:
    """The readiness checks, over what `run` has built so far (None: not yet)."""

    def __init__(self, vsphere: VSphereClient) -> None:
        self.vsphere = vsphere
        self.client: Client | None = None
        self.worker: Worker | None = None
        self.vcenter_ok = False
        self._vcenter_failed_at: float | None = None
        self._vcenter_error = ""

    async def temporal(self) -> str | None:
        if self.client is None or self.worker is None:
            return "starting: not yet polling"
        if not self.worker.is_running or self.worker.is_shutdown:
            return "not polling (stopping)"
        if not await self.client.service_client.check_health(timeout=timedelta(seconds=2)):
            return "Temporal's frontend reports its workflow service not serving"
        return None

    async def vcenter(self) -> str | None:
        """A session logged in (at start, by an activity, or here). Its later expiry is not
        seen here: the activities log in again themselves when vCenter drops a session."""
        if self.vcenter_ok:
            return None
        loop = asyncio.get_running_loop()
        if self._vcenter_failed_at is not None and (
            loop.time() - self._vcenter_failed_at < VCENTER_RETRY
        ):
            return self._vcenter_error
        try:
            await asyncio.to_thread(self.vsphere.connect)
        except VSphereError as exc:
            self._vcenter_failed_at = loop.time()
            self._vcenter_error = f"no session: {exc}"
            return self._vcenter_error
        self.vcenter_ok = True
        return None


def sink_http_client(settings: WorkerSettings) -> httpx.Client:
    """The client that sends events to the replyTo sinks: TLS verified, against the usual
    public CAs plus SINK_CA_BUNDLE's."""
    verify = httpx.create_ssl_context()
    if settings.sink_ca_bundle is not None:
        try:
            verify.load_verify_locations(cafile=str(settings.sink_ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise StartError(
                f"cannot load the sink CA bundle {settings.sink_ca_bundle}: {exc}"
            ) from None
    return httpx.Client(timeout=HTTP_TIMEOUT, verify=verify)


def _each(observers: list[RequestObserver]) -> RequestObserver:
    def observe(api: str, outcome: str, seconds: float | None) -> None:
        for observer in observers:
            observer(api, outcome, seconds)

    return observe


async def _drain(metrics: MetricsServer) -> None:
    """Empty the SDK's metric buffer between scrapes, so that it never fills."""
    while True:
        await asyncio.sleep(DRAIN_EVERY)
        metrics.collector.drain()


async def _warm_up(vsphere: VSphereClient) -> bool:
    """Log in to vCenter at start: the first alarm should not wait for the logins, and a
    wrong password or certificate shows in the log at once. Not fatal: vCenter may be
    back by the first run, and the activities log in again (and retry) themselves."""
    try:
        await asyncio.to_thread(vsphere.connect)
    except VSphereError as exc:
        log.warning("vcenter not reachable at start; will log in on the first run", error=str(exc))
        return False
    log.info("vcenter session open", vcenter=vsphere.config.address)
    return True


async def _connect(settings: WorkerSettings, runtime: Runtime | None, tracing: bool) -> Client:
    """Connect, and check the namespace now: a typo should stop us here, not later."""
    where = f"Temporal at {settings.temporal_url}"
    try:
        client = await Client.connect(
            settings.temporal_url,
            namespace=settings.temporal_namespace,
            runtime=runtime,
            # Tracing: on the client, so the workers on it trace too.
            interceptors=temporal_interceptors() if tracing else [],
            **security_options(settings.temporal_security),
        )
    except RuntimeError as exc:
        raise StartError(f"cannot connect to {where}: {connect_failure_reason(exc)}") from None
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace)
        )
    except RPCError as exc:
        raise StartError(
            f"namespace {settings.temporal_namespace!r} on {where}: {exc.message}"
        ) from None
    return client


async def _run_until(
    worker: Worker, stop: asyncio.Event, settings: WorkerSettings, graceful: timedelta
) -> None:
    running = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    log.info(
        "worker started",
        temporal=settings.temporal_url,
        temporalTls=settings.temporal_security.tls,
        namespace=settings.temporal_namespace,
        taskQueue=settings.temporal_taskqueue,
        vcenter=settings.vcenter_url,
    )
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        stopping.cancel()
        error = running.exception()
        raise StartError(f"the worker stopped by itself: {error}") from None
    log.info("worker stopping", gracefulShutdownSeconds=graceful.total_seconds())
    await worker.shutdown()  # stop polling; running activities get `graceful` to finish
    await running
