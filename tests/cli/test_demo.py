"""`preemptctl demo` as a newcomer runs it: a process, its exit code and what it prints.

The demo's own checks are real assertions on what it read back (vCenter power states
and annotations, the workflow's query and status, the event its sink received); here
the exit code says they held, and the output must name what they named.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

import vsphere_preemption
from tests.cli.ports import listening
from vsphere_preemption.devtools.demo.inventory import (
    ELSEWHERE,
    LOOP,
    MAX_VMS,
    NOTICE_SECONDS,
    RESUME,
)
from vsphere_preemption.devtools.devservers import VCSIM_VERSION
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE, SCHEDULED_EVENT_TYPE, parse_time

FREE_PORTS = ("--temporal-port", "0", "--ui-port", "0", "--function-port", "0")
CHECKS = 12  # 14 with --resume, 13 with --loop
# The victims as the plan takes them: the two `low` (newest first), then the three of
# priority 5 (normal or no tag), newest first; a resume takes them the other way round:
# highest priority first, then by name.
LOWS = {"DC0_C0_RP0_VM1", "DC0_C0_RP0_VM4"}
FIVES = {"DC0_C0_RP0_VM0", "DC0_C0_RP0_VM3", "DC0_C0_RP0_VM5"}
RESUME_BATCHES = [
    ["DC0_C0_RP0_VM0", "DC0_C0_RP0_VM3"],
    ["DC0_C0_RP0_VM5", "DC0_C0_RP0_VM1"],
    ["DC0_C0_RP0_VM4"],
]


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "demo", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def victims_told(out: str) -> list[str]:
    """The preempted VMs in the plan's order, as the power states after the run list them."""
    after = out.split("power states now (vCenter), the planned victims:", 1)[1]
    return re.findall(r"^    (DC0_C0_RP0_VM\d+) \(vm-\d+\): poweredOff$", after, re.M)[:MAX_VMS]


def assert_the_notice(out: str, names: list[str]) -> None:
    """The notice as the demo read it back while it ran, before anything was stopped."""
    notice = out.split("5. The notice: 5s before anything is stopped", 1)[1].split("\n6. ", 1)[0]
    assert f"the event the sink received ({SCHEDULED_EVENT_TYPE}):" in notice
    listed = re.search(r"^    data\.virtualMachines: (.*)$", notice, re.M)
    assert listed is not None and re.findall(r"(DC0_C0_RP0_VM\d+) \(", listed.group(1)) == names
    assert "    data.action: poweroff\n" in notice
    assert f"    data.noticeSeconds: {NOTICE_SECONDS}\n" in notice
    when = re.search(
        r"^    data\.notBefore: (\S+) \(in (\d+\.\d)s, as the demo reads", notice, re.M
    )
    assert when is not None and 0 < float(when.group(2)) <= NOTICE_SECONDS
    not_before = parse_time(when.group(1))
    # Each victim still on, with the notice in its guestinfo, read back from vCenter.
    on = re.findall(r"^    (DC0_C0_RP0_VM\d+) \(vm-\d+\): (\w+)  (\{.*\})$", notice, re.M)
    assert [(name, power) for name, power, _ in on] == [(n, "poweredOn") for n in names]
    for _, _, text in on:
        guest = json.loads(text)
        assert guest["action"] == "poweroff" and parse_time(guest["notBefore"]) == not_before
        assert re.fullmatch(r"cluster-cpu-above-80/domain-c\d+", guest["workflowID"])
    assert "    no other VM carries a notice" in notice
    # The history: the timer, then the stop only once it fired.
    steps = out.split("\n4. Workflow ", 1)[1].split("\n7. What happened", 1)[0]
    timer = re.search(r"^  \[ *(\d+\.\d)s\] notice: a durable timer of 5s", steps, re.M)
    off = re.search(r"^  \[ *(\d+\.\d)s\] activity PowerOffVMs", steps, re.M)
    assert timer is not None and off is not None and timer.start() < off.start()
    assert float(off.group(1)) - float(timer.group(1)) >= NOTICE_SECONDS - 0.1
    assert steps.index("activity SetGuestNotice: write the notice") < timer.start()


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
    after = out.split("power states now (vCenter), the planned victims:", 1)[1]
    preempted = re.findall(r"^    (DC0_C\d_RP0_VM\d+) \((vm-\d+)\): poweredOff$", after, re.M)
    preempted = preempted[:MAX_VMS]
    names = [name for name, _ in preempted]
    assert names == victims_told(out) and len(names) == MAX_VMS, out
    assert set(names[:2]) == LOWS and set(names[2:]) == FIVES
    assert_the_notice(out, names)
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
    # The cancellation; without --resume the preempted VMs stay off; the UI.
    assert re.search(r"workflow 'cluster-cpu-above-80/domain-c\d+' is now COMPLETED", out)
    lowered = out.split("\n8. Alarm", 1)[1].split("\n9. Checks", 1)[0]
    assert "the policy does not resume" in lowered and "ResumeVMs" not in lowered
    still = lowered.split("power states now (vCenter), the preempted VMs:", 1)[1]
    assert re.findall(r"^    (DC0_C0_RP0_VM\d+) \(vm-\d+\): (\w+)$", still, re.M) == [
        (name, "poweredOff") for name in names
    ]
    assert re.search(r"Temporal web UI  http://127\.0\.0\.1:\d+/namespaces/vsphere-preemption", out)
    # The programs wrote their logs where --log-dir said.
    for name in ("temporal", "worker", "function"):
        assert (tmp_path / "logs" / f"{name}.log").stat().st_size > 0, name


