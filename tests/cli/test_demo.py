"""`preemptctl demo` as a newcomer runs it: a process, its exit code and what it prints.

The demo's own checks are real assertions on what it read back (vCenter power states
and annotations, the workflow's query and status, the event its sink received); here
the exit code says they held, and the output must name what they named.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.cli.ports import listening
from vsphere_preemption.devtools.demo.inventory import MAX_VMS
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE

FREE_PORTS = ("--temporal-port", "0", "--ui-port", "0", "--function-port", "0")
CHECKS = 7


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "demo", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 300) -> str:
    """stdout up to and including the line that starts with `marker`."""
    assert proc.stdout is not None
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(marker):
                done.set()
                return
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    return "".join(lines)


@pytest.mark.temporal
@pytest.mark.vcsim
def test_the_demo_preempts_reports_cancels_passes_its_checks_and_keeps_running(
    tmp_path: Path,
) -> None:
    # As a context manager: its pipes are closed and it is waited for, whatever happens.
    with subprocess.Popen(
        [sys.executable, "-m", "vsphere_preemption", "demo", *FREE_PORTS,
         "--log-dir", str(tmp_path / "logs"), "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            out = read_until(proc, "  e.g. preemptctl workflow status")
            assert proc.poll() is None, f"{out}\n{proc.stderr.read() if proc.stderr else ''}"
            # --keep: the UI answers and the printed `workflow status` command works.
            ui = re.search(r"Temporal web UI: (http://127\.0\.0\.1:\d+/\S+)$", out, re.MULTILINE)
            assert ui is not None, out
            assert httpx.get(ui.group(1), timeout=30).status_code == 200
            hint = out.rstrip().splitlines()[-1].split("e.g. preemptctl ", 1)[1].split()
            status = subprocess.run(
                [sys.executable, "-m", "vsphere_preemption", *hint],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert status.returncode == 0, status.stderr
            assert "completed" in status.stdout.lower()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0  # Ctrl-C after a passed demo: still its verdict, 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    assert "Traceback" not in stderr and "preemptctl: stopping" in stderr
    # Everything it started is gone: vcsim, Temporal and its UI, the function, the sink.
    ports = [
        int(found)
        for pattern in (
            r"vcsim at https://127\.0\.0\.1:(\d+)/",
            r"Temporal server  127\.0\.0\.1:(\d+)",
            r"Temporal web UI  http://127\.0\.0\.1:(\d+)/",
            r"function +http://127\.0\.0\.1:(\d+)",
            r"sink \(K_SINK\) +http://127\.0\.0\.1:(\d+)/",
        )
        for found in re.findall(pattern, out)
    ]
    assert len(ports) == 5, ports
    assert not [port for port in ports if listening(port)]

    # Every check printed as passed, none failed.
    assert len(re.findall(r"^  \[ok\] ", out, re.MULTILINE)) == CHECKS, out
    assert "FAILED" not in out and "demo passed" in out

    # The preempted VMs by name and moref: the first MAX_VMS running tagged VMs.
    preempted = re.findall(r"^    (DC0_C0_RP0_VM\d+) \((vm-\d+)\): poweredOff$", out, re.MULTILINE)
    assert [name for name, _ in preempted] == [f"DC0_C0_RP0_VM{i}" for i in range(MAX_VMS)]
    morefs = [moref for _, moref in preempted]
    # ... in the query answer, the annotations and the event alike.
    state = out.split("current_state (query", 1)[1].split("annotation (", 1)[0]
    assert re.findall(r"\((vm-\d+)\)", state) == morefs
    notes = re.findall(
        r"^    DC0_C0_RP0_VM\d+ \((vm-\d+)\): preempted=true forcedShutdown=true ", out, re.M
    )
    assert notes == morefs
    # The event the sink received: its type, its id (<workflow ID>-<alarm event id>).
    alarm_id = re.search(r"^    ce-id: (\d+)$", out, re.MULTILINE)
    assert alarm_id is not None
    assert f"    type: {PREEMPTED_EVENT_TYPE}" in out
    assert re.search(rf"^    id: cluster-cpu-above-80/domain-c\d+-{alarm_id.group(1)}$", out, re.M)
    listed = re.search(r"data\.virtualMachines: (.*)$", out, re.MULTILINE)
    assert listed is not None and re.findall(r"\((vm-\d+)\)", listed.group(1)) == morefs
    # What was left alone, and why; the cancellation; the UI.
    for reason in ("already powered off", "suspended", "not a virtual machine (HostSystem)",
                   f"over the cap of {MAX_VMS} VMs per run"):  # fmt: skip
        assert re.search(rf"^  \[ *[\d.]+s\]   left out .*: {re.escape(reason)}", out, re.M)
    assert re.search(r"workflow 'cluster-cpu-above-80/domain-c\d+' is now COMPLETED", out)
    assert re.search(r"Temporal web UI  http://127\.0\.0\.1:\d+/namespaces/vsphere-preemption", out)
    # The programs wrote their logs where --log-dir said.
    for name in ("temporal", "worker", "function"):
        assert (tmp_path / "logs" / f"{name}.log").stat().st_size > 0, name


def test_without_vcsim_the_demo_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "VSPHERE_PREEMPTION_TOOLS": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = demo(*FREE_PORTS, env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "preemptctl demo: vcsim is not installed" in done.stderr
    assert "scripts/setup" in done.stderr


@pytest.mark.vcsim
def test_a_busy_port_stops_the_demo_with_the_reason() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = demo("--temporal-port", "0", "--ui-port", "0", "--function-port", str(port))
    assert done.returncode == 1
    assert f"port {port} for the function is already in use" in done.stderr
    assert "Traceback" not in done.stderr
