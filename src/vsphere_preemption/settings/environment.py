"""Reading settings from environment variables, with the standard library only.

What every program's settings share (the pydantic models of models.py and the function's
own, function.py): the one error that names every bad variable, how a flag, a duration,
a list of names and the vCenters' task queues are spelled, the checks a tag and a sink must
pass, and Temporal's TLS and API key files. The function reads its settings with these
alone: pydantic costs its cold start ~30 % and its memory ~11 MiB (BENCHMARKS.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from vsphere_preemption.domain.durations import parse_seconds
from vsphere_preemption.domain.vcenters import vcenter_host
from vsphere_preemption.wire import MAX_TAG_LENGTH, reply_to_problem, tag_problem


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


def bool_text(value: Any) -> Any:
    """A flag as the Go programs spell it (DEBUG's "true"/"false"), and the usual others;
    anything else is returned as it came (for the caller to refuse)."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off", ""}:
            return False
    return value


def nonblank(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value.strip() if isinstance(value, str) else value


def name_list(value: Any) -> Any:
    """A JSON array of names, or names separated by commas."""
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


def task_queues(value: Any) -> Any:
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


def tag_name(value: str) -> str:
    # The workflow drops a signal whose tag no vSphere tag can have (wire.tag_problem).
    if tag_problem(value) is not None:
        raise ValueError(f"must be a vSphere tag name of at most {MAX_TAG_LENGTH} characters")
    return value


def sink_url(value: str) -> str:
    # The signal's replyTo: the workflow drops a signal whose replyTo is not such a URL.
    if reply_to_problem(value) is not None:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class LogFormat(StrEnum):
    JSON = "json"  # one JSON object a line: what a log pipeline reads (the image's)
    CONSOLE = "console"  # key=value text, for a person at a terminal


@dataclass(frozen=True)
class TemporalSecurity:
    """How to reach Temporal safely: TLS (with the files' contents), mTLS, an API key.

    Built from the TEMPORAL_TLS* variables and TEMPORAL_API_KEY_FILE (temporal_security);
    the key and the private key never show in a repr (so never in a log line or a
    traceback's locals)."""

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


def temporal_security(env: Mapping[str, str]) -> tuple[TemporalSecurity, list[str]]:
    """TLS, mutual TLS and the API key, as Temporal Cloud wants them, and the problems found.
    TLS is on when TEMPORAL_TLS says so, or, unset, when any of the others is set. The API key
    comes only from a file (a variable's value shows in `ps e`, /proc and the pod spec)."""
    problems: list[str] = []
    pem = {name: _read_pem(name, what, env, problems) for name, what in _PEM_FILES.items()}
    cert, key = pem["TEMPORAL_TLS_CERT"], pem["TEMPORAL_TLS_KEY"]
    if (cert is None) != (key is None) and not problems:
        problems.append("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together: set both or neither")
    api_key = read_secret("TEMPORAL_API_KEY_FILE", "the API key", env, problems)
    server_name = env.get("TEMPORAL_TLS_SERVER_NAME", "").strip() or None
    tls_set = any(v is not None for v in pem.values()) or server_name is not None
    explicit = env.get("TEMPORAL_TLS", "").strip()
    # Unset or empty: on when anything else asks for it (an API key too: Temporal Cloud).
    tls = bool_text(explicit) is True if explicit else tls_set or api_key is not None
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


def read_secret(name: str, what: str, env: Mapping[str, str], problems: list[str]) -> str | None:
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


# Readers of one variable's text, for `read`: each returns the value or raises ValueError
# with what the text must be (never the text itself: a variable may carry a secret).


def flag(text: str) -> bool:
    value = bool_text(text)
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            "must be a duration of zero or more (90s, 2m, 1m30s, 500ms, or seconds)"
        ) from None


def whole_number(low: int, high: int) -> Callable[[str], int]:
    def read(text: str) -> int:
        try:
            number = int(text.strip())
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number

    return read


def one_of(kind: type[StrEnum]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            return kind(text.strip())
        except ValueError:
            raise ValueError(f"must be one of {', '.join(m.value for m in kind)}") from None

    return read


def optional_path(text: str) -> Path | None:
    return Path(text.strip()) if text.strip() else None


@dataclass(frozen=True)
class Variable:
    """One environment variable: the attribute it sets and how its text is read."""

    name: str
    attribute: str
    read: Callable[[str], Any] = str
    required: bool = False


def read(variables: Sequence[Variable], env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The values of the variables set in `env`, by attribute, and a problem for each that is
    missing (when required) or cannot be read, naming the variable."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for variable in variables:
        text = env.get(variable.name)
        if text is None:
            if variable.required:
                problems.append(f"{variable.name} is required")
            continue
        try:
            values[variable.attribute] = variable.read(text)
        except ValueError as exc:
            problems.append(f"{variable.name} {exc}")
    return values, problems
