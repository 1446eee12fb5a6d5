"""How Go's `encoding/json` matches a JSON object's keys to a struct's field names.

An exact match first, then any letter case: Go folds names with Unicode simple folding, so
beyond ASCII case the long s (U+017F) reads as `s` and the Kelvin sign (U+212A) as `k`
(Python's `lower()` already maps the Kelvin sign). The event decoder, the wire and the
CLI's rendering of events read Go's JSON this one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fold(name: str) -> str:
    """`name` as Go compares field names case-insensitively (for the names Go structs use)."""
    return name.lower().replace("\u017f", "s")


def field(obj: Mapping[str, Any], name: str) -> Any:
    """The value of field `name` in `obj` as Go's decoder finds it; None when it is absent."""
    if name in obj:
        return obj[name]
    folded = fold(name)
    for key, value in obj.items():
        if isinstance(key, str) and fold(key) == folded:
            return value
    return None
