"""JSON texts carried as they arrived, where the Go originals keep raw bytes.

Go's CloudEvents SDK holds an event's `data` as the bytes it read and writes them back
unchanged; the only thing that touches them is encoding/json compacting the result and
escaping `<`, `>`, `&`, U+2028 and U+2029 (docs/wire.md, "Event data"). Decoding into Python
values and encoding again would not give the same bytes: `1.50` turns into `1.5`, `1e3` into
`1000.0`, `caf\\u00e9` into `café`. `RawJSON` carries such a text through our code and
`wire.go_json` writes it verbatim. Standard library only (the workflow uses it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_WHITESPACE = " \t\n\r"  # JSON's insignificant whitespace, nothing else
# A JSON string (escapes included) or a run of whitespace outside strings.
_STRING_OR_SPACE = re.compile(r'("(?:[^"\\]|\\.)*")|[ \t\n\r]+')


def _refuse_constant(name: str) -> Any:
    # Python reads NaN and Infinity; they are not JSON and Go refuses them.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def compact(text: str) -> str:
    """`text` (valid JSON) without insignificant whitespace, as Go's json.Compact writes it."""
    return _STRING_OR_SPACE.sub(lambda m: m.group(1) or "", text)


@dataclass(frozen=True)
class RawJSON:
    """One JSON value as a compact text, to be written as it is."""

    text: str

    @classmethod
    def parse(cls, text: str | bytes) -> RawJSON:
        """Check that `text` is one JSON value (UTF-8 when bytes); keep it, compacted."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        _DECODER.decode(text)  # raises ValueError when it is not JSON
        return cls(compact(text))

    def value(self) -> Any:
        return json.loads(self.text)


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def _expect(text: str, index: int, char: str) -> int:
    if text[index : index + 1] != char:
        raise ValueError(f"expected {char!r} at position {index}")
    return _skip(text, index + 1)


def members(text: str | bytes) -> list[tuple[str, str]]:
    """The members of the JSON object `text`, in order, each key with its value's raw text.

    Repeated keys are all listed; `dict(members(text))` keeps the last, as json.loads does.
    Raises ValueError when `text` is not one JSON object.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    index = _expect(text, _skip(text, 0), "{")
    found: list[tuple[str, str]] = []
    if text[index : index + 1] == "}":
        index = _skip(text, index + 1)
    else:
        while True:
            if text[index : index + 1] != '"':
                raise ValueError(f"expected a member name at position {index}")
            key, index = _DECODER.raw_decode(text, index)  # a JSON string: the key
            index = _expect(text, _skip(text, index), ":")
            _, end = _DECODER.raw_decode(text, index)
            found.append((key, text[index:end]))
            index = _skip(text, end)
            if text[index : index + 1] == ",":
                index = _skip(text, index + 1)
                continue
            index = _expect(text, index, "}")
            break
    if index != len(text):
        raise ValueError(f"extra data at position {index}")
    return found
