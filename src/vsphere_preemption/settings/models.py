"""The worker's settings and those of `preemptctl` commands that talk to Temporal or vCenter:
plain pydantic models validated from a mapping (`os.environ` in production, a dict in tests).
pydantic-settings would do the same, at three times the import cost. Loaded by
`vsphere_preemption.settings.load` (the package imports this module only then)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
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

from vsphere_preemption.domain.policy import Policy, PolicyError, Scope, policy_from_mapping
from vsphere_preemption.settings.environment import (
    LogFormat,
    SettingsError,
    TemporalSecurity,
    parse_duration,
    temporal_security,
)
from vsphere_preemption.settings.environment import bool_text as _bool
from vsphere_preemption.settings.environment import nonblank as _nonblank
from vsphere_preemption.wire import DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE

Flag = Annotated[bool, BeforeValidator(_bool)]


def parse_flag(name: str, value: str) -> bool:
    """Variable `name` read as the programs' settings read a boolean, or a SettingsError."""
    try:
        return TypeAdapter(Flag).validate_python(value)
    except ValidationError:
        raise SettingsError(f"{name} must be true or false") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Required = Annotated[str, BeforeValidator(_nonblank)]


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
        security, more = temporal_security(env)
        return {**derived, "temporal_security": security}, problems + more


class TemporalSettings(TemporalAccess):
    temporal_url: Required = Field(alias="TEMPORAL_URL")
    temporal_namespace: Required = Field(alias="TEMPORAL_NAMESPACE")
    temporal_taskqueue: Required = Field(alias="TEMPORAL_TASKQUEUE")
    debug: Flag = Field(default=False, alias="DEBUG")
    log_format: LogFormat = Field(default=LogFormat.JSON, alias="LOG_FORMAT")


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
