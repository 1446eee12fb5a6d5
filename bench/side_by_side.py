"""The function against the Go original, side by side, on one machine in one run.

    .venv/bin/python -m bench.side_by_side --go-function DIR [--python PY] [--before PY]
        [--first-use] [--granian PY] [--oversized 60]
        [--rounds 3] [--duration 10] [--rate-seconds 5] [--cold-starts 5] [--go-worker DIR]

DIR is the Go function's source (`examples/knative/go/kn-go-preemption` of
vmware-samples/vcenter-event-broker-appliance); it is built here with `go build` (its modules
from the Go module proxy) into a temporary directory, never into this repository. Both
functions run against one real Temporal dev server, on loopback, one at a time: each round
measures ours and then Go's (the order swaps every round, so that neither always runs on a
warmer or a busier machine), and the table gives the median over the rounds:

- sustained events/s with `wrk -c32` (bench/cloudevent.lua): (a) events of another alarm
  (decided and ignored) and (b) raising events of the configured alarm (each a
  signal-with-start; both functions address one workflow per alarm, WORKFLOW_ID_MODE=alarm
  for ours, as Go does);
- p99 latency of (a) at 1,000 events/s offered (`oha -q 1000`, latency counted from when each
  request was due);
- process start to the first 2xx: to the answer to an event of another alarm (POST /) for both,
  and to /health/liveness and to /health/readiness (connected to Temporal, unless it connects
  on first use) for ours (Go's receiver has no health paths); ours is started as the image
  starts it, `preemptctl function` from the interpreter's environment;
- resident memory (VmRSS) idle (2 s after the first answer: connected to Temporal, unless it
  connects on first use) and after the load (ours with MALLOC_ARENA_MAX=2, as the image runs
  it);
- with `--oversized N`, N POSTs of a 2 MiB event with two busy loops beside the program: how
  many got their 413 whole (the body sent, the answer read, then the end of the connection)
  rather than a broken pipe or a reset.

`--first-use` adds ours with TEMPORAL_CONNECT=first-use (the Temporal SDK loaded and connected
when an event first needs it), `--granian PY` ours served by granian instead of uvicorn
(bench/granian_function.py, run by PY, whose environment has granian), each a column of its
own, measured in every round like the others.

With `--before PY` (an interpreter whose environment has an earlier version of ours installed)
that version runs in every round too, and the table gets a column for it: before and after
measured on the same machine at the same time.

With `--go-worker DIR` (the Go worker's source) the worker side by side follows in the same
command: bench/side_by_side_worker.py with the same `--rounds` and `--python`.

The load average before and after each round is printed with it: the figures are only as
fair as the machine was quiet. Needs `go` and `wrk`, and `oha` for the p99 row (see
bench/function_load.py; without it the row is left out).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import side_by_side_worker
from bench.function_load import event_files, memory, oha, stop, tool, wrk
from bench.go_originals import build_go
from bench.machine import loadavg
from vsphere_preemption.devtools.devservers import TemporalDevServer, free_port
from vsphere_preemption.wire import DEFAULT_NAMESPACE

TEMPORAL_CLI = Path(sys.executable).parent / "temporal"


HERE = Path(__file__).parent
OURS = ("ours", "ours, first-use", "ours on granian", "before")


@dataclass
class Program:
    name: str  # "Go" or one of OURS
    command: list[str]
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self, temporal: str, alarm: str, port: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "TEMPORAL_URL": temporal,
            "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
            "TEMPORAL_TASKQUEUE": f"bench-{uuid.uuid4().hex[:8]}",
            "VSPHERE_PREEMPTION_TAG": "preemptible",
            "VSPHERE_ALARM_NAME": alarm,
            "WORKFLOW_ID_MODE": "alarm",  # Go's one workflow per alarm (ours only reads it)
            "PORT": str(port),
            "DEBUG": "false",
        }
        if self.name != "Go":
            env["MALLOC_ARENA_MAX"] = "2"  # as the image runs ours (Dockerfile)
        env.update(self.extra_env)
        return subprocess.Popen(
            self.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def request(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request(method, path, body=body, headers=headers)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def event_request(files: tuple[Path, Path]) -> tuple[dict[str, str], bytes]:
    header_file, body_file = files
    headers = dict(
        line.split(": ", 1) for line in header_file.read_text().splitlines() if line.strip()
    )
    return headers, body_file.read_bytes()


def until(ok: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    while not ok():
        if proc.poll() is not None:
            sys.exit(f"{what}: the process exited with {proc.returncode}")
        time.sleep(0.001)


def cold_start(program: Program, temporal: str, other: tuple[Path, Path]) -> dict[str, float]:
    """Seconds from process start to the first 2xx to an ignored event (and, for ours, to
    /health/liveness, asked first, and to /health/readiness, asked after)."""
    headers, body = event_request(other)
    port = free_port()
    started = time.perf_counter()
    proc = program.start(temporal, "bench-cold", port)
    try:
        times = {}
        if program.name != "Go":
            until(lambda: request(port, "GET", "/health/liveness", {}, b"") == 200, proc, "start")
            times["liveness"] = time.perf_counter() - started
        ok = lambda: 200 <= request(port, "POST", "/", headers, body) < 300  # noqa: E731
        until(ok, proc, "start")
        times["event"] = time.perf_counter() - started
        if program.name != "Go":
            ready = lambda: request(port, "GET", "/health/readiness", {}, b"") == 200  # noqa: E731
            until(ready, proc, "start")
            times["readiness"] = time.perf_counter() - started
        return times
    finally:
        stop(proc)


def oversized_posts(port: int, count: int) -> int:
    """Of `count` POSTs of a 2 MiB event, each on a new connection, with two busy loops
    beside: how many got their 413 whole (the body sent, the answer read, then the end of the
    connection), rather than a broken pipe or a reset."""
    body = b"x" * (2 * 1024 * 1024)
    head = (
        "POST / HTTP/1.1\r\nhost: function\r\nce-specversion: 1.0\r\nce-id: big\r\n"
        "ce-source: bench\r\nce-type: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    whole = 0
    try:
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                try:
                    sock.sendall(head + body)
                    response = http.client.HTTPResponse(sock, method="POST")
                    response.begin()
                    response.read()
                    whole += response.status == 413 and sock.recv(1) == b""
                except (OSError, http.client.HTTPException):
                    pass
    finally:
        for loop in busy:
            loop.kill()
            loop.wait()
    return whole


def terminate(temporal: str, workflow_id: str) -> None:
    subprocess.run(
        [str(TEMPORAL_CLI), "workflow", "terminate", "--address", temporal,
         "--namespace", DEFAULT_NAMESPACE, "-w", workflow_id, "--reason", "bench"],
        capture_output=True, check=False,
    )  # fmt: skip


def measure(program: Program, temporal: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    alarm = f"bench-{re.sub(r'[^a-z]+', '-', program.name.lower())}-{uuid.uuid4().hex[:6]}"
    other = event_files(tmp, "some-other-alarm", f"other-{alarm}")
    mine = event_files(tmp, alarm, f"mine-{alarm}")
    starts = [cold_start(program, temporal, other) for _ in range(args.cold_starts)]
    result: dict[str, Any] = {
        name: statistics.median(s[name] for s in starts) for name in starts[0]
    }
    port = free_port()
    proc = program.start(temporal, alarm, port)
    headers, body = event_request(other)
    try:
        until(lambda: request(port, "POST", "/", headers, body) == 200, proc, "serve")
        time.sleep(2)  # connected (ours connects in the background) and settled
        result["rss_idle"] = memory(proc.pid)["VmRSS"]
        url = f"http://127.0.0.1:{port}/"
        wrk(url, *other, 2, args.connections)  # warm-up
        ignored = wrk(url, *other, args.duration, args.connections)
        raising = wrk(url, *mine, args.duration, args.connections)
        terminate(temporal, alarm)
        rate = oha(url, *other, 1000, args.rate_seconds) if args.oha else None
        result["rss_after"] = memory(proc.pid)["VmRSS"]
        if args.oversized:
            result["oversized_413"] = oversized_posts(port, args.oversized)
    finally:
        stop(proc)
    for name, run in (("ignored", ignored), ("raising", raising)):
        result[f"{name}_rps"] = run["rps"]
        result[f"{name}_failed"] = run["non2xx"] + run["errors"]
    if rate is not None:
        result["p99_ms_at_1000"] = rate["p99_ms"]
        result["served_at_1000"] = rate["rps"]
        result["statuses_at_1000"] = rate["statuses"]
    return result


ROWS = [
    ("events of another alarm, sustained (`wrk -c32`)", "ignored_rps", "{:,.0f} events/s", True),
    ("raising events, sustained (signal-with-start)", "raising_rps", "{:,.0f} events/s", True),
    ("p99 at 1,000 ignored events/s offered (`oha -q 1000`)", "p99_ms_at_1000", "{:.2f} ms", False),
    ("process start to first 2xx (an ignored event)", "event", "{:.0f} ms", False),
    ("process start to first 2xx (ours: /health/liveness)", "liveness", "{:.0f} ms", False),
    ("process start to /health/readiness 200 (ours)", "readiness", "{:.0f} ms", False),
    ("resident memory idle (connected, unless first-use)", "rss_idle", "{:.0f} MiB", False),
    ("resident memory after the load", "rss_after", "{:.0f} MiB", False),
    ("413 whole, of the oversized POSTs (two busy loops beside)", "oversized_413", "{:.0f}", True),
]
TIMES = ("event", "liveness", "readiness")


def table(rounds: list[dict[str, dict[str, Any]]]) -> str:
    """Medians per program, Go's column, and each of ours divided by Go's."""
    names = [name for name in ("Go", *OURS) if name in rounds[0]]
    ours = [name for name in names if name != "Go"]
    head = "| | " + " | ".join(names) + " | " + " | ".join(f"{n} ÷ Go" for n in ours) + " |"
    lines = [head, "|" + " --- |" * (1 + len(names) + len(ours))]
    for label, key, fmt, _higher_is_better in ROWS:
        values = {}
        for name in names:
            got = [r[name][key] for r in rounds if name in r and key in r[name]]
            if got:
                values[name] = statistics.median(got) * (1000 if key in TIMES else 1)
        if not any(name in values for name in ours):
            continue
        cells = [fmt.format(values[name]) if name in values else "—" for name in names]
        ratios = [
            f"{values[name] / values['Go']:.2f}" if name in values and values.get("Go") else "—"
            for name in ours
        ]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--go-function", type=Path, required=True, help="the Go function's source")
    parser.add_argument("--python", default=sys.executable, help="interpreter for ours")
    parser.add_argument("--before", help="interpreter with an earlier version of ours")
    parser.add_argument(
        "--first-use", action="store_true", help="also ours with TEMPORAL_CONNECT=first-use"
    )
    parser.add_argument(
        "--granian", help="also ours on granian: an interpreter whose environment has granian"
    )
    parser.add_argument(
        "--oversized", type=int, default=0, help="POSTs of 2 MiB with two busy loops beside"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate-seconds", type=int, default=5, help="seconds per oha run")
    parser.add_argument("--cold-starts", type=int, default=5, help="starts per round, median")
    parser.add_argument(
        "--go-worker",
        type=Path,
        help="also the worker against the Go worker (its source; "
        "bench/side_by_side_worker.py, with --rounds and --python)",
    )
    args = parser.parse_args()  # fmt: skip
    tool("wrk")
    cargo = str(Path.home() / ".cargo" / "bin")
    args.oha = bool(shutil.which("oha") or shutil.which("oha", path=cargo))

    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp_name:
        tmp = Path(tmp_name)
        go_binary = build_go(args.go_function.resolve(), tmp)
        # As the image starts it: the console script of the interpreter's environment.
        script = Path(args.python).parent / "preemptctl"
        ours = [str(script)] if script.exists() else [args.python, "-m", "vsphere_preemption"]
        programs = {
            "ours": Program("ours", [*ours, "function", "--host", "127.0.0.1"]),
            "Go": Program("Go", [str(go_binary)]),
        }  # fmt: skip
        if args.first_use:
            programs["ours, first-use"] = Program(
                "ours, first-use", [*ours, "function", "--host", "127.0.0.1"],
                {"TEMPORAL_CONNECT": "first-use"},
            )  # fmt: skip
        if args.granian:
            programs["ours on granian"] = Program(
                "ours on granian", [args.granian, str(HERE / "granian_function.py")]
            )
        if args.before:
            programs["before"] = Program("before", [args.before, "-m", "vsphere_preemption",
                                                    "function", "--host", "127.0.0.1"])  # fmt: skip
        rounds: list[dict[str, dict[str, Any]]] = []
        with TemporalDevServer(log_file=tmp / "temporal.log") as temporal:
            for number in range(args.rounds):
                order = (
                    list(programs)[number % len(programs) :]
                    + list(programs)[: number % len(programs)]
                )
                results: dict[str, dict[str, Any]] = {}
                for name in order:
                    before = loadavg()
                    results[name] = measure(programs[name], temporal.address, args, tmp)
                    results[name]["loadavg"] = f"{before} -> {loadavg()}"
                    print(f"round {number + 1} {name}: {json.dumps(results[name])}",
                          file=sys.stderr, flush=True)  # fmt: skip
                rounds.append(results)
    print(f"ours: {' '.join(programs['ours'].command)}; Go: go build of {args.go_function}; "
          f"granian: {args.granian}; before: {args.before}")  # fmt: skip
    oha_note = f"oha -q 1000 -z {args.rate_seconds}s -c 64" if args.oha else "no oha"
    print(f"{args.rounds} rounds, the order rotated; medians. wrk -t1 -c{args.connections} "
          f"-d{args.duration}s; {oha_note}; {args.cold_starts} cold starts per round; "
          f"{args.oversized} oversized POSTs. {os.cpu_count()} CPUs.")  # fmt: skip
    for number, results in enumerate(rounds, 1):
        print(f"round {number}: load average " + "; ".join(
            f"{name} {r['loadavg']}" for name, r in results.items()))  # fmt: skip
    print(table(rounds))
    if shutil.which("go"):
        version = subprocess.run(["go", "version"], capture_output=True, text=True).stdout
        print(version.strip())
    if args.go_worker:
        sys.stdout.flush()

        worker_args = ["--go-worker", str(args.go_worker), "--python", args.python,
                       "--rounds", str(args.rounds)]  # fmt: skip
        return side_by_side_worker.main(worker_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
