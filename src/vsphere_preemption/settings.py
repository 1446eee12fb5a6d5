"""One typed settings object per program, read once from the environment.

Plain pydantic models validated from a mapping (`os.environ` in production,
a dict in tests). pydantic-settings would do the same, at three times the
import cost, which the function's cold start cannot afford.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SkipValidation,
    TypeAdapter,
    ValidationError,
)

from vsphere_preemption.domain.durations import parse_seconds
from vsphere_preemption.domain.policy import Policy, PolicyError, Scope, policy_from_mapping
from vsphere_preemption.domain.vcenters import vcenter_host
from vsphere_preemption.domain.workflow_ids import IdMode
from vsphere_preemption.wire import (
    DEFAULT_NAMESPACE,
    DEFAULT_TASK_QUEUE,
    MAX_TAG_LENGTH,
    reply_to_problem,
    tag_problem,
)


class SettingsError(ValueError):
    """Settings that cannot start a program; the message names every bad variable."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def parse_duration(value: Any) -> timedelta:
    """Seconds as a number, or Go's duration spelling (`90s`, `2m`, `1m30s`, `500ms`)."""
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=parse_seconds(value))


def _bool(value: Any) -> Any:
    # The Go programs' DEBUG convention is the strings "true"/"false"; accept the usual others.
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off", ""}:
            return False
    return value


