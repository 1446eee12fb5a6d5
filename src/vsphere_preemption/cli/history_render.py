"""How `preemptctl history` shows the runs a preemption workflow remembers.

Pure: rows of (workflow ID, Temporal run ID, the run's record as the workflow wrote it) in,
text or JSON-ready values out. A record is a JSON object (`run`, `kind`, `startedAt`,
`endedAt`, `criticality`, `action`, `victims`, `stopped`, `failed`, `forced`, `resumed`,
`skipped`, `outcome`, `reason`, ...); a field a record lacks, or holds in another shape (an
older or newer worker wrote it), reads as "-", never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vsphere_preemption.cli.workflow_render import format_when
from vsphere_preemption.wire import WireError, parse_time


@dataclass(frozen=True)
class HistoryRow:
    """One remembered run of one workflow run."""

    workflow_id: str
    run_id: str  # Temporal's run ID of the workflow that remembers it
    record: Mapping[str, Any]

    @property
    def started(self) -> datetime | None:
        return _time(self.record.get("startedAt"))


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except WireError:
        return None


def in_time_order(rows: Sequence[HistoryRow]) -> list[HistoryRow]:
    """Oldest first by start, then by workflow and run number; a record without a readable
    start comes first (none of ours lacks one)."""
    floor = datetime.min.replace(tzinfo=UTC)

    def key(row: HistoryRow) -> tuple[datetime, str, int]:
        started = row.started
        number = row.record.get("run")
        return (
            started if started is not None else floor,
            row.workflow_id,
            number if isinstance(number, int) else 0,
        )

    return sorted(rows, key=key)


def _count(record: Mapping[str, Any], name: str) -> int:
    value = record.get(name)
    return len(value) if isinstance(value, list) else 0


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) and value.strip() else "-"


def vms_cell(record: Mapping[str, Any]) -> str:
    """What the run did to VMs: `2 stopped, 1 forced, 1 failed`, `3 planned`, `2 resumed`."""
    parts: list[str] = []
    if record.get("kind") == "resume":
        parts.append(f"{_count(record, 'resumed')} resumed")
        for name in ("skipped", "failed"):
            if _count(record, name):
                parts.append(f"{_count(record, name)} {name}")
        return ", ".join(parts)
    if "stopped" in record or _count(record, "failed"):
        parts.append(f"{_count(record, 'stopped')} stopped")
        for name in ("forced", "failed"):
            if _count(record, name):
                parts.append(f"{_count(record, name)} {name}")
        return ", ".join(parts)
    if isinstance(record.get("victims"), list):
        return f"{_count(record, 'victims')} planned"
    return "-"


def reason_cell(record: Mapping[str, Any]) -> str:
    """Why the run ended as it did; failed VMs each with their reason."""
    parts = [] if _text(record.get("reason")) == "-" else [str(record["reason"]).strip()]
    failed = record.get("failed")
    if isinstance(failed, list):
        for issue in failed:
            if isinstance(issue, Mapping):
                parts.append(f"{_text(issue.get('vm'))}: {_text(issue.get('reason'))}")
    return "; ".join(parts) or "-"


def _when(row: HistoryRow) -> str:
    started = row.started
    return started.strftime("%Y-%m-%d %H:%M:%S") if started is not None else "?"


def _run(record: Mapping[str, Any]) -> str:
    number = record.get("run")
    return str(number) if isinstance(number, int) else "?"


def _kind(record: Mapping[str, Any]) -> str:
    kind = _text(record.get("kind"))
    return f"{kind} (dry run)" if kind == "preempt" and record.get("dryRun") is True else kind


def row_cells(row: HistoryRow, *, workflow_column: bool) -> tuple[str, ...]:
    """WHEN, [WORKFLOW,] RUN, KIND, CRITICALITY, ACTION, VMS, OUTCOME, REASON."""
    record = row.record
    cells = [
        _when(row),
        *([row.workflow_id] if workflow_column else []),
        _run(record),
        _kind(record),
        _text(record.get("criticality")),
        _text(record.get("action")),
        vms_cell(record),
        _text(record.get("outcome")),
        reason_cell(record),
    ]
    return tuple(cells)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def render_history(
    rows: Sequence[HistoryRow], *, workflow_column: bool, notes: Sequence[str] = ()
) -> str:
    """The runs as a table, oldest first, a count, then the notes (one line each)."""
    header = (
        "WHEN (UTC)",
        *(["WORKFLOW"] if workflow_column else []),
        "RUN",
        "KIND",
        "CRITICALITY",
        "ACTION",
        "VMS",
        "OUTCOME",
        "REASON",
    )
    ordered = in_time_order(rows)
    if ordered:
        lines = _table(header, [row_cells(r, workflow_column=workflow_column) for r in ordered])
        lines.append(f"{len(ordered)} run(s).")
    else:
        lines = ["No runs recorded."]
    lines += notes
    return "\n".join(lines)


def render_workflow_heading(
    workflow_id: str, run_id: str, status: str, started: datetime, now: datetime
) -> str:
    """The line above one workflow's table."""
    return f"Workflow {workflow_id} (run {run_id}), {status}, started {format_when(started, now)}"


def history_json(rows: Sequence[HistoryRow]) -> list[dict[str, Any]]:
    """`--json`: each record as the workflow wrote it, after its workflow and run IDs."""
    return [
        {"workflowID": row.workflow_id, "runID": row.run_id, **row.record}
        for row in in_time_order(rows)
    ]
