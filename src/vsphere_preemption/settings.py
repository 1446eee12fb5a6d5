"""One typed settings object per program, read once from the environment.

Plain pydantic models validated from a mapping (`os.environ` in production,
a dict in tests). pydantic-settings would do the same, at three times the
import cost, which the function's cold start cannot afford.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from vsphere_preemption.wire import DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE


class SettingsError(ValueError):
    """Settings that cannot start a program; the message names every bad variable."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(value: Any) -> timedelta:
    """Seconds as a number, or Go's duration spelling (`90s`, `2m`, `1m30s`, `500ms`)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = str(value).strip()
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use seconds, or 90s, 2m, 1m30s)")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return timedelta(seconds=sum(float(n) * unit[u] for n, u in parts))


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


Flag = Annotated[bool, BeforeValidator(_bool)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Required = Annotated[str, BeforeValidator(_nonblank)]


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class TemporalSettings(_Settings):
    temporal_url: Required = Field(alias="TEMPORAL_URL")
    temporal_namespace: Required = Field(alias="TEMPORAL_NAMESPACE")
    temporal_taskqueue: Required = Field(alias="TEMPORAL_TASKQUEUE")
    debug: Flag = Field(default=False, alias="DEBUG")


class FunctionSettings(TemporalSettings):
    """`preemptctl function`: README.md's table, all required but K_SINK, PORT and DEBUG."""

    preemption_tag: Required = Field(alias="VSPHERE_PREEMPTION_TAG")
    alarm_name: Required = Field(alias="VSPHERE_ALARM_NAME")
    k_sink: str = Field(default="", alias="K_SINK")
    port: int = Field(default=8080, ge=1, le=65535, alias="PORT")


class WorkerSettings(TemporalSettings):
    """`preemptctl worker`: the Go worker's variables plus the knobs it hard-coded (README.md)."""

    temporal_namespace: Required = Field(default=DEFAULT_NAMESPACE, alias="TEMPORAL_NAMESPACE")
    temporal_taskqueue: Required = Field(default=DEFAULT_TASK_QUEUE, alias="TEMPORAL_TASKQUEUE")
    vcenter_url: Required = Field(alias="VCENTER_URL")
    vcenter_insecure: Flag = Field(default=False, alias="VCENTER_INSECURE")
    vcenter_secret_path: Path = Field(
        default=Path("/var/bindings/vsphere"), alias="VCENTER_SECRET_PATH"
    )
    vcenter_ca_bundle: Path | None = Field(default=None, alias="VCENTER_CA_BUNDLE")
    cooldown: Duration = Field(default=timedelta(minutes=1), alias="PREEMPTION_COOLDOWN")
    max_vms: int = Field(default=10, ge=1, alias="PREEMPTION_MAX_VMS")
    soft_shutdown_grace: Duration = Field(
        default=timedelta(minutes=2), alias="PREEMPTION_SOFT_SHUTDOWN_GRACE"
    )
    max_concurrency: int = Field(default=5, ge=1, le=64, alias="PREEMPTION_MAX_CONCURRENCY")


_S = TypeVar("_S", bound=_Settings)


def load(model: type[_S], environ: Mapping[str, str] | None = None) -> _S:
    """Validate `environ` into `model`, or raise one SettingsError naming every bad variable."""
    env = os.environ if environ is None else environ
    names = {f.alias or n for n, f in model.model_fields.items()}
    present = {k: v for k, v in env.items() if k in names}
    try:
        return model.model_validate(present)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            var = ".".join(str(p) for p in err["loc"]) or "?"
            reason = "is required" if err["type"] == "missing" else err["msg"]
            # Never echo a value back: some variables can carry secrets.
            problems.append(f"{var} {reason}")
        raise SettingsError(
            f"invalid {model.__name__.removesuffix('Settings').lower()} settings: "
            + "; ".join(problems)
        ) from None
