"""The workflow's payloads against the bytes the Go worker wrote (tests/fixtures/go/).

The Go CLI's signal goes in byte for byte; what our workflow hands to the annotation,
to the VmPreemptedEvent and back as its result must be the Go worker's bytes, save the
values that differ per run (IDs, times, VMs), which are put in before comparing.
"""

from __future__ import annotations

import json
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import FIXTURES
from tests.temporal.helpers import signal_with_start, unique, wait_for
from tests.temporal.test_workflow import VM1, VM2, StandIns, has_run
from vsphere_preemption.rawjson import RawJSON
from vsphere_preemption.temporal.contracts import ANNOTATE_VMS, SEND_PREEMPTED_EVENT
from vsphere_preemption.temporal.workflow import PreemptVMsWorkflow
from vsphere_preemption.wire import ANNOTATION_EXTRAS, RESPONSE_EXTRAS, append_fields, go_json

GO = FIXTURES / "go"
GO_SIGNAL = (GO / "preemptctl-signal-WorkflowRequest.json").read_bytes()
GO_ANNOTATION = (GO / "worker-annotation.json").read_text()
GO_EVENT_DATA = (GO / "worker-VmPreemptedEvent-body.json").read_text()
GO_RESULT = (GO / "worker-result-WorkflowResponse.json").read_text()
GO_VMS = [
    {"Type": "VirtualMachine", "Value": "vm-68"},
    {"Type": "VirtualMachine", "Value": "vm-71"},
]


def as_ours(go_text: str, go_values: dict[str, Any], ours: dict[str, Any]) -> str:
    """The Go text with each per-run value (a top-level field) replaced by ours, as JSON."""
    for name, value in go_values.items():
        old = f'"{name}":{go_json(value).decode()}'
        assert go_text.count(old) == 1, f"{old} not once in the Go bytes"
        go_text = go_text.replace(old, f'"{name}":{go_json(ours[name]).decode()}')
    return go_text


def go_then_ours(go_text: str, ours_text: str) -> str:
    """The Go object's bytes with our extra fields (wire.RESPONSE_EXTRAS) appended after Go's."""
    ours = json.loads(ours_text)
    extras = {k: ours[k] for k in list(ours)[len(json.loads(go_text)) :]}
    assert set(extras) <= {*RESPONSE_EXTRAS, *ANNOTATION_EXTRAS, "history"}, extras
    return go_text if not extras else go_text[:-1] + "," + go_json(extras).decode()[1:]


async def test_go_signal_reaches_annotation_event_and_result_as_the_go_worker_wrote_them(
    temporal_client: Client,
) -> None:
    stand_ins = StandIns()
    queue = unique("wf-go-bytes")
    async with Worker(
        temporal_client, task_queue=queue, workflows=[PreemptVMsWorkflow],
        activities=stand_ins.activities(),
    ):  # fmt: skip
        handle = await signal_with_start(
            temporal_client, unique("alarm"), queue, RawJSON(GO_SIGNAL.decode())
        )
        await has_run(handle)
        await wait_for(lambda: bool(stand_ins.named(SEND_PREEMPTED_EVENT)), what="the event")
        await handle.cancel()
        await handle.result()

    go_annotation = json.loads(GO_ANNOTATION)
    annotation_json = stand_ins.named(ANNOTATE_VMS)[0].annotation_json
    ours = json.loads(annotation_json)
    per_run = {"workflowID": go_annotation["workflowID"],
               "workflowStarted": go_annotation["workflowStarted"]}  # fmt: skip
    # `caf\u00e9`, `1.50`, `1e3` and `<a&b>` as the Go worker keeps them, field order too.
    # ... then our one field, how the VM was stopped.
    go_bytes = as_ours(GO_ANNOTATION, per_run, ours)
    assert annotation_json == append_fields(go_bytes, {"action": "poweroff"})
    assert '"price":1.50,"big":1e3' in annotation_json

    data_json = stand_ins.named(SEND_PREEMPTED_EVENT)[0].data_json
    ours = json.loads(data_json)
    assert ours["virtualMachines"] == [{"Type": "VirtualMachine", "Value": v.value}
                                       for v in (VM1, VM2)]  # fmt: skip
    go_data = as_ours(GO_EVENT_DATA, {**per_run, "virtualMachines": GO_VMS}, ours)
    assert data_json == go_then_ours(go_data, data_json)
    assert ours["scope"] == "vcenter"  # the Go CLI's event names no alarmed entity

    history = await handle.fetch_history()
    completed = [e for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]  # fmt: skip
    payload = completed[0].workflow_execution_completed_event_attributes.result.payloads[0]
    assert payload.metadata["encoding"] == b"json/plain"
    result = payload.data.decode()
    go_result = json.loads(GO_RESULT)
    per_run_result = {
        name: go_result[name] for name in ("workflowID", "workflowRunID", "lastPreemptionTime")
    }
    expected = as_ours(GO_RESULT, {**per_run_result, "virtualMachines": GO_VMS},
                       json.loads(result))  # fmt: skip
    assert result == go_then_ours(expected, result)
    assert json.loads(result)["workflowRunID"] == handle.result_run_id
