"""How `preemptctl history` shows the runs a preemption workflow remembers.

Pure: rows of (workflow ID, Temporal run ID, the run's record as the workflow wrote it) in,
text or JSON-ready values out. A record is a `RunRecord` (domain/shapes.py: `run`, `kind`,
`startedAt`, `endedAt`, `criticality`, `action`, `victims`, `stopped`, `failed`, `forced`,
`resumed`, `skipped`, `outcome`, `reason`, ...), read once as it arrives (`HistoryRow.run`): a
field a record lacks, or holds in another shape (an older or newer worker wrote it), reads as
"-", never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from vsphere_preemption.cli.table import table
from vsphere_preemption.cli.workflow_render import format_when
from vsphere_preemption.domain.shapes import RunRecord, known_fields
from vsphere_preemption.wire import WireError, parse_time


@dataclass(frozen=True)
class HistoryRow:
    """One remembered run of one workflow run."""

    workflow_id: str
    run_id: str  # Temporal's run ID of the workflow that remembers it
    record: Mapping[str, Any]  # as received: `--json` prints it as the workflow wrote it

    @cached_property
    def run(self) -> RunRecord:
        """The record's fields that have their shape: what the table reads."""
        return known_fields(self.record, RunRecord)

    @property
    def started(self) -> datetime | None:
        return _time(self.run.get("startedAt"))


def _time(value: str | None) -> datetime | None:
    if value is None:
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
        return (started if started is not None else floor, row.workflow_id, row.run.get("run", 0))

    return sorted(rows, key=key)


def _text(value: str | None) -> str:
    return value.strip() if value is not None and value.strip() else "-"


def _counted(counts: Sequence[tuple[int, str]]) -> str:
    """`2 stopped, 1 forced`: the first always, the others when not none."""
    first, *rest = counts
    return ", ".join(f"{n} {what}" for n, what in (first, *(c for c in rest if c[0])))


def vms_cell(record: RunRecord) -> str:
    """What the run did to VMs: `2 stopped, 1 forced, 1 failed`, `3 planned`, `2 resumed`."""
    failed = len(record.get("failed", []))
    if record.get("kind") == "resume":
        resumed, skipped = len(record.get("resumed", [])), len(record.get("skipped", []))
        return _counted([(resumed, "resumed"), (skipped, "skipped"), (failed, "failed")])
    if "stopped" in record or failed:
        stopped, forced = len(record.get("stopped", [])), len(record.get("forced", []))
        return _counted([(stopped, "stopped"), (forced, "forced"), (failed, "failed")])
    if "victims" in record:
        return f"{len(record['victims'])} planned"
    return "-"


def reason_cell(record: RunRecord) -> str:
    """Why the run ended as it did; failed VMs each with their reason."""
    reason = _text(record.get("reason"))
    parts = [] if reason == "-" else [reason]
    parts += [f"{_text(i['vm'])}: {_text(i['reason'])}" for i in record.get("failed", [])]
    return "; ".join(parts) or "-"


def _when(row: HistoryRow) -> str:
    started = row.started
    return started.strftime("%Y-%m-%d %H:%M:%S") if started is not None else "?"


def _run(record: RunRecord) -> str:
    return str(record["run"]) if "run" in record else "?"


def _kind(record: RunRecord) -> str:
    kind = _text(record.get("kind"))
    return f"{kind} (dry run)" if kind == "preempt" and record.get("dryRun", False) else kind


def row_cells(row: HistoryRow, *, workflow_column: bool) -> tuple[str, ...]:
    """WHEN, [WORKFLOW,] RUN, KIND, CRITICALITY, ACTION, VMS, OUTCOME, REASON."""
    record = row.run
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
        lines = table(header, [row_cells(r, workflow_column=workflow_column) for r in ordered])
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
