"""Benchmark: how fast one workflow absorbs a flood of raising signals, how long its runs'
histories grow, and how long the largest one takes to replay.

    .venv/bin/python -m bench.signal_storm [--signals 3000] [--concurrency 64] [--bursts 1]

Before/after: the same script with another checkout's code first on the path, for example
`PYTHONPATH=/work/main/src .venv/bin/python -m bench.signal_storm`; the worker process inherits
it, and the replay uses the same code.

All real, on loopback: a Temporal dev server, vcsim, and `python -m vsphere_preemption worker` as
its own process (cooldown 1 h: after the first run, every raise is a run skipped at once, the
cheapest thing a signal can cost). One workflow is started and acts once; then, per burst,
`--signals` distinct raising signals (the Go function's, an AlarmStatusChangedEvent inside) are
sent straight to it over `--concurrency` client calls at once, followed by one marked signal.
Measured:
- signals/s absorbed: the burst's signals over the time from its first send until the workflow
  has taken the marked one in (its run record is the newest; `--deadline` s at most, else the
  workflow is reported wedged);
- the `current_state` query's time after the flood;
- every run's history length (continue-as-new makes a new run), failed workflow tasks (not the
  server's own flush), and the replay time of the longest run's history with today's workflow
  code (median of `--replays`).

`--replay FILE` only replays a history saved with `--save FILE` (median of `--replays`), so
that before and after can be replayed one right after the other on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from bench.machine import machine, quiet_logs
from bench.worker_preempt import config_for, signal
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.worker_process import WorkerProcess
from vsphere_preemption.temporal.workflow import PreemptVMsWorkflow
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.wire import DEFAULT_NAMESPACE, SIGNAL_NAME, WORKFLOW_TYPE

INVENTORY = ("-cluster", "1", "-host", "2", "-vm", "4")


async def wait_for(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = await probe()
        except Exception:  # noqa: BLE001 (a query that times out: ask again)
            got = None
        if got:
            return got
        await asyncio.sleep(0.05)
    return None


async def newest_event_id(handle: WorkflowHandle[Any, Any]) -> str:
    runs = json.loads(await handle.query("history", rpc_timeout=timedelta(seconds=5)))
    return str(runs[-1].get("eventID", "")) if runs else ""


async def _served(handle: WorkflowHandle[Any, Any], mark: str) -> bool:
    return await newest_event_id(handle) == mark


async def run_histories(client: Client, workflow_id: str, first_run: str) -> list[WorkflowHistory]:
    """Every run's history, first to latest (continue-as-new)."""
    out: list[WorkflowHistory] = []
    run_id: str | None = first_run
    while run_id is not None:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        out.append(history)
        last = history.events[-1]
        run_id = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return out


def task_failures(history: WorkflowHistory) -> int:
    """Failed workflow tasks of the workflow's code (not the history service's own flush)."""
    flush = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and not (
            e.workflow_task_failed_event_attributes.cause == flush
            and e.workflow_task_failed_event_attributes.identity == "history-service"
        )
    )


