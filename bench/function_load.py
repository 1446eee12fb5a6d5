"""Load and cold-start benchmark of `preemptctl function` against a real Temporal dev server.

    .venv/bin/python bench/function_load.py [--python PY] [--duration 10] [--connections 32]

What it measures, on loopback, each figure printed with the exact command that made it:

1. cold start: process start to the first `/health/readiness` 200 (the Temporal client
   connected), median of several runs; also to the first `/health/liveness` 200;
2. sustained events/s with `wrk` (bench/cloudevent.lua, binary-mode CloudEvents):
   (a) events of another alarm (decoded, decided, ignored) and (b) raising events of the
   configured alarm (each one a signal-with-start round trip to Temporal);
3. latency at a fixed 1,000 events/s offered, with `oha -q 1000` (wrk cannot hold a rate),
   for (a) and (b);
4. resident memory of the function after the load (/proc/<pid>/status VmRSS and VmHWM).

`--python` picks the interpreter that runs the function: the default is this one (the dev
venv); a venv with only the runtime dependencies (`pip install .`) is what the image runs.
Needs `wrk` (apt-get install wrk) and `oha` (cargo install oha) on PATH or ~/.cargo/bin.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vsphere_preemption.devtools.devservers import TemporalDevServer, free_port
from vsphere_preemption.wire import DEFAULT_NAMESPACE

HERE = Path(__file__).parent
FIXTURES = HERE.parent / "tests" / "fixtures"
ALARM = "bench-cluster-cpu-above-80"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path.home() / ".cargo" / "bin"))
    if not found:
        sys.exit(f"{name} is not installed (wrk: apt-get install wrk; oha: cargo install oha)")
    return found


def event_files(workdir: Path, alarm: str, name: str) -> tuple[Path, Path]:
    """A binary-mode AlarmStatusChangedEvent (new shape) for `alarm`, green to red."""
    data = json.loads(
        (FIXTURES / "05_AlarmStatusChangedEvent_data_green-to-yellow.json").read_text()
    )
    data["Alarm"]["Name"] = alarm
    data["To"] = "red"
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "bench-0",
        "ce-source": "https://vcsa.mydomain.com/sdk",
        "ce-type": "com.vmware.vsphere.AlarmStatusChangedEvent.v0",
        "ce-time": "2024-05-14T09:31:27.123999Z",
        "ce-eventclass": "event",
        "ce-vsphereapiversion": "8.0.2.0",
    }
    header_file = workdir / f"{name}.headers"
    body_file = workdir / f"{name}.json"
    header_file.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
    body_file.write_text(json.dumps(data, indent=2))
    return header_file, body_file


def get_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def function_env(temporal: str, queue: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_URL": temporal,
        "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "TEMPORAL_TASKQUEUE": queue,
        "VSPHERE_PREEMPTION_TAG": "preemptible",
        "VSPHERE_ALARM_NAME": ALARM,
        "PORT": str(port),
        "DEBUG": "false",
    }


def spawn(python: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [python, "-m", "vsphere_preemption", "function", "--host", "127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cold_start(python: str, temporal: str, runs: int) -> dict[str, list[float]]:
    """Seconds from process start to the first liveness and readiness 200, per run."""
    times: dict[str, list[float]] = {"liveness": [], "readiness": []}
    for _ in range(runs):
        port = free_port()
        env = function_env(temporal, "bench-cold", port)
        started = time.perf_counter()
        proc = spawn(python, env)
        try:
            alive = None
            while True:
                if proc.poll() is not None:
                    sys.exit(f"the function exited with {proc.returncode} during cold start")
                if alive is None and get_status(port, "/health/liveness") == 200:
                    alive = time.perf_counter() - started
                if alive is not None and get_status(port, "/health/readiness") == 200:
                    times["readiness"].append(time.perf_counter() - started)
                    times["liveness"].append(alive)
                    break
                time.sleep(0.002)
        finally:
            stop(proc)
    return times


def run(command: Sequence[str], env: dict[str, str] | None = None) -> str:
    print("$", " ".join(command), file=sys.stderr)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def wrk(url: str, headers: Path, body: Path, duration: int, connections: int) -> dict[str, Any]:
    env = {**os.environ, "WRK_EVENT_HEADERS": str(headers), "WRK_EVENT_BODY": str(body)}
    command = [
        tool("wrk"), "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
        "-s", str(HERE / "cloudevent.lua"), url,
    ]  # fmt: skip
    out = run(command, env)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"non2xx=(\d+) errors=(\d+)", out)
    assert failed is not None
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    return {
        "command": "wrk " + " ".join(command[1:-1]).replace(str(HERE) + "/", "bench/") + " <url>",
        "rps": rps,
        "p50": latency.get("50"),
        "p99": latency.get("99"),
        "non2xx": int(failed.group(1)),
        "errors": int(failed.group(2)),
    }


def oha(url: str, headers: Path, body: Path, rate: int, seconds: int) -> dict[str, Any]:
    # --latency-correction: latency counts from when a request was due, not when it was sent
    # (no coordinated omission when the server falls behind the offered rate).
    command = [tool("oha"), "--no-tui", "--output-format", "json", "--latency-correction",
               "-q", str(rate), "-z", f"{seconds}s", "-c", "64", "-m", "POST"]  # fmt: skip
    shown = " ".join(command[1:]) + " -D <event.json> -H <each ce-* header> <url>"
    command += ["-D", str(body)]
    for line in headers.read_text().splitlines():
        command += ["-H", line]
    out = json.loads(run([*command, url]))
    summary, percentiles = out["summary"], out["latencyPercentiles"]
    return {
        "command": f"oha {shown}",
        "rps": summary["requestsPerSec"],
        "success": summary["successRate"],
        "p50_ms": percentiles["p50"] * 1000,
        "p99_ms": percentiles["p99"] * 1000,
        "statuses": out.get("statusCodeDistribution", {}),
    }


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0]) // 1024  # MiB
    return fields


def signals_in_history(temporal: str, workflow_id: str) -> int:
    out = run([str(Path(sys.executable).parent / "temporal"), "workflow", "describe",
               "--address", temporal, "--namespace", DEFAULT_NAMESPACE, "-w", workflow_id,
               "-o", "json"])  # fmt: skip
    return int(json.loads(out)["workflowExecutionInfo"]["historyLength"])


def terminate(temporal: str, workflow_id: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), "workflow", "terminate",
         "--address", temporal, "--namespace", DEFAULT_NAMESPACE, "-w", workflow_id,
         "--reason", "bench"],
        capture_output=True, check=False,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--python", default=sys.executable, help="interpreter for the function")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-starts", type=int, default=9)
    parser.add_argument("--rate-seconds", type=int, default=5, help="seconds per oha run")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "python": args.python,
        "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "(unset)"),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        TemporalDevServer(log_file=Path(tmp) / "temporal.log") as temporal,
    ):
        workdir = Path(tmp)
        other = event_files(workdir, "some-other-alarm", "other")
        mine = event_files(workdir, ALARM, "mine")

        times = cold_start(args.python, temporal.address, args.cold_starts)
        results["cold_start"] = {
            name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
            for name, v in times.items()
        }

        port = free_port()
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        proc = spawn(args.python, function_env(temporal.address, queue, port))
        try:
            while get_status(port, "/health/readiness") != 200:
                if proc.poll() is not None:
                    sys.exit("the function exited before it was ready")
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port}/"
            results["rss_idle"] = memory(proc.pid)
            wrk(url, *other, 2, args.connections)  # warm-up
            results["wrk_ignored"] = wrk(url, *other, args.duration, args.connections)
            results["rss_after_wrk_ignored"] = memory(proc.pid)
            results["wrk_raising"] = wrk(url, *mine, args.duration, args.connections)
            results["rss_after_wrk_raising"] = memory(proc.pid)
            results["raising_history_length"] = signals_in_history(temporal.address, ALARM)
            terminate(temporal.address, ALARM)
            results["oha_ignored"] = oha(url, *other, 1000, args.rate_seconds)
            results["rss_after_oha_ignored"] = memory(proc.pid)
            results["oha_raising"] = oha(url, *mine, 1000, args.rate_seconds)
            terminate(temporal.address, ALARM)
            results["rss_after_load"] = memory(proc.pid)
        finally:
            stop(proc)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
