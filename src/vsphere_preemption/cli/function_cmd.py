"""`preemptctl function`: the CloudEvents function, served by uvicorn on 0.0.0.0:$PORT.

Configured from the environment (README.md's table: TEMPORAL_URL, TEMPORAL_NAMESPACE,
TEMPORAL_TASKQUEUE, VSPHERE_PREEMPTION_TAG, VSPHERE_ALARM_NAME, optional VSPHERE_ALARM_NAMES,
WORKFLOW_ID_MODE, K_SINK, PORT, DEBUG, the TEMPORAL_TLS* variables and TEMPORAL_API_KEY_FILE,
FUNCTION_TOKEN_FILE).
The server listens before anything heavy is imported: liveness answers at once while the
settings are read and the app is built in a thread (function/boot.py), and the Temporal SDK
is imported and connected after that (function/temporal_link.py); readiness follows it.
Settings errors end the process with status 2 and one line on stderr, as before it listened
when PORT itself is wrong, else as soon as they are read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vsphere_preemption.function.app import FunctionApp
    from vsphere_preemption.settings import FunctionSettings


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
    import uvicorn

    from vsphere_preemption.function.boot import Booting
    from vsphere_preemption.function.http_protocol import CoalescingHttpToolsProtocol

    port = args.port if args.port is not None else _port(os.environ)
    if port is None:  # PORT is not a plain port number: the settings say what is wrong
        try:
            port = _load_settings().port
        except _SettingsFailed as exc:
            print(f"preemptctl function: {exc}", file=sys.stderr)
            return 2
    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def failed(exc: BaseException) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    config = uvicorn.Config(
        Booting(lambda: _build(args.host, port), on_failure=failed),
        host=args.host,
        port=port,
        # The compiled HTTP parser and event loop (httptools, uvloop): about twice the
        # events/s of the pure-Python ones; each reply written in one call (BENCHMARKS.md).
        http=CoalescingHttpToolsProtocol,
        loop="uvloop",
        lifespan="on",
        ws="none",  # no websocket library probing at start
        access_log=False,  # our JSON logs carry each event; per-request lines would not be JSON
        proxy_headers=False,  # client addresses are not used: skip X-Forwarded-* handling
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.run()
    if failures:
        failure = failures[0]
        if isinstance(failure, _SettingsFailed):
            print(f"preemptctl function: {failure}", file=sys.stderr)
            return 2
        why = f"{type(failure).__name__}: {failure}"
        print(f"preemptctl function: cannot start: {why}", file=sys.stderr)
        return 1
    return 0


class _SettingsFailed(Exception):
    """The settings' error, its message naming every bad variable."""


def _port(environ: Mapping[str, str]) -> int | None:
    """PORT when it is a plain port number (as the settings would read it), else None."""
    text = environ.get("PORT")
    if text is None:
        return 8080
    return int(text) if text.isdigit() and 1 <= int(text) <= 65535 else None


def _load_settings() -> FunctionSettings:
    from vsphere_preemption.settings import FunctionSettings, SettingsError, load

    try:
        return load(FunctionSettings)
    except SettingsError as exc:
        raise _SettingsFailed(str(exc)) from None


def _build(host: str, port: int) -> FunctionApp:
    """The function's app: settings, logs, tracing and the app (in Booting's thread)."""
    settings = _load_settings()
    from vsphere_preemption import logs, tracing

    logs.configure(debug=settings.debug, json=settings.log_format == "json", program="function")
    from vsphere_preemption.function.app import create_app

    # OpenTelemetry is imported only when the OTEL_* variables turn tracing on.
    tracing_on = tracing.enabled()
    if tracing_on:
        tracing.install("vsphere-preemption-function")
    log = logs.get_logger("function")
    log.info(
        "function starting",
        host=host,
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
    return create_app(settings, log=log, tracing=tracing_on)
