"""cli/table.py: the table every listing prints."""

from __future__ import annotations

import pytest

from vsphere_preemption.cli.table import table


def test_each_column_is_as_wide_as_its_widest_cell_and_lines_end_without_blanks() -> None:
    lines = table(("NAME", "STATE", "WHY"), [("vm-1", "on", ""), ("vm-100", "off", "low")])
    assert lines == [
        "NAME    STATE  WHY",
        "vm-1    on",
        "vm-100  off    low",
    ]


def test_a_table_without_rows_is_its_header() -> None:
    assert table(("A", "B"), []) == ["A  B"]


def test_a_row_must_have_a_cell_for_each_column() -> None:
    with pytest.raises(ValueError, match="shorter"):
        table(("A", "B"), [("only one",)])