@pytest.mark.temporal
@pytest.mark.vcsim
def test_with_resume_the_lowering_powers_the_vms_on_again_highest_priority_first() -> None:
    done = demo(*FREE_PORTS, "--resume")
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert len(re.findall(r"^  \[ok\] ", out, re.MULTILINE)) == CHECKS + 2, out
    assert "FAILED" not in out and "on clear they were resumed, highest priority first" in out
    resume_line = "resume: {enabled: true, batchSize: 2, interval: 2s, headroom: 10.0, maxWait: 1h}"
    assert f"    {resume_line}" in out
    names = victims_told(out)
    assert set(names[:2]) == LOWS and set(names[2:]) == FIVES
    assert_the_notice(out, names)

    lowered = out.split("\n8. Alarm", 1)[1].split("\n9. Checks", 1)[0]
    # From the history: one ResumeVMs per batch, in batch order, a 2 s timer between them.
    told = re.findall(r"^  \[ *[\d.]+s\]   powered on: (.*)$", lowered, re.M)
    assert [re.findall(r"(DC0_C0_RP0_VM\d+) \(", line) for line in told] == RESUME_BATCHES
    assert len(re.findall(r"timer: 2s before the next batch", lowered)) == len(RESUME_BATCHES) - 1
    assert lowered.count("activity SetGuestNotice: clear the notice") == len(RESUME_BATCHES)
    # From the sink: one VmResumedEvent per batch, the same VMs, at least the interval apart.
    batches = re.findall(r"^    batch (\d) \(\+(\d+\.\d)s\): (.*)$", lowered, re.M)
    assert [int(n) for n, _, _ in batches] == [1, 2, 3]
    assert [re.findall(r"(DC0_C0_RP0_VM\d+) \(", vms) for _, _, vms in batches] == RESUME_BATCHES
    offsets = [float(at) for _, at, _ in batches]
    assert all(b - a >= RESUME.interval_seconds - 0.05 for a, b in itertools.pairwise(offsets))
    # Read back from vCenter: every one on again, annotated resumed, its guest notice gone.
    now = re.findall(
        r"^    (DC0_C0_RP0_VM\d+) \(vm-\d+\): (\w+), annotation resumed=(\w+) resumedAt=(\S+), "
        r"guestinfo (.*)$",
        lowered,
        re.M,
    )
    order = [name for batch in RESUME_BATCHES for name in batch]
    assert [(n, power, resumed, guest) for n, power, resumed, _, guest in now] == [
        (name, "poweredOn", "true", "(cleared)") for name in order
    ]
    stamps = [parse_time(at) for *_, at, _ in now]
    assert stamps == sorted(stamps) and stamps[0] < stamps[2] < stamps[4]  # batch by batch
    assert re.search(r"workflow 'cluster-cpu-above-80/domain-c\d+' is now COMPLETED", lowered)


# A round as the demo shows it: from the run's record, then its event at the sink.
ROUND = re.compile(
    r"^    round (?P<number>\d): stopped (?P<stopped>.*); "
    r"memory after it (?P<after>[\d.]+)% \(target (?P<target>[\d.]+)%\): (?P<met>met|not met)\n"
    r"      event (?P<id>\S+): round (?P<told>\d) of at most (?P<most>\d), (?P<vms>\d) VM\(s\)"
    r"(?P<stop>, loopStopped '.*')?$",
    re.M,
)


