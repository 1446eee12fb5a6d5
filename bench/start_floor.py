"""How far the function's cold start is from its floor: process start to the first answer.

    .venv/bin/python -m bench.start_floor PY [--starts 7]

PY is an interpreter whose environment has the package as the image has it (the runtime
lock; its `preemptctl` beside it). Measured, one after the other, each the median (and the
fastest) of `--starts` fresh processes on a free loopback port:

- `PY -c pass`: the interpreter alone;
- an empty ASGI app (200 to anything) on uvicorn with the function's server options
  (httptools, uvloop, no lifespan, no access log): the server's own floor;
- `preemptctl function`, TEMPORAL_CONNECT=first-use and =start, to its 200 for an event of
  another alarm (Temporal unreachable: the answer needs none).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.function_load import event_files
from bench.side_by_side import event_request
from vsphere_preemption.devtools.devservers import free_port

EMPTY_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop",
            lifespan="off", ws="none", access_log=False, log_config=None, log_level="warning")
"""


def first_answer(
    command: list[str], port: int, env: dict[str, str], request: tuple[str, dict[str, str], bytes]
) -> float:
    """Milliseconds from starting `command` to its first 200 to `request` on `port`."""
    method, headers, body = request
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request(method, "/", body, headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return (time.perf_counter() - started) * 1000
            except OSError:
                if proc.poll() is not None:
                    sys.exit(f"{command}: exited with {proc.returncode}")
                time.sleep(0.001)
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("python")
    parser.add_argument("--starts", type=int, default=7)
    args = parser.parse_args()
    headers, body = event_request(event_files(Path(tempfile.mkdtemp()), "other", "other"))
    env = {
        **os.environ,
        "TEMPORAL_URL": "127.0.0.1:1",  # nothing listens: an ignored event needs no Temporal
        "TEMPORAL_NAMESPACE": "vsphere-preemption",
        "TEMPORAL_TASKQUEUE": "vsphere-preemption",
        "VSPHERE_PREEMPTION_TAG": "preemptible",
        "VSPHERE_ALARM_NAME": "bench-alarm",
        "MALLOC_ARENA_MAX": "2",
    }
    preemptctl = str(Path(args.python).parent / "preemptctl")
    print(f"{args.python}; median (fastest) of {args.starts} starts; load {os.getloadavg()}")
    print("| process | start to first 200 |")
    print("| --- | --- |")
    cases = [("`python -c pass` (to its exit)", None, {}),
             ("an empty ASGI app on uvicorn (httptools, uvloop)",
              [args.python, "-c", EMPTY_APP], {}),
             ("`preemptctl function`, TEMPORAL_CONNECT=first-use", [preemptctl, "function"],
              {"TEMPORAL_CONNECT": "first-use"}),
             ("`preemptctl function`, TEMPORAL_CONNECT=start", [preemptctl, "function"],
              {"TEMPORAL_CONNECT": "start"})]  # fmt: skip
    for label, command, extra in cases:
        times = []
        for _ in range(args.starts):
            port = free_port()
            if command is None:
                started = time.perf_counter()
                subprocess.run([args.python, "-c", "pass"], check=True)
                times.append((time.perf_counter() - started) * 1000)
            elif "function" in command:
                full = [*command, "--host", "127.0.0.1", "--port", str(port)]
                times.append(first_answer(full, port, {**env, **extra}, ("POST", headers, body)))
            else:
                times.append(first_answer([*command, str(port)], port, env, ("GET", {}, b"")))
        print(f"| {label} | {statistics.median(times):.0f} ms ({min(times):.0f} ms) |")
    print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
