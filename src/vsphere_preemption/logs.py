"""The one logging configuration: JSON lines on stdout, via structlog.

Every program calls `configure` once at start. Log events carry fields
(`eventID`, `decision`, ...) rather than formatted text so they can be queried.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = frozenset({"password", "secret", "token", "authorization", "cookie"})


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Defence in depth: a field whose name says secret never reaches the log.
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


# The Temporal SDK's loggers put the workflow's or activity's info in one `extra` dict;
# every line gets the ids a reader filters by as fields of their own, in our names.
_TEMPORAL_FIELDS = {
    "temporal_workflow": {"workflow_id": "workflowID", "run_id": "runID",
                          "workflow_type": "workflowType", "attempt": "attempt"},
    "temporal_activity": {"workflow_id": "workflowID", "workflow_run_id": "runID",
                          "activity_type": "activity", "attempt": "attempt"},
}  # fmt: skip


def _temporal_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, names in _TEMPORAL_FIELDS.items():
        info = event_dict.pop(key, None)
        if isinstance(info, dict):
            for theirs, ours in names.items():
                if theirs in info:
                    event_dict.setdefault(ours, info[theirs])
    return event_dict


def _program(name: str) -> Any:
    # A field of every line, also of lines logged where our context is not (the SDK's
    # threads, a workflow's tasks).
    def add(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("program", name)
        return event_dict

    return add


def configure(
    *,
    debug: bool = False,
    json: bool = True,
    program: str = "vsphere-preemption",
    stream: TextIO | None = None,
    level: int | None = None,
) -> None:
    """JSON lines (or, without `json`, key=value text for a terminal) on `stream` (stdout
    unless given: a CLI whose stdout is its answer logs to stderr) at `level` (DEBUG with
    `debug`, else INFO, unless given)."""
    if level is None:
        level = logging.DEBUG if debug else logging.INFO
    out = sys.stdout if stream is None else stream
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _program(program),
    ]
    render: Any = (
        structlog.processors.JSONRenderer(default=str)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # The console renderer lays out tracebacks itself.
    exc_info: list[Any] = [structlog.processors.format_exc_info] if json else []
    # Records of the standard library's loggers (temporalio's workflow and activity
    # loggers, httpx, ...) become JSON lines too, their `extra` fields included.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                _temporal_ids,
                _redact,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *exc_info,
                render,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=level, force=True)
    # httpx logs every request at INFO, URL included: keep only its warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            *shared,
            _redact,
            *exc_info,
            render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