@pytest.mark.temporal
@pytest.mark.vcsim
def test_with_loop_two_rounds_are_shown_and_the_loop_stops_with_the_target_met() -> None:
    done = demo(*FREE_PORTS, "--loop")
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert len(re.findall(r"^  \[ok\] ", out, re.MULTILINE)) == CHECKS + 1, out
    assert "FAILED" not in out and "a second round preempted one more and met it" in out
    # The policy: a memory target on the allocation basis, and the loop.
    target = re.search(r"^    targets: \{memory: ([\d.]+), basis: allocation\}$", out, re.M)
    assert target is not None, out
    assert f"    loop: {{settle: {LOOP.settle_seconds:g}s, maxRounds: {LOOP.max_rounds}}}" in out

    # Each round, from the run's record and the sink: what it stopped, what it achieved.
    shown = out.split("the rounds (the run's record", 1)[1]
    first, second = (m.groupdict() for m in ROUND.finditer(shown))
    assert [(r["number"], r["told"], r["most"]) for r in (first, second)] == [
        ("1", "1", str(LOOP.max_rounds)),
        ("2", "2", str(LOOP.max_rounds)),
    ]
    names_1 = re.findall(r"(DC0_C0_RP0_VM\d+) \(vm-\d+\)", first["stopped"])
    assert set(names_1) == LOWS | FIVES and first["vms"] == str(MAX_VMS)
    # Round 2 takes one of the highs that round 1 left over the cap.
    name_2 = re.fullmatch(r"(DC0_C0_RP0_VM[26]) \(vm-\d+\)", second["stopped"])
    assert name_2 is not None and second["vms"] == "1"
    assert first["target"] == second["target"] == target.group(1)
    assert (first["met"], second["met"]) == ("not met", "met")
    assert float(first["after"]) > float(target.group(1)) >= float(second["after"])
    assert second["id"] == f"{first['id']}-round-2"
    assert (first["stop"], second["stop"]) == (None, ", loopStopped 'target met'")
    assert "  the loop stopped after 2 round(s) of at most 3: target met\n" in out

    # The history tells the settle between the rounds, and each round's event, in order.
    steps = out.split("\n4. Workflow ", 1)[1].split("\n7. What happened", 1)[0]
    told = [
        steps.find(text)
        for text in (
            "send the VmPreemptedEvent of round 1 (of at most 3; target not met)",
            "settle: a durable timer of 2s",
            "settled: the next round plans again",
            f"plan: 1 victims, in order: {name_2.group(1)} (priority 9)",
            "send the VmPreemptedEvent of round 2 (of at most 3; target met; the loop stops: "
            "target met)",
        )
    ]
    assert -1 not in told and told == sorted(told), told
    # Read back from vCenter: round 1's five and round 2's one are off.
    after = out.split("power states now (vCenter), the planned victims:", 1)[1]
    after = after.split("  the protected VM and the tagged VMs out of scope:", 1)[0]
    off = re.findall(r"^    (DC0_C0_RP0_VM\d+) \(vm-\d+\): poweredOff$", after, re.M)
    assert set(off[:MAX_VMS]) == set(names_1) and off[MAX_VMS:] == [name_2.group(1)]
    assert re.search(r"^  \[ok\] the run's record: 2 rounds, .*the loop stopped: target met$",
                     out, re.M)  # fmt: skip


def test_loop_and_resume_together_are_refused_before_anything_starts() -> None:
    """The loop's target leaves no room under it less the headroom for a resume to show."""
    done = demo("--loop", "--resume")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "argument --resume: not allowed with argument --loop" in done.stderr


def test_without_vcsim_the_demo_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "VSPHERE_PREEMPTION_TOOLS": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = demo(*FREE_PORTS, env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "preemptctl demo: vcsim is not installed" in done.stderr
    assert "scripts/setup" in done.stderr  # a clone has it: it builds vcsim


def test_without_vcsim_an_installed_demo_gives_the_go_install_command(tmp_path: Path) -> None:
    # The package as installed from a wheel: outside any clone, so no scripts/setup to run.
    site = tmp_path / "site"
    package = Path(vsphere_preemption.__file__).parent
    shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    tools = tmp_path / "tools"
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "VSPHERE_PREEMPTION_TOOLS": str(tools),
        "PATH": "/usr/bin:/bin",
    }
    done = demo(*FREE_PORTS, env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "preemptctl demo: vcsim is not installed" in done.stderr
    assert "scripts/setup" not in done.stderr
    command = f"GOBIN={tools}/bin go install github.com/vmware/govmomi/vcsim@{VCSIM_VERSION}"
    assert command in done.stderr


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
