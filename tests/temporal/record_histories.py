"""Record the workflow histories that tests/temporal/test_replay.py replays.

    .venv/bin/python -m tests.temporal.record_histories

Runs the real worker (settings, vSphere activities) against vcsim and a Temporal
dev server of its own, drives one workflow per scenario to completion, and writes
each history to tests/fixtures/histories/<scenario>.json. Re-record only when a
change is meant to break old histories (and then guard it with workflow.patched).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from tests.temporal.helpers import (
    eventually,
    query_state,
    signal_payload,
    signal_with_start,
    wait_for,
)
from tests.temporal.rig import (
    client_for,
    prepare,
    running_worker,
    vcsim_args,
    worker_env,
    write_secret,
)
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME

HISTORIES = Path(__file__).parent.parent / "fixtures" / "histories"

Scenario = Callable[[Client, str, EventSink], Awaitable[WorkflowHandle[Any, Any]]]


async def _ran(handle: WorkflowHandle[Any, Any]) -> None:
    async def state() -> dict[str, Any]:
        return await query_state(handle)

    await eventually(state, lambda s: s["virtualMachines"] is not None, what="a run")


async def hard_run_skip_bad_signal_cancel(
    client: Client, task_queue: str, sink: EventSink
) -> WorkflowHandle[Any, Any]:
    """HIGH run with an event, a skipped signal, an undecodable one, then cancel."""
    handle = await signal_with_start(
        client, "cluster-cpu-above-80", task_queue, signal_payload(replyTo=sink.url)
    )
    await _ran(handle)
    await wait_for(lambda: len(sink.received) == 1, what="the event")
    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo=""))
    await handle.signal(SIGNAL_NAME, {"tag": "", "criticality": "HIGH"})
    await asyncio.sleep(2)  # let both be processed before the cancel
    await handle.cancel()
    await handle.result()
    return handle


async def soft_run_after_a_missing_tag(
    client: Client, task_queue: str, sink: EventSink
) -> WorkflowHandle[Any, Any]:
    """A tag that does not exist (non-retryable), then a LOW run, then cancel."""
    handle = await signal_with_start(
        client, "host-mem-above-90", task_queue, signal_payload(tag="no-such-tag", replyTo="")
    )
    await asyncio.sleep(2)
    await handle.signal(SIGNAL_NAME, signal_payload(criticality="LOW", replyTo=""))
    await _ran(handle)
    await handle.cancel()
    await handle.result()
    return handle


SCENARIOS: dict[str, Scenario] = {
    "hard_run_skip_bad_signal_cancel": hard_run_skip_bad_signal_cancel,
    "soft_run_after_a_missing_tag": soft_run_after_a_missing_tag,
}


async def record() -> None:
    HISTORIES.mkdir(parents=True, exist_ok=True)
    with TemporalDevServer() as server, tempfile.TemporaryDirectory() as tmp:
        client = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
        for name, scenario in SCENARIOS.items():
            with Vcsim(args=vcsim_args()) as sim, client_for(sim) as vcenter:
                prepare(Inventory(vcenter), on=3, off=1)
                secret = write_secret(Path(tmp) / name, sim)
                env = worker_env(sim, secret, server.address, f"record-{name}")
                with EventSink() as sink:
                    async with running_worker(env):
                        handle = await scenario(client, f"record-{name}", sink)
                history = await handle.fetch_history()
            target = HISTORIES / f"{name}.json"
            target.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
            print(f"wrote {target} ({len(history.events)} events)")


if __name__ == "__main__":
    asyncio.run(record())
