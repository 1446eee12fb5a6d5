"""How an error reads when it reaches a person, a log line or an HTTP answer: one line, and
naming the kind of a JSON value it got."""

from __future__ import annotations

from typing import Any


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """The error's text with its white space folded into single spaces, cut at `limit`.

    An exception without text reads as its type's name, so the line is never empty.
    """
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text[:limit]


def json_kind(value: Any) -> str:
    """What kind of JSON value `value` is, as a message names it: `got a number`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object"