async def replay_seconds(history: WorkflowHistory, times: int) -> tuple[float, str]:
    """Median seconds to replay `history` with today's workflow code; the failure, if any."""
    seconds = []
    failure = ""
    for _ in range(times):
        started = time.perf_counter()
        result = await Replayer(workflows=[PreemptVMsWorkflow]).replay_workflow(
            history, raise_on_replay_failure=False
        )
        seconds.append(time.perf_counter() - started)
        if result.replay_failure is not None:
            failure = str(result.replay_failure)
    return statistics.median(seconds), failure


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with (
        TemporalDevServer() as server,
        Vcsim(args=INVENTORY) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        secret = Path(tmp) / "vsphere"
        secret.mkdir()
        (secret / "username").write_text(sim.username)
        (secret / "password").write_text(sim.password)
        admin = VSphereClient(config_for(sim), poll_interval=0.1)
        inventory = Inventory(admin)
        tag = f"storm-{uuid.uuid4().hex[:6]}"
        inventory.tag(tag, [s.ref for s in inventory.vms()][:1])
        admin.close()
        task_queue = f"storm-{uuid.uuid4().hex[:8]}"
        env = {
            "TEMPORAL_URL": server.address, "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
            "TEMPORAL_TASKQUEUE": task_queue, "VCENTER_URL": sim.url, "VCENTER_INSECURE": "true",
            "VCENTER_SECRET_PATH": str(secret), "PREEMPTION_COOLDOWN": "1h",
            "PREEMPTION_SCOPE": "vcenter", "PREEMPTION_NOTICE_HIGH": "0",
        }  # fmt: skip
        log = Path(tmp) / "worker.log"
        worker = WorkerProcess(env, log).start()
        client = await Client.connect(server.address, namespace=DEFAULT_NAMESPACE)
        base = signal(tag)
        workflow_id = f"storm-{uuid.uuid4().hex[:6]}"
        try:
            handle: WorkflowHandle[Any, Any] = await client.start_workflow(
                WORKFLOW_TYPE, id=workflow_id, task_queue=task_queue,
                start_signal=SIGNAL_NAME, start_signal_args=[base],
            )  # fmt: skip
            first = await wait_for(lambda: newest_event_id(handle), 60)
            if not first:
                raise RuntimeError("the first run never ended")
            first_run = (await handle.describe()).run_id
            assert first_run is not None
            limit = asyncio.Semaphore(args.concurrency)

            async def one(name: str) -> None:
                payload = copy.deepcopy(base)
                payload["event"]["id"] = name
                async with limit:
                    await handle.signal(SIGNAL_NAME, payload)

            rates: list[float] = []
            wedged = False
            if args.senders:
                # As function replicas send under a storm (function/signal_lines.py): each one
                # signal at a time, the next no sooner than --spacing after the one before.
                async def sender(number: int, until: float) -> int:
                    count = 0
                    while (now := time.monotonic()) < until:
                        await one(f"s{number}-{count}")
                        count += 1
                        await asyncio.sleep(max(0.0, now + args.spacing - time.monotonic()))
                    return count

                started = time.monotonic()
                until = started + args.seconds
                counts = await asyncio.gather(*(sender(n, until) for n in range(args.senders)))
                await one("end-of-storm")
                if not await wait_for(lambda: _served(handle, "end-of-storm"), args.deadline):
                    wedged = True
                rates.append((sum(counts) + 1) / (time.monotonic() - started))
                print(f"paced: {sum(counts)} signals in {args.seconds} s", flush=True)
            for burst in range(0 if args.senders else args.bursts):
                started = time.monotonic()
                await asyncio.gather(*(one(f"b{burst}-{n}") for n in range(args.signals)))
                sent = time.monotonic() - started
                mark = f"end-of-burst-{burst}"
                await one(mark)

                async def served(mark: str = mark) -> bool:
                    return await newest_event_id(handle) == mark

                if not await wait_for(served, args.deadline):
                    wedged = True
                    print(f"burst {burst}: not served within {args.deadline} s", flush=True)
                    break
                seconds = time.monotonic() - started
                rates.append((args.signals + 1) / seconds)
                print(f"burst {burst}: sent in {sent:.2f} s, served in {seconds:.2f} s "
                      f"({rates[-1]:.0f} signals/s)", flush=True)  # fmt: skip
            query_started = time.monotonic()
            try:
                await handle.query("current_state", rpc_timeout=timedelta(seconds=10))
                query_s: float | None = time.monotonic() - query_started
            except Exception:  # noqa: BLE001 (a wedged workflow does not answer)
                query_s = None
            histories = await run_histories(client, workflow_id, first_run)
            await handle.terminate("benchmark done")
        finally:
            worker.stop()
        text = log.read_text(errors="replace")
    longest = max(histories, key=lambda h: len(h.events))
    replay_s, failure = await replay_seconds(longest, args.replays)
    if args.save is not None:
        args.save.write_text(longest.to_json())
    return {
        "signals_per_burst": args.signals,
        "bursts_served": len(rates),
        "wedged": wedged,
        "signals_per_second": [round(r) for r in rates],
        "query_s": None if query_s is None else round(query_s, 3),
        "run_lengths": [len(h.events) for h in histories],
        "failed_workflow_tasks": sum(task_failures(h) for h in histories),
        "deadlocks_in_worker_log": text.count("TMPRL1101"),
        "longest_run_events": len(longest.events),
        "longest_run_bytes": len(longest.to_json()),
        "replay_longest_s": round(replay_s, 3),
        "replay_failure": failure[:200],
        **machine(),
    }


async def replay_only(path: Path, times: int) -> dict[str, Any]:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    seconds, failure = await replay_seconds(history, times)
    return {"history": str(path), "events": len(history.events), "replays": times,
            "replay_median_s": round(seconds, 3), "replay_failure": failure[:200],
            **machine()}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--bursts", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--replays", type=int, default=3)
    parser.add_argument("--senders", type=int, default=0, help="paced senders instead of bursts")
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds, per paced sender")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long they send")
    parser.add_argument("--replay", type=Path, help="only replay this saved history (JSON)")
    parser.add_argument("--save", type=Path, help="write the longest run's history here (JSON)")
    args = parser.parse_args(argv)
    quiet_logs()
    if args.replay is not None:
        print(json.dumps(asyncio.run(replay_only(args.replay, args.replays)), indent=1))
        return 0
    print(json.dumps(asyncio.run(bench(args)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
