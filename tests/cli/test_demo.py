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
from vsphere_preemption.devtools.demo.inventory import ELSEWHERE, MAX_VMS
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE

FREE_PORTS = ("--temporal-port", "0", "--ui-port", "0", "--function-port", "0")
CHECKS = 9


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

    # The worker read the demo's policy file.
    assert re.search(r"^    PREEMPTION_POLICY_FILE=/\S+/policy\.yaml$", out, re.MULTILINE)
    assert "      category: preemption-priority" in out
    # The preempted VMs by name and moref, as the demo's table predicted them: only on
    # DC0_C0, the two `low` first, then the three of priority 5 (normal or no tag), newest first.
    preempted = re.findall(r"^    (DC0_C\d_RP0_VM\d+) \((vm-\d+)\): poweredOff$", out, re.M)
    names = [name for name, _ in preempted]
    assert len(names) == MAX_VMS, out
    assert set(names[:2]) == {"DC0_C0_RP0_VM1", "DC0_C0_RP0_VM4"}
    assert set(names[2:]) == {"DC0_C0_RP0_VM0", "DC0_C0_RP0_VM3", "DC0_C0_RP0_VM5"}
    predicted = re.findall(r"^    (DC0_C0_RP0_VM\d+) \(vm-\d+\) .* victim (\d)$", out, re.M)
    assert [name for name, _ in sorted(predicted, key=lambda p: p[1])] == names
    morefs = [moref for _, moref in preempted]
    # The plan's victims in the narration, the query answer's plan, its VMs, the annotations
    # and the event alike, in that order.
    told = re.search(r"\]   plan: 5 victims, in order: (.*)$", out, re.MULTILINE)
    assert told is not None and re.findall(r"(DC0_C0_RP0_VM\d+) \(priority", told.group(1)) == names
    state = out.split("current_state (query", 1)[1].split("its plan (", 1)[0]
    assert re.findall(r"\((vm-\d+)\)", state) == morefs
    plan = out.split("its plan (", 1)[1].split("annotation (", 1)[0]
    assert plan.startswith("field `plan`; scope 'entity', entity ClusterComputeResource domain-c")
    victims = re.findall(r"^      \d\. DC0_C0_RP0_VM\d+ \((vm-\d+)\): priority (\d)", plan, re.M)
    assert [moref for moref, _ in victims] == morefs
    assert [level for _, level in victims] == ["1", "1", "5", "5", "5"]
    notes = re.findall(
        r"^    DC0_C0_RP0_VM\d+ \((vm-\d+)\): preempted=true forcedShutdown=true ", out, re.M
    )
    assert notes == morefs
    # The event the sink received: its type, its id (<workflow ID>-<alarm event id>), its plan.
    alarm_id = re.search(r"^    ce-id: (\d+)$", out, re.MULTILINE)
    assert alarm_id is not None
    assert f"    type: {PREEMPTED_EVENT_TYPE}" in out
    assert re.search(rf"^    id: cluster-cpu-above-80/domain-c\d+-{alarm_id.group(1)}$", out, re.M)
    listed = re.search(r"data\.virtualMachines: (.*)$", out, re.MULTILINE)
    assert listed is not None and re.findall(r"\((vm-\d+)\)", listed.group(1)) == morefs
    assert f"    data.plan.victims: {', '.join(names)}\n" in out
    # What was left out, and why, from the query answer's plan.
    reasons = "out of scope|protected|not running|over the cap|not a VM"
    rows = re.findall(rf"^      (\S+) \(\S+\)\s+({reasons})  +(.+)$", plan, re.M)
    assert {name: (why, detail) for name, why, detail in rows} == {
        **{
            f"DC0_C1_RP0_VM{i}": ("out of scope", "not under the alarmed entity (scope: entity)")
            for i in range(ELSEWHERE)
        },
        "DC0_C0_RP0_VM7": ("protected", "carries the protection tag preemption-protection/never"),
        "DC0_C0_RP0_VM8": ("not running", "already powered off"),
        "DC0_C0_RP0_VM9": ("not running", "already powered off"),
        "DC0_C0_RP0_VM10": ("not running", "suspended: holds no CPU or memory to free"),
        "DC0_C0_RP0_VM2": ("over the cap", f"over the cap of {MAX_VMS} VMs per run"),
        "DC0_C0_RP0_VM6": ("over the cap", f"over the cap of {MAX_VMS} VMs per run"),
        "host-24": ("not a VM", "not a virtual machine (HostSystem)"),
    }, plan
    # ... and those that must stay on are on: the protected VM and DC0_C1's tagged VMs.
    kept = re.findall(r"^    (DC0_C\d_RP0_VM\d+) \(vm-\d+, (DC0_C\d)\): (\w+)$", out, re.M)
    assert kept == [("DC0_C0_RP0_VM7", "DC0_C0", "poweredOn")] + [
        (f"DC0_C1_RP0_VM{i}", "DC0_C1", "poweredOn") for i in range(ELSEWHERE)
    ]
    # The cancellation; the UI.
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
