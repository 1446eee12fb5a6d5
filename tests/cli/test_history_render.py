"""The `preemptctl history` table and JSON: records in, what a person or a script reads out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from vsphere_preemption.cli.history_render import (
    HistoryRow,
    history_json,
    in_time_order,
    reason_cell,
    render_history,
    render_workflow_heading,
    vms_cell,
)
from vsphere_preemption.domain.shapes import RunRecord
from vsphere_preemption.wire import go_json

ACTED: RunRecord = {
    "run": 1,
    "kind": "preempt",
    "startedAt": "2024-05-01T10:00:00Z",
    "criticality": "HIGH",
    "eventID": "e-1",
    "tag": "preemptible",
    "dryRun": False,
    "entity": {"Type": "ClusterComputeResource", "Value": "domain-c7"},
    "victims": ["vm-1", "vm-2", "vm-3"],
    "leftOut": 0,
    "action": "powerOff",
    "stopped": ["vm-1", "vm-2"],
    "failed": [{"vm": "vm-3", "reason": "InvalidPowerState"}],
    "forced": ["vm-2"],
    "outcome": "acted",
    "endedAt": "2024-05-01T10:00:04.5Z",
}
SKIPPED: RunRecord = {
    "run": 2,
    "kind": "preempt",
    "startedAt": "2024-05-01T10:00:30Z",
    "criticality": "LOW",
    "eventID": "e-2",
    "tag": "preemptible",
    "dryRun": False,
    "outcome": "skipped",
    "reason": "within the cooldown",
    "endedAt": "2024-05-01T10:00:30Z",
}
RESUMED: RunRecord = {
    "run": 3,
    "kind": "resume",
    "startedAt": "2024-05-01T11:00:00Z",
    "resumed": ["vm-1"],
    "skipped": [{"vm": "vm-2", "reason": "changed since it was stopped"}],
    "failed": [],
    "outcome": "resumed",
    "endedAt": "2024-05-01T11:00:01Z",
}
DRY: RunRecord = {
    "run": 1,
    "kind": "preempt",
    "startedAt": "2024-05-01T10:00:10Z",
    "criticality": "MEDIUM",
    "dryRun": True,
    "victims": ["vm-9", "vm-8"],
    "leftOut": 4,
    "outcome": "dry run",
}


def test_vms_say_what_each_kind_of_run_did() -> None:
    assert vms_cell(ACTED) == "2 stopped, 1 forced, 1 failed"
    assert vms_cell(RESUMED) == "1 resumed, 1 skipped"
    assert vms_cell(DRY) == "2 planned"
    assert vms_cell(SKIPPED) == "-"  # skipped before any plan
    assert vms_cell({"kind": "preempt", "victims": [], "outcome": "nothing to do"}) == "0 planned"
    no_vm_stopped: RunRecord = {
        "kind": "preempt",
        "stopped": [],
        "failed": [{"vm": "vm-1", "reason": "x"}],
    }
    assert vms_cell(no_vm_stopped) == "0 stopped, 1 failed"


def test_the_reason_names_each_failed_vm() -> None:
    assert reason_cell(ACTED) == "vm-3: InvalidPowerState"
    assert reason_cell(SKIPPED) == "within the cooldown"
    failed: RunRecord = {
        "reason": "no VM was stopped",
        "failed": [{"vm": "vm-1", "reason": "NoPermission"}],
    }
    assert reason_cell(failed) == "no VM was stopped; vm-1: NoPermission"
    assert reason_cell(RESUMED) == "-"


def test_one_workflows_table_lists_its_runs_oldest_first() -> None:
    rows = [HistoryRow("cpu/domain-c7", "r1", r) for r in (SKIPPED, ACTED)]
    lines = render_history(rows, workflow_column=False).splitlines()
    assert lines[0].split() == [
        "WHEN", "(UTC)", "RUN", "KIND", "CRITICALITY", "ACTION", "VMS", "OUTCOME", "REASON",
    ]  # fmt: skip
    assert lines[1].split("  ")[0] == "2024-05-01 10:00:00"
    assert " ".join(lines[1].split()) == (
        "2024-05-01 10:00:00 1 preempt HIGH powerOff 2 stopped, 1 forced, 1 failed acted "
        "vm-3: InvalidPowerState"
    )
    assert " ".join(lines[2].split()) == (
        "2024-05-01 10:00:30 2 preempt LOW - - skipped within the cooldown"
    )
    assert lines[3] == "2 run(s)."
    assert len(lines) == 4
    # Columns line up: every row's KIND starts where the header's does.
    column = lines[0].index("KIND")
    assert all(line[column:].startswith("preempt") for line in lines[1:3])


def test_across_workflows_each_row_names_its_workflow_and_runs_interleave_by_time() -> None:
    rows = [
        HistoryRow("cpu/domain-c7", "r1", ACTED),
        HistoryRow("cpu/domain-c7", "r1", SKIPPED),
        HistoryRow("mem/domain-c8", "r9", DRY),
        HistoryRow("cpu/domain-c7", "r1", RESUMED),
    ]
    text = render_history(rows, workflow_column=True, notes=["mem/x: no answer"])
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["WHEN", "(UTC)", "WORKFLOW", "RUN"]
    assert [line.split()[2] for line in lines[1:5]] == [
        "cpu/domain-c7", "mem/domain-c8", "cpu/domain-c7", "cpu/domain-c7",
    ]  # fmt: skip
    assert "preempt (dry run)" in lines[2] and "2 planned" in lines[2]
    assert "resume" in lines[4] and "1 resumed, 1 skipped" in lines[4]
    assert lines[5:] == ["4 run(s).", "mem/x: no answer"]


def test_no_runs_says_so() -> None:
    assert render_history([], workflow_column=False) == "No runs recorded."


def test_a_record_in_an_unknown_shape_reads_as_dashes_not_an_error() -> None:
    # Each field in a shape other than its own reads as absent (HistoryRow.run).
    odd = {"run": "one", "kind": 7, "startedAt": "yesterday", "stopped": "vm-1", "failed": [3]}
    [line] = render_history([HistoryRow("w", "r", odd)], workflow_column=False).splitlines()[1:2]
    assert line.split() == ["?", "?", "-", "-", "-", "-", "-", "-"]
    half = {**odd, "stopped": ["vm-1"], "failed": [{"vm": "vm-2", "reason": "x"}, 3]}
    [line] = render_history([HistoryRow("w", "r", half)], workflow_column=False).splitlines()[1:2]
    assert line.split() == ["?", "?", "-", "-", "-", "1", "stopped", "-", "-"]


def test_json_is_each_record_as_written_after_its_ids_in_time_order() -> None:
    rows = [HistoryRow("cpu/domain-c7", "r1", SKIPPED), HistoryRow("cpu/domain-c7", "r1", ACTED)]
    out = json.loads(go_json(history_json(rows)))
    assert [list(r)[:2] for r in out] == [["workflowID", "runID"]] * 2
    assert out[0] == {"workflowID": "cpu/domain-c7", "runID": "r1", **ACTED}
    assert out[1] == {"workflowID": "cpu/domain-c7", "runID": "r1", **SKIPPED}
    assert list(out[0])[2:] == list(ACTED)  # the record's own field order


def test_in_time_order_breaks_ties_by_workflow_then_run() -> None:
    same = "2024-05-01T10:00:00Z"
    rows = [
        HistoryRow("b", "r", {"run": 1, "startedAt": same}),
        HistoryRow("a", "r", {"run": 2, "startedAt": same}),
        HistoryRow("a", "r", {"run": 1, "startedAt": same}),
    ]
    assert [(r.workflow_id, r.record["run"]) for r in in_time_order(rows)] == [
        ("a", 1), ("a", 2), ("b", 1),
    ]  # fmt: skip


def test_the_heading_names_the_workflow_run_and_state() -> None:
    started = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert render_workflow_heading("cpu/domain-c7", "r1", "completed", started, now) == (
        "Workflow cpu/domain-c7 (run r1), completed, started 2024-05-01 09:00:00 UTC (1h00m ago)"
    )
