"""`preemptctl function`'s settings, read once from the environment with the standard library
only (environment.py): the function's cold start and memory do not pay for pydantic, which
the worker's settings use (models.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from vsphere_preemption.domain.workflow_ids import IdMode
from vsphere_preemption.settings.environment import (
    LogFormat,
    SettingsError,
    TemporalSecurity,
    Variable,
    duration,
    flag,
    name_list,
    nonblank,
    one_of,
    optional_path,
    read,
    read_secret,
    sink_url,
    tag_name,
    task_queues,
    temporal_security,
    whole_number,
)


class TemporalConnect(StrEnum):
    """When the function connects to Temporal (TEMPORAL_CONNECT)."""

    START = "start"  # at start, in the background: ready once connected (the default)
    FIRST_USE = "first-use"  # when an event first needs it: ready at once, ~27 MiB less idle


def _both(first: Callable[[str], Any], then: Callable[[Any], Any]) -> Callable[[str], Any]:
    return lambda text: then(first(text))


# README.md's table, in its order. All required but those with a default; TEMPORAL_TASKQUEUE
# only when VCENTER_TASKQUEUES does not give each vCenter its own (checked in `load`).
VARIABLES = (
    Variable("TEMPORAL_URL", "temporal_url", nonblank, required=True),
    Variable("TEMPORAL_NAMESPACE", "temporal_namespace", nonblank, required=True),
    Variable("TEMPORAL_CONNECT", "temporal_connect", one_of(TemporalConnect)),
    Variable("TEMPORAL_TASKQUEUE", "temporal_taskqueue", nonblank),
    Variable("VCENTER_TASKQUEUES", "vcenter_taskqueues", task_queues),
    Variable("VSPHERE_PREEMPTION_TAG", "preemption_tag", _both(nonblank, tag_name), True),
    Variable("VSPHERE_ALARM_NAME", "alarm_name", nonblank, required=True),
    Variable("VSPHERE_ALARM_NAMES", "more_alarm_names", name_list),
    Variable("WORKFLOW_ID_MODE", "workflow_id_mode", one_of(IdMode)),
    Variable("K_SINK", "k_sink", sink_url),
    Variable("PORT", "port", whole_number(1, 65535)),
    Variable("DEDUP_WINDOW", "dedup_window", duration),
    Variable("DEDUP_MAX_EVENTS", "dedup_max_events", whole_number(0, 1_000_000)),
    Variable("SIGNAL_SPACING", "signal_spacing", duration),
    Variable("BODY_TIMEOUT", "body_timeout", duration),
    Variable("LOG_FORMAT", "log_format", one_of(LogFormat)),
    Variable("DEBUG", "debug", flag),
    Variable("TEMPORAL_TLS", "temporal_tls", lambda text: flag(text) if text.strip() else None),
    Variable("TEMPORAL_TLS_CA", "temporal_tls_ca", optional_path),
    Variable("TEMPORAL_TLS_CERT", "temporal_tls_cert", optional_path),
    Variable("TEMPORAL_TLS_KEY", "temporal_tls_key", optional_path),
    Variable("TEMPORAL_TLS_SERVER_NAME", "temporal_tls_server_name"),
    Variable("TEMPORAL_API_KEY_FILE", "temporal_api_key_file", optional_path),
    Variable("FUNCTION_TOKEN_FILE", "function_token_file", optional_path),
)


@dataclass(frozen=True)
class FunctionSettings:
    """`preemptctl function`: README.md's table."""

    temporal_url: str
    temporal_namespace: str
    preemption_tag: str
    alarm_name: str
    # Empty when VCENTER_TASKQUEUES gives each vCenter its own.
    temporal_taskqueue: str = ""
    # At start (readiness waits for it), or when an event first needs Temporal (the SDK is
    # not even imported until then: function/temporal_link.py).
    temporal_connect: TemporalConnect = TemporalConnect.START
    # Several vCenters: the host of each (domain/vcenters.py: lower case, port unless 443) ->
    # the task queue its worker polls. Empty: one vCenter, TEMPORAL_TASKQUEUE for every event.
    vcenter_taskqueues: Mapping[str, str] = field(default_factory=dict)
    # More alarms served by the same function, besides VSPHERE_ALARM_NAME.
    more_alarm_names: tuple[str, ...] = ()
    # `entity`: one workflow per alarm and alarmed entity (`<alarm>/<moref>`); `alarm`: the
    # Go function's one workflow per alarm.
    workflow_id_mode: IdMode = IdMode.ENTITY
    k_sink: str = ""
    port: int = 8080
    # A redelivered event (the same source and id) acted on within this window, among the
    # last this many, is answered as a duplicate and not signalled again; 0 turns it off.
    dedup_window: timedelta = timedelta(hours=1)
    dedup_max_events: int = 10_000
    # A replica's least time between two signals to one workflow and entity; the raises that
    # come meanwhile ride the next signal, merged (function/signal_lines.py). 0: one signal in
    # flight, the next at once.
    signal_spacing: timedelta = timedelta(milliseconds=100)
    # How long a request's body may take to come once its head has: a client that sends less
    # than its Content-Length, or stalls, is answered 408 and closed then (0: no bound).
    body_timeout: timedelta = timedelta(seconds=10)
    log_format: LogFormat = LogFormat.JSON
    debug: bool = False
    # The TEMPORAL_TLS* files and TEMPORAL_API_KEY_FILE as named; `temporal_security` holds
    # what they say (read at start).
    temporal_tls: bool | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str = ""
    temporal_api_key_file: Path | None = None
    temporal_security: TemporalSecurity = field(default_factory=TemporalSecurity)
    # A file holding the token `POST /` then requires as `Authorization: Bearer <token>`,
    # and its content (never in a repr).
    function_token_file: Path | None = None
    bearer_token: bytes | None = field(default=None, repr=False)

    @property
    def alarm_names(self) -> tuple[str, ...]:
        """Every alarm this function acts on, VSPHERE_ALARM_NAME first."""
        return tuple(dict.fromkeys((self.alarm_name, *self.more_alarm_names)))

    @staticmethod
    def variables() -> tuple[str, ...]:
        """The names of the variables it reads."""
        return tuple(variable.name for variable in VARIABLES)


def load(environ: Mapping[str, str] | None = None) -> FunctionSettings:
    """The function's settings from `environ` (os.environ unless given), or one SettingsError
    naming every bad variable."""
    env = os.environ if environ is None else environ
    values, problems = read(VARIABLES, env)
    security, more = temporal_security(env)
    problems += more
    token = read_secret("FUNCTION_TOKEN_FILE", "the bearer token", env, problems)
    # An empty TEMPORAL_TASKQUEUE is refused by its own reader; a missing one only when no
    # VCENTER_TASKQUEUES names the queues.
    if "TEMPORAL_TASKQUEUE" not in env and not env.get("VCENTER_TASKQUEUES", "").strip():
        problems.append("TEMPORAL_TASKQUEUE is required (or VCENTER_TASKQUEUES)")
    if problems:
        raise SettingsError("invalid function settings: " + "; ".join(problems), tuple(problems))
    return FunctionSettings(
        **values,
        temporal_security=security,
        bearer_token=token.encode() if token is not None else None,
    )