def _nonblank(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value.strip() if isinstance(value, str) else value


def _name_list(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not a JSON array of names: {exc.msg}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("must be a JSON array of strings")
    else:
        names = text.split(",")
    names = [n.strip() for n in names if n.strip()]
    return tuple(names)


def _task_queues(value: Any) -> Any:
    """VCENTER_TASKQUEUES: a JSON object {vCenter source URL or host: task queue}, keyed here
    by the host as domain/vcenters.py reads it; blank is unset (an empty mapping)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not a JSON object of vCenter: task queue: {exc.msg}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError("must be a JSON object naming at least one vCenter and its task queue")
    queues: dict[str, str] = {}
    for key, queue in raw.items():
        host = vcenter_host(key)
        if not host:
            raise ValueError(f"key {key!r} names no vCenter host (a URL or a host is expected)")
        if not isinstance(queue, str) or not queue.strip():
            raise ValueError(f"the task queue of {key!r} must be a non-empty string")
        if queues.get(host, queue.strip()) != queue.strip():
            raise ValueError(f"vCenter {host} is given two task queues")
        queues[host] = queue.strip()
    return queues


Flag = Annotated[bool, BeforeValidator(_bool)]


def parse_flag(name: str, value: str) -> bool:
    """Variable `name` read as the programs' settings read a boolean, or a SettingsError."""
    try:
        return TypeAdapter(Flag).validate_python(value)
    except ValidationError:
        raise SettingsError(f"{name} must be true or false") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Required = Annotated[str, BeforeValidator(_nonblank)]


def _tag(value: str) -> str:
    # The workflow drops a signal whose tag no vSphere tag can have (wire.tag_problem).
    if tag_problem(value) is not None:
        raise ValueError(f"must be a vSphere tag name of at most {MAX_TAG_LENGTH} characters")
    return value


def _sink(value: str) -> str:
    # The signal's replyTo: the workflow drops a signal whose replyTo is not such a URL.
    if reply_to_problem(value) is not None:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)

    @classmethod
    def _derive(
        cls, env: Mapping[str, str], settings: _Settings | None
    ) -> tuple[dict[str, Any], list[str]]:
        """Fields built from more than one variable or from a file (they have no alias): their
        values, and the problems found. `settings` is None when the variables were invalid;
        the problems are still collected, so that one message names them all."""
        return {}, []


def _address(value: str) -> str:
    # METRICS_ADDRESS, HEALTH_ADDRESS: empty (off) or host:port.
    text = value.strip()
    if text:
        _, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port (0.0.0.0:9090), or empty for none")
    return text


def _pem_file(value: Path | None) -> Path | None:
    # Checked at start: a bundle that cannot be read would otherwise surface as every
    # event send failing, much later.
    if value is None:
        return None
    try:
        data = value.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {value} ({exc.strerror or exc})") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"{value} holds no PEM certificate")
    return value


class LogFormat(StrEnum):
    JSON = "json"  # one JSON object a line: what a log pipeline reads (the image's)
    CONSOLE = "console"  # key=value text, for a person at a terminal


@dataclass(frozen=True)
class TemporalSecurity:
    """How to reach Temporal safely: TLS (with the files' contents), mTLS, an API key.

    Built by TemporalAccess from its variables; the key and the private key never show in
    a repr (so never in a log line or a traceback's locals)."""

    tls: bool = False
    ca: bytes | None = None  # PEM: trust these CAs only, instead of the system's
    cert: bytes | None = None  # PEM: the client certificate (mTLS), with `key`
    key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    api_key: str | None = field(default=None, repr=False)


# What each TemporalSecurity PEM file is, in messages.
_PEM_FILES = {
    "TEMPORAL_TLS_CA": "the CA bundle",
    "TEMPORAL_TLS_CERT": "the client certificate",
    "TEMPORAL_TLS_KEY": "the client key",
}


class TemporalAccess(_Settings):
    """TLS, mutual TLS and the API key, as Temporal Cloud wants them: what the function, the
    worker and every `preemptctl` command that talks to Temporal read. TLS is on when
    TEMPORAL_TLS says so, or, unset, when any of the others is set. The API key comes only
    from a file (a variable's value shows in `ps e`, /proc and the pod spec)."""

    temporal_tls: Flag | None = Field(default=None, alias="TEMPORAL_TLS")
    temporal_tls_ca: Path | None = Field(default=None, alias="TEMPORAL_TLS_CA")
    temporal_tls_cert: Path | None = Field(default=None, alias="TEMPORAL_TLS_CERT")
    temporal_tls_key: Path | None = Field(default=None, alias="TEMPORAL_TLS_KEY")
    temporal_tls_server_name: str = Field(default="", alias="TEMPORAL_TLS_SERVER_NAME")
    temporal_api_key_file: Path | None = Field(default=None, alias="TEMPORAL_API_KEY_FILE")
    # Built by `_derive` from the variables above (no alias: never read from one of its own).
    temporal_security: SkipValidation[TemporalSecurity] = TemporalSecurity()

    @classmethod
    def _derive(
        cls, env: Mapping[str, str], settings: _Settings | None
    ) -> tuple[dict[str, Any], list[str]]:
        derived, problems = super()._derive(env, settings)
        security, more = _temporal_security(env)
        return {**derived, "temporal_security": security}, problems + more


def _temporal_security(env: Mapping[str, str]) -> tuple[TemporalSecurity, list[str]]:
    problems: list[str] = []
    pem = {name: _read_pem(name, what, env, problems) for name, what in _PEM_FILES.items()}
    cert, key = pem["TEMPORAL_TLS_CERT"], pem["TEMPORAL_TLS_KEY"]
    if (cert is None) != (key is None) and not problems:
        problems.append("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together: set both or neither")
    api_key = _read_secret("TEMPORAL_API_KEY_FILE", "the API key", env, problems)
    server_name = env.get("TEMPORAL_TLS_SERVER_NAME", "").strip() or None
    tls_set = any(v is not None for v in pem.values()) or server_name is not None
    explicit = env.get("TEMPORAL_TLS", "").strip()
    # Unset or empty: on when anything else asks for it (an API key too: Temporal Cloud).
    tls = _bool(explicit) is True if explicit else tls_set or api_key is not None
    if explicit and not tls and tls_set:
        problems.append(
            "TEMPORAL_TLS is false, but TEMPORAL_TLS_CA, _CERT, _KEY or _SERVER_NAME is set"
        )
    security = TemporalSecurity(
        tls=tls,
        ca=pem["TEMPORAL_TLS_CA"],
        cert=cert,
        key=key,
        server_name=server_name,
        api_key=api_key,
    )
    return security, problems


def _read_bytes(name: str, what: str, env: Mapping[str, str], problems: list[str]) -> bytes | None:
    """The bytes of the file variable `name` names (None when unset or empty), or None and a
    problem saying why not; never the file's content."""
    path = env.get(name, "").strip()
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        problems.append(f"{name}: cannot read {what} {path} ({exc.strerror or exc})")
        return None


def _read_pem(name: str, what: str, env: Mapping[str, str], problems: list[str]) -> bytes | None:
    data = _read_bytes(name, what, env, problems)
    if data is not None and b"-----BEGIN " not in data:
        problems.append(f"{name}: {what} {env[name].strip()} is not PEM (no -----BEGIN line)")
        return None
    return data


def _read_secret(name: str, what: str, env: Mapping[str, str], problems: list[str]) -> str | None:
    """A secret's text, without the newline `echo secret > file` and `kubectl create secret
    --from-file` leave; an empty one is a problem."""
    data = _read_bytes(name, what, env, problems)
    if data is None:
        return None
    try:
        text = data.decode().strip()
    except UnicodeDecodeError:
        problems.append(f"{name}: {what} {env[name].strip()} is not UTF-8 text")
        return None
    if not text:
        problems.append(f"{name} is empty")
        return None
    return text


class TemporalSettings(TemporalAccess):
    temporal_url: Required = Field(alias="TEMPORAL_URL")
    temporal_namespace: Required = Field(alias="TEMPORAL_NAMESPACE")
    temporal_taskqueue: Required = Field(alias="TEMPORAL_TASKQUEUE")
    debug: Flag = Field(default=False, alias="DEBUG")
    log_format: LogFormat = Field(default=LogFormat.JSON, alias="LOG_FORMAT")


class FunctionSettings(TemporalSettings):
    """`preemptctl function`: README.md's table, all required but K_SINK, PORT and DEBUG, and
    TEMPORAL_TASKQUEUE when VCENTER_TASKQUEUES gives each vCenter its own."""

    # Checked in `_derive`: required unless VCENTER_TASKQUEUES is set (then unused).
    temporal_taskqueue: Required = Field(default="", alias="TEMPORAL_TASKQUEUE")
    # Several vCenters: the host of each (domain/vcenters.py: lower case, port unless 443) ->
    # the task queue its worker polls. Empty: one vCenter, TEMPORAL_TASKQUEUE for every event.
    vcenter_taskqueues: Annotated[dict[str, str], BeforeValidator(_task_queues)] = Field(
        default_factory=dict, alias="VCENTER_TASKQUEUES"
    )

    preemption_tag: Annotated[Required, AfterValidator(_tag)] = Field(
        alias="VSPHERE_PREEMPTION_TAG"
    )
    alarm_name: Required = Field(alias="VSPHERE_ALARM_NAME")
    # More alarms served by the same function, besides VSPHERE_ALARM_NAME: a JSON array of
    # names, or names separated by commas (a name with a comma needs the JSON form).
    more_alarm_names: Annotated[tuple[str, ...], BeforeValidator(_name_list)] = Field(
        default=(), alias="VSPHERE_ALARM_NAMES"
    )
    # `entity`: one workflow per alarm and alarmed entity (`<alarm>/<moref>`); `alarm`: the
    # Go function's one workflow per alarm.
    workflow_id_mode: IdMode = Field(default=IdMode.ENTITY, alias="WORKFLOW_ID_MODE")
    k_sink: Annotated[str, AfterValidator(_sink)] = Field(default="", alias="K_SINK")
    port: int = Field(default=8080, ge=1, le=65535, alias="PORT")
    # A redelivered event (the same source and id) acted on within this window, among the
    # last this many, is answered as a duplicate and not signalled again; 0 turns it off.
    dedup_window: Duration = Field(default=timedelta(hours=1), alias="DEDUP_WINDOW")
    dedup_max_events: int = Field(default=10_000, ge=0, le=1_000_000, alias="DEDUP_MAX_EVENTS")
    # A replica's least time between two signals to one workflow and entity; the raises that
    # come meanwhile ride the next signal, merged (function/signal_lines.py). 0: one signal in
    # flight, the next at once.
    signal_spacing: Duration = Field(default=timedelta(milliseconds=100), alias="SIGNAL_SPACING")
    # How long a request's body may take to come once its head has: a client that sends less
    # than its Content-Length, or stalls, is answered 408 and closed then (0: no bound).
    body_timeout: Duration = Field(default=timedelta(seconds=10), alias="BODY_TIMEOUT")
    # A file holding the token `POST /` then requires as `Authorization: Bearer <token>`.
    function_token_file: Path | None = Field(default=None, alias="FUNCTION_TOKEN_FILE")
    # Its content, read by `_derive` (no alias); never in a repr.
    bearer_token: SkipValidation[bytes | None] = Field(default=None, repr=False)

    @property
    def alarm_names(self) -> tuple[str, ...]:
        """Every alarm this function acts on, VSPHERE_ALARM_NAME first."""
        return tuple(dict.fromkeys((self.alarm_name, *self.more_alarm_names)))

    @classmethod
    def _derive(
        cls, env: Mapping[str, str], settings: _Settings | None
    ) -> tuple[dict[str, Any], list[str]]:
        derived, problems = super()._derive(env, settings)
        token = _read_secret("FUNCTION_TOKEN_FILE", "the bearer token", env, problems)
        if token is not None:
            derived = {**derived, "bearer_token": token.encode()}
        # An empty TEMPORAL_TASKQUEUE is refused by its own validator; a missing one only
        # when no VCENTER_TASKQUEUES names the queues.
        if "TEMPORAL_TASKQUEUE" not in env and not env.get("VCENTER_TASKQUEUES", "").strip():
            problems = [*problems, "TEMPORAL_TASKQUEUE is required (or VCENTER_TASKQUEUES)"]
        return derived, problems


class VCenterSettings(_Settings):
    """Where vCenter is and the policy: what the worker and `preemptctl plan` (which needs no
    Temporal) share."""

    vcenter_url: Required = Field(alias="VCENTER_URL")
    vcenter_insecure: Flag = Field(default=False, alias="VCENTER_INSECURE")
    vcenter_secret_path: Path = Field(
        default=Path("/var/bindings/vsphere"), alias="VCENTER_SECRET_PATH"
    )
    vcenter_ca_bundle: Path | None = Field(default=None, alias="VCENTER_CA_BUNDLE")
    max_vms: int = Field(default=10, ge=1, alias="PREEMPTION_MAX_VMS")
    scope: Scope = Field(default=Scope.ENTITY, alias="PREEMPTION_SCOPE")
    # Notice before acting, per criticality (the policy's `notice.<LEVEL>`; over the file).
    notice_low: Duration | None = Field(default=None, alias="PREEMPTION_NOTICE_LOW")
    notice_medium: Duration | None = Field(default=None, alias="PREEMPTION_NOTICE_MEDIUM")
    notice_high: Duration | None = Field(default=None, alias="PREEMPTION_NOTICE_HIGH")
    policy_file: Path | None = Field(default=None, alias="PREEMPTION_POLICY_FILE")
    # The policy file with PREEMPTION_MAX_VMS and PREEMPTION_SCOPE over it, when set; built by
    # `load` (no alias: never read from a variable of its own). `max_vms` and `scope` above
    # then hold the policy's values, whichever set them.
    policy: SkipValidation[Policy] = Policy()
    debug: Flag = Field(default=False, alias="DEBUG")

    @classmethod
    def _derive(
        cls, env: Mapping[str, str], settings: _Settings | None
    ) -> tuple[dict[str, Any], list[str]]:
        problems: list[str] = []
        policy = Policy()
        raw = _read_policy_file(env.get("PREEMPTION_POLICY_FILE", "").strip(), problems)
        try:
            policy = policy_from_mapping(raw)
        except PolicyError as exc:
            problems += [f"PREEMPTION_POLICY_FILE: {p}" for p in exc.problems]
        if not isinstance(settings, VCenterSettings) or problems:
            return {}, problems
        # The variables win over the file: a deployment tunes one knob without a new file.
        overrides: dict[str, Any] = {}
        if "max_vms" in settings.model_fields_set:
            overrides["maxVMs"] = settings.max_vms
        if "scope" in settings.model_fields_set:
            overrides["scope"] = settings.scope.value
        notice = {
            level: value.total_seconds()
            for level, value in (
                ("LOW", settings.notice_low),
                ("MEDIUM", settings.notice_medium),
                ("HIGH", settings.notice_high),
            )
            if value is not None
        }
        if notice:
            overrides["notice"] = notice
        policy = policy.with_overrides(overrides)
        return {"policy": policy, "max_vms": policy.max_vms, "scope": policy.scope}, []


class WorkerSettings(TemporalSettings, VCenterSettings):
    """`preemptctl worker`: the Go worker's variables plus the knobs it hard-coded (README.md)."""

    temporal_namespace: Required = Field(default=DEFAULT_NAMESPACE, alias="TEMPORAL_NAMESPACE")
    temporal_taskqueue: Required = Field(default=DEFAULT_TASK_QUEUE, alias="TEMPORAL_TASKQUEUE")
    cooldown: Duration = Field(default=timedelta(minutes=1), alias="PREEMPTION_COOLDOWN")
    soft_shutdown_grace: Duration = Field(
        default=timedelta(minutes=2), alias="PREEMPTION_SOFT_SHUTDOWN_GRACE"
    )
    max_concurrency: int = Field(default=5, ge=1, le=64, alias="PREEMPTION_MAX_CONCURRENCY")
    # CA certificates (PEM) to trust for https:// replyTo sinks, besides the usual public
    # ones; verification is never off for the sink.
    sink_ca_bundle: Annotated[Path | None, AfterValidator(_pem_file)] = Field(
        default=None, alias="SINK_CA_BUNDLE"
    )
    # Where the worker serves Prometheus metrics (the SDK's and ours, one endpoint); empty:
    # none, as a port of its own could clash with a neighbour's.
    metrics_address: Annotated[str, AfterValidator(_address)] = Field(
        default="", alias="METRICS_ADDRESS"
    )
    # Where the worker answers Kubernetes' probes (/health/liveness, /health/readiness);
    # empty: nowhere, as for METRICS_ADDRESS. The chart sets it.
    health_address: Annotated[str, AfterValidator(_address)] = Field(
        default="", alias="HEALTH_ADDRESS"
    )


def _read_policy_file(path: str, problems: list[str]) -> Any:
    """The file's YAML, None when no file is named; a problem (never the file's text) if bad."""
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problems.append(f"PREEMPTION_POLICY_FILE cannot be read ({why})")
        return None
    import yaml  # only the worker reads a policy file: the function's cold start skips it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problems.append(f"PREEMPTION_POLICY_FILE is not valid YAML{where}")
        return None


_S = TypeVar("_S", bound=_Settings)


def load(model: type[_S], environ: Mapping[str, str] | None = None) -> _S:
    """Validate `environ` into `model`, or raise one SettingsError naming every bad variable."""
    env = os.environ if environ is None else environ
    names = {f.alias for f in model.model_fields.values() if f.alias}
    present = {k: v for k, v in env.items() if k in names}
    problems = []
    settings = None
    try:
        settings = model.model_validate(present)
    except ValidationError as exc:
        for err in exc.errors():
            var = ".".join(str(p) for p in err["loc"]) or "?"
            reason = "is required" if err["type"] == "missing" else err["msg"]
            # Never echo a value back: some variables can carry secrets.
            problems.append(f"{var} {reason}")
    derived, more = model._derive(env, settings)
    problems += more
    if settings is None or problems:
        raise SettingsError(
            f"invalid {model.__name__.removesuffix('Settings').lower()} settings: "
            + "; ".join(problems),
            tuple(problems),
        )
    return settings.model_copy(update=derived) if derived else settings
