"""Stored histories replay against today's workflow code (determinism guard).

The histories in tests/fixtures/histories/ were recorded from real runs
(tests/temporal/record_histories.py). A change to PreemptVMsWorkflow that would
break a workflow already open in production fails here; guard such a change with
`workflow.patched`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.common import RawValue
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from tests.temporal.rig import SECRET
from vsphere_preemption.domain.model import PowerOffOutcome, VmRef
from vsphere_preemption.temporal.workflow import PreemptVMsWorkflow
from vsphere_preemption.wire import Annotation

HISTORIES = sorted((Path(__file__).parent.parent / "fixtures" / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_there_are_histories_to_replay() -> None:
    assert {p.stem for p in HISTORIES} >= {
        "hard_run_skip_bad_signal_cancel",
        "soft_run_after_a_missing_tag",
        "plan_run_on_a_cluster_then_dry_run_cancel",  # select-by-plan
        "care_notice_suspend_cancel_then_resume",  # act-with-care
        "known_cooldown_skips_without_a_policy_read",  # known-cooldown
        # alarm-lifetime, and a run that continued as new (its memory the next run's input)
        "resume_interrupted_continues_as_new_then_expires",
        "resume_interrupted_continues_as_new_then_expires.2",
        "storm_proof_continues_as_new_while_idle",  # storm-proof
        "storm_of_raises_taken_together",  # storm-proof
        "loop_rounds_until_no_candidate_then_cancel",  # until-relieved
        "pause_held_then_released",  # pause-switch
        "pauses_read_in_plan_held_then_released",  # pauses-in-plan
        # folded-patches: one marker for all, in a run that continued as new too
        "folded_patches_pause_in_round_two_then_resume",
        "folded_patches_resume_continues_as_new_then_expires.2",
        "folded_patches_care_notice_suspend_cancel_then_resume",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_stored_history_replays_with_todays_workflow(path: Path) -> None:
    result = await Replayer(workflows=[PreemptVMsWorkflow]).replay_workflow(load(path))
    assert result.replay_failure is None


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_stored_history_carries_no_secret_and_completes(path: Path) -> None:
    text = path.read_text()
    assert SECRET not in text
    events = json.loads(text)["events"]
    # Completed, or continued as new (a run of a long-lived workflow ends so).
    assert events[-1]["eventType"] in {
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
        "EventTypeWorkflowExecutionCompleted",
        "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
        "EventTypeWorkflowExecutionContinuedAsNew",
    }


@workflow.defn(name="PreemptVMsWorkflow", sandboxed=False)
class SkipsTheAnnotation(PreemptVMsWorkflow):
    """A careless change: the same workflow without its annotation step, unguarded."""

    @workflow.run
    async def run(self, carried: str | None = None) -> RawValue:
        return await super().run(carried)

    async def _annotate(self, outcome: PowerOffOutcome, annotation: Annotation) -> dict[VmRef, str]:
        return {}


async def test_a_careless_change_fails_the_replay() -> None:
    # The guard has teeth: the recorded AnnotateVms no longer matches what the code does.
    history = load(next(p for p in HISTORIES if p.stem == "hard_run_skip_bad_signal_cancel"))
    with pytest.raises(NondeterminismError):
        await Replayer(workflows=[SkipsTheAnnotation]).replay_workflow(history)
