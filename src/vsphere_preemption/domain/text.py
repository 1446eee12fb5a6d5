"""How an error reads when it reaches a person, a log line or an HTTP answer: one line."""

from __future__ import annotations


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """The error's text with its white space folded into single spaces, cut at `limit`.

    An exception without text reads as its type's name, so the line is never empty.
    """
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text[:limit]
