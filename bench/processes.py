"""Workers as processes of their own, for the side-by-side benchmarks: started, waited for
until they poll, their memory read, stopped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from vsphere_preemption.wire import DEFAULT_NAMESPACE

ROOT = Path(__file__).resolve().parent.parent  # `python -m bench.<module>` finds bench/ here


@dataclass
class Worker:
    name: str  # "ours" | "Go" | "floor"
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def start(self, common: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, **common, **self.env}
        with open(log, "ab") as out:
            return subprocess.Popen(
                self.command, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=ROOT,
            )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def polled(client: Client, task_queue: str, proc: subprocess.Popen[bytes]) -> None:
    """Until a worker polls `task_queue` for workflow tasks (it is connected and ready)."""
    request = DescribeTaskQueueRequest(
        namespace=DEFAULT_NAMESPACE,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        answer = await client.workflow_service.describe_task_queue(request)
        if answer.pollers:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no worker polled {task_queue} within 60 s")


def resident_mib(pid: int) -> int:
    """The process's resident memory now (VmRSS), MiB."""
    return resident(pid)["VmRSS"]


def resident(pid: int) -> dict[str, int]:
    """The process's resident memory now, MiB: all of it (VmRSS), then its anonymous part
    (RssAnon: heap, stacks, the interpreter's objects) and its file-backed part (RssFile: the
    pages of the program and its shared libraries now mapped). The file-backed part depends on
    the page cache too (a library whose pages were evicted maps fewer of them on loading), so
    it moves from run to run more than the anonymous part does."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "RssAnon", "RssFile"}:
            found[name] = int(value.split()[0]) // 1024
    if "VmRSS" not in found:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return found
