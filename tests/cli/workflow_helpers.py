"""What the `preemptctl workflow` tests share: the CLI in-process, a workflow's history."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from vsphere_preemption.cli.main import main


async def cli(*argv: str) -> int:
    # main() runs asyncio.run(): keep it off the test's event loop.
    return await asyncio.to_thread(main, ["workflow", *argv])


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


async def history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return [event async for event in handle.fetch_history_events()]


def signals(events: list[HistoryEvent]) -> list[Any]:
    return [
        e.workflow_execution_signaled_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
