"""`preemptctl function`: the CloudEvents function, served by uvicorn on 0.0.0.0:$PORT.

Configured from the environment (README.md's table: TEMPORAL_URL, TEMPORAL_NAMESPACE,
TEMPORAL_TASKQUEUE, VSPHERE_PREEMPTION_TAG, VSPHERE_ALARM_NAME, optional VSPHERE_ALARM_NAMES,
WORKFLOW_ID_MODE, K_SINK, PORT, DEBUG, the TEMPORAL_TLS* variables and TEMPORAL_API_KEY_FILE,
FUNCTION_TOKEN_FILE).
Everything heavy is imported inside `run`, and the Temporal SDK only once serving (see
function/temporal_link.py): cold start is process start to /health/readiness.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "function",
        help="run the CloudEvents function (alarm events in, Temporal signal-with-start out)",
        description="Serve the preemption function. Settings come from the environment; "
        "see the README.",
        epilog="Security (README.md, Security): FUNCTION_TOKEN_FILE (a file holding the token "
        "POST / then requires as 'Authorization: Bearer <token>'); Temporal over TLS: "
        "TEMPORAL_TLS, TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY, "
        "TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY_FILE.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0)")  # noqa: S104
    parser.add_argument("--port", type=int, default=None, help="port to listen on ($PORT, 8080)")


def run(args: argparse.Namespace) -> int:
    from vsphere_preemption import logs
    from vsphere_preemption.settings import FunctionSettings, SettingsError, load

    try:
        settings = load(FunctionSettings)
    except SettingsError as exc:
        print(f"preemptctl function: {exc}", file=sys.stderr)
        return 2
    logs.configure(debug=settings.debug, json=settings.log_format == "json", program="function")

    import uvicorn

    from vsphere_preemption import tracing
    from vsphere_preemption.function.app import create_app

    # OpenTelemetry is imported only when the OTEL_* variables turn tracing on.
    tracing_on = tracing.enabled()
    if tracing_on:
        tracing.install("vsphere-preemption-function")

    port = args.port if args.port is not None else settings.port
    log = logs.get_logger("function")
    log.info(
        "function starting",
        host=args.host,
        port=port,
        alarmNames=list(settings.alarm_names),
        workflowIdMode=settings.workflow_id_mode.value,
        temporal=settings.temporal_url,
        namespace=settings.temporal_namespace,
        temporalTls=settings.temporal_security.tls,
        queue=settings.temporal_taskqueue,
        tag=settings.preemption_tag,
        sink=settings.k_sink,
    )
    config = uvicorn.Config(
        create_app(settings, log=log, tracing=tracing_on),
        host=args.host,
        port=port,
        lifespan="on",
        ws="none",  # no websocket library probing at start
        access_log=False,  # our JSON logs carry each event; per-request lines would not be JSON
        proxy_headers=False,  # client addresses are not used: skip X-Forwarded-* handling
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
    return 0
