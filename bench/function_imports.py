"""What the function's start costs, layer by layer: memory and CPU of each import.

    PY -m bench.function_imports        # PY: an interpreter whose environment has the package
                                        # (as the image has it: the runtime lock, no dev tools)

Run from the repository's root, it starts PY once per measure (a fresh process each time) and
prints, for the modules the function loads in the order it loads them, the resident memory
(VmRSS) after each and the CPU its import took; then the Python heap the imports allocated
(tracemalloc), without and with the Temporal SDK; then which modules the app's import did not
load (pydantic, the Temporal SDK, ...). `--repeat N` takes the median of N processes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

# What `preemptctl function` imports, in its order: the event loop, the server (before it
# listens), the app and what it runs on (built in a thread once listening), then the Temporal
# SDK (connected in the background, unless TEMPORAL_CONNECT=first-use).
LAYERS = (
    "asyncio",
    "uvloop",
    "uvicorn",
    "vsphere_preemption.settings",
    "structlog",
    "prometheus_client",
    "vsphere_preemption.function.app",
    "temporalio.client",
)
NOT_LOADED = ("pydantic", "cloudevents", "dateutil", "yaml", "temporalio", "pyVmomi")

_LAYERS_CODE = """
import importlib, json, resource, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000
rows = [["(interpreter)", rss(), cpu()]]
for name in sys.argv[1:]:
    before = cpu()
    importlib.import_module(name)
    rows.append([name, rss(), cpu() - before])
print(json.dumps(rows))
"""

_HEAP_CODE = """
import json, sys, tracemalloc
tracemalloc.start()
import asyncio, uvicorn, vsphere_preemption.function.app
app_heap = tracemalloc.get_traced_memory()[0]
not_loaded = [m for m in sys.argv[1:] if m not in sys.modules]
import temporalio.client
print(json.dumps([app_heap / 2**20, tracemalloc.get_traced_memory()[0] / 2**20, not_loaded]))
"""


def measure(python: str, code: str, *args: str) -> Any:
    """What the measuring child printed, as JSON (its shape is the code's: see the callers)."""
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("python", nargs="?", default=sys.executable)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = [measure(args.python, _LAYERS_CODE, *LAYERS) for _ in range(args.repeat)]
    print(f"{args.python}, median of {args.repeat} processes:")
    print("| after importing | VmRSS | CPU of the import |")
    print("| --- | --- | --- |")
    for i, (name, _, _) in enumerate(runs[0]):
        rss = statistics.median(run[i][1] for run in runs)
        cpu = statistics.median(run[i][2] for run in runs)
        print(f"| `{name}` | {rss:.1f} MiB | {cpu:.0f} ms |")
    app_heap, sdk_heap, not_loaded = measure(args.python, _HEAP_CODE, *NOT_LOADED)
    print(f"Python heap (tracemalloc): {app_heap:.1f} MiB after the app, {sdk_heap:.1f} MiB "
          f"with temporalio.client")  # fmt: skip
    print(f"The app's import did not load: {', '.join(not_loaded)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
