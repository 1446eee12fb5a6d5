"""What the workflow sandbox costs per workflow, and what decoding an activity's result costs.

    .venv/bin/python -m bench.workflow_sandbox [--instances 40] [--vms 10]

In this process, no server: the Temporal SDK's sandboxed runner, as the worker builds it,
creates `--instances` instances of PreemptVMsWorkflow one after the other (what the worker does
for every new workflow, and again for one evicted from its cache: the sandbox imports the
workflow module afresh, the modules passed through excepted), then keeps `--instances` of them
alive (a cached workflow's memory). Measured:
- **instance creation** (ms, median and fastest), once as the process finds the package (with
  its bytecode, or without when PYTHONDONTWRITEBYTECODE left none), and once in a child process
  that finds no bytecode at all (PYTHONPYCACHEPREFIX an empty directory, PYTHONDONTWRITEBYTECODE
  set): the workflow module is then compiled from source for every instance;
- the same with the workflow module itself passed through (not what the worker does: shown
  for what the sandbox's isolation costs), and without a sandbox;
- **memory per instance kept** (KiB the Python allocator holds for it, tracemalloc);
- **decoding a PowerOffOutcome** of `--vms` VMs with the SDK's default converter (µs): what a
  workflow task pays for the power-off's result (`typing.get_type_hints` on every dataclass
  of the payload).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import temporalio.converter
import temporalio.workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker._workflow_instance import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._runner import _fake_info

from vsphere_preemption.domain.model import PowerOffOutcome, VmMark, VmRef
from vsphere_preemption.temporal.workflow import PreemptVMsWorkflow

DEFN = temporalio.workflow._Definition.must_from_class(PreemptVMsWorkflow)
RUNNERS: dict[str, WorkflowRunner] = {
    "sandboxed (as the worker runs it)": SandboxedWorkflowRunner(),
    "sandboxed, the workflow module passed through too": SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            PreemptVMsWorkflow.__module__
        )
    ),
    "no sandbox": UnsandboxedWorkflowRunner(),
}


def details() -> WorkflowInstanceDetails:
    converter = temporalio.converter.DataConverter.default
    return WorkflowInstanceDetails(
        payload_converter_factory=converter._new_payload_converter,
        failure_converter_class=converter.failure_converter_class,
        interceptor_classes=[],
        defn=DEFN,
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )


async def instances(count: int) -> dict[str, dict[str, float]]:
    """Per runner: creation ms (median, fastest) and KiB per instance kept."""
    found: dict[str, dict[str, float]] = {}
    for name, runner in RUNNERS.items():
        runner.prepare_workflow(DEFN)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            runner.create_instance(details())
            times.append((time.perf_counter() - started) * 1000)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept: list[Any] = [runner.create_instance(details()) for _ in range(count)]
        gc.collect()
        per_instance = (tracemalloc.get_traced_memory()[0] - before) / count / 1024
        tracemalloc.stop()
        del kept
        found[name] = {
            "median_ms": statistics.median(times),
            "fastest_ms": min(times),
            "kib_per_instance": per_instance,
        }
    return found


def decoding(vms: int, repeats: int = 200) -> float:
    """Median µs to decode a PowerOffOutcome of `vms` VMs, as a workflow task does."""
    refs = [VmRef(f"vm-{i}") for i in range(vms)]
    marks = [VmMark(r, "1", "host-1", "resgroup-1", "poweredOff") for r in refs]
    converter = temporalio.converter.DataConverter.default.payload_converter
    payloads = converter.to_payloads([PowerOffOutcome(powered_off=refs, marks=marks)])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        converter.from_payloads(payloads, [PowerOffOutcome])
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def measure(count: int, vms: int) -> dict[str, Any]:
    return {"instances": asyncio.run(instances(count)), "decode_us": decoding(vms)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="this process's figures, as JSON")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(measure(args.instances, args.vms)))
        return 0
    with tempfile.TemporaryDirectory(prefix="no-bytecode-") as empty:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        child = subprocess.run(
            [sys.executable, "-m", "bench.workflow_sandbox", "--json",
             "--instances", str(args.instances), "--vms", str(args.vms)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    runs = {"no bytecode anywhere": json.loads(child.stdout),
            "as this process finds the package": measure(args.instances, args.vms)}  # fmt: skip
    print(f"{args.instances} instances of PreemptVMsWorkflow one after the other, then "
          f"{args.instances} kept; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("")
    print("| bytecode | runner | creation, median (fastest) | memory per instance kept |")
    print("| --- | --- | --- | --- |")
    for where, figures in runs.items():
        for name, f in figures["instances"].items():
            print(f"| {where} | {name} | {f['median_ms']:.2f} ms ({f['fastest_ms']:.2f}) | "
                  f"{f['kib_per_instance']:.0f} KiB |")  # fmt: skip
    print("")
    for where, figures in runs.items():
        print(f"decoding a PowerOffOutcome of {args.vms} VMs ({where}): "
              f"{figures['decode_us']:.0f} µs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
