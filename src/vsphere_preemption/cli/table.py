"""The one plain-text table of `preemptctl`'s output: columns two spaces apart, each as wide
as its widest cell. Pure."""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header and the rows as lines, cells left-aligned, no blanks at a line's end."""
    widths = [max(len(cell) for cell in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
