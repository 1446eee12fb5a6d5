"""`preemptctl worker`: the Temporal worker, configured only by its environment."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DESCRIPTION = """\
Run the Temporal worker: PreemptVMsWorkflow and its vSphere activities.

Environment: TEMPORAL_URL (required), TEMPORAL_NAMESPACE and TEMPORAL_TASKQUEUE
(default vsphere-preemption), VCENTER_URL (required), VCENTER_INSECURE (default
false), VCENTER_SECRET_PATH (default /var/bindings/vsphere; files `username` and
`password`), VCENTER_CA_BUNDLE, PREEMPTION_COOLDOWN (default 1m),
PREEMPTION_POLICY_FILE (YAML: scope, maxVMs, priority, protection, groups,
targets, dryRun; see the README), PREEMPTION_MAX_VMS (default 10) and
PREEMPTION_SCOPE (entity or vcenter, default entity), both over the file,
PREEMPTION_SOFT_SHUTDOWN_GRACE (default 2m), PREEMPTION_MAX_CONCURRENCY
(default 5), METRICS_ADDRESS (host:port of the Prometheus endpoint; default
none), HEALTH_ADDRESS (host:port of /health/liveness and /health/readiness;
default none), LOG_FORMAT (json or console; default json), DEBUG, SINK_CA_BUNDLE (CAs to
trust for https:// replyTo sinks); Temporal over TLS: TEMPORAL_TLS, TEMPORAL_TLS_CA,
TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY_FILE
(see the README, Security); tracing by the standard OTEL_* variables (off unless an
exporter or endpoint is named).
Stops gracefully on SIGTERM or SIGINT.
"""


def add_parser(subparsers: Any) -> None:
    subparsers.add_parser(
        "worker",
        help="run the Temporal worker (PreemptVMsWorkflow, vSphere activities)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(args: argparse.Namespace) -> int:
    from vsphere_preemption.settings import SettingsError, WorkerSettings, load

    try:
        settings = load(WorkerSettings)
    except SettingsError as exc:
        print(f"preemptctl worker: {exc}", file=sys.stderr)
        return 2

    import asyncio
    import signal

    from vsphere_preemption import logs
    from vsphere_preemption.vsphere.errors import ConfigError
    from vsphere_preemption.worker import StartError
    from vsphere_preemption.worker import run as run_worker

    logs.configure(debug=settings.debug, json=settings.log_format == "json", program="worker")
    # The SDK's loggers add workflow/activity info as an `extra` field (a JSON field in
    # our logs); the same info appended to every message would only repeat it.

    from temporalio import activity, workflow
    from temporalio.runtime import Runtime, TelemetryConfig

    from vsphere_preemption.worker import core_logging

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    # The SDK core's own log lines go to our logs (a worker with METRICS_ADDRESS makes a
    # runtime of its own, with the same forwarding).
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core_logging())))
    from vsphere_preemption import tracing

    tracing_on = tracing.enabled()
    if tracing_on:
        tracing.install("vsphere-preemption-worker")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop, tracing=tracing_on)

    code = 0
    try:
        asyncio.run(main())
    except ConfigError as exc:
        print(f"preemptctl worker: {exc}", file=sys.stderr)
        code = 2
    except StartError as exc:
        print(f"preemptctl worker: {exc}", file=sys.stderr)
        code = 1
    return _exit(code)


def _exit(code: int) -> int:
    """End the process without interpreter finalization, when we are the program.

    Everything is stopped by now (worker, thread pool, vCenter sessions). What is
    left are the Temporal SDK's Rust threads, which can abort Python's finalization
    (`PyGILState_Release` fatal error, SIGABRT; temporalio/sdk-python#300) and turn
    a clean exit code into 134. Called from another thread (a test running the CLI
    in-process), it just returns the code.

    Not `temporal.collected_runtime.run_collected`, the short commands' answer to the same
    abort: that collects a runtime of its own once the command returns, while the worker's
    runtime is the process default (it forwards the core's logs) and its threads run
    until the process ends, so nothing short of leaving without finalization is sure.
    """
    import os
    import threading

    if threading.current_thread() is not threading.main_thread():
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
