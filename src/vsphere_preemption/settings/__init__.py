"""One typed settings object per program, read once from the environment: `load(Model)`.

The function's (`FunctionSettings`, function.py) are read with the standard library only;
the worker's and the CLI's are pydantic models (models.py: `TemporalAccess`,
`TemporalSettings`, `VCenterSettings`, `WorkerSettings`), imported only when one of them is
asked for, so that the function's cold start and memory never pay for pydantic (~11 MiB and a
third of its start-up imports, BENCHMARKS.md). What they share is in environment.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from vsphere_preemption.settings import function
from vsphere_preemption.settings.environment import (
    LogFormat,
    SettingsError,
    TemporalSecurity,
    parse_duration,
)
from vsphere_preemption.settings.function import FunctionSettings

if TYPE_CHECKING:
    from vsphere_preemption.settings.models import (
        TemporalAccess,
        TemporalSettings,
        VCenterSettings,
        WorkerSettings,
        _Settings,
        parse_flag,
    )

__all__ = [
    "FunctionSettings",
    "LogFormat",
    "SettingsError",
    "TemporalAccess",
    "TemporalSecurity",
    "TemporalSettings",
    "VCenterSettings",
    "WorkerSettings",
    "load",
    "parse_duration",
    "parse_flag",
]

# The names models.py serves, loaded on first use.
_MODELS = frozenset(
    {"TemporalAccess", "TemporalSettings", "VCenterSettings", "WorkerSettings", "parse_flag"}
)

_S = TypeVar("_S", bound="_Settings")


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        return getattr(importlib.import_module("vsphere_preemption.settings.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@overload
def load(
    model: type[FunctionSettings], environ: Mapping[str, str] | None = None
) -> FunctionSettings: ...
@overload
def load(model: type[_S], environ: Mapping[str, str] | None = None) -> _S: ...
def load(model: type[Any], environ: Mapping[str, str] | None = None) -> Any:
    """`environ` (os.environ unless given) read into `model`, or one SettingsError naming
    every bad variable."""
    if model is FunctionSettings:
        return function.load(environ)
    from vsphere_preemption.settings import models

    return models.load(model, environ)
