"""Durations as people write them: seconds, or Go's spelling (`90s`, `2m`, `1m30s`, `500ms`).

One reader for the settings (environment variables) and the policy (YAML), so both accept
the same spellings. Standard library only.
"""

from __future__ import annotations

import math
import re
from typing import Any

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_seconds(value: Any) -> float:
    """Seconds (a number), or Go's duration text; ValueError for anything else or < 0."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"not a duration: {text!r} (use seconds, or 90s, 2m, 1m30s)"
                ) from None
            seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r} (must be zero or more seconds)")
    return seconds


def format_seconds(seconds: float) -> str:
    """The shortest of Go's spellings: `0s`, `30s`, `2m`, `1m30s`, `1.5s`, `1h`."""
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
