"""`preemptctl dev` as a process: started against a vcsim, used, stopped with Ctrl-C, restarted.

The restart reuses the SQLite file, so the workflow from before the stop is still
there (same run, same history) and the restarted worker answers its query.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.cli.ports import listening
from vsphere_preemption.devtools.demo.events import AlarmScene, Named, alarm_status_changed
from vsphere_preemption.devtools.demo.progress import HistoryNarrator, run_finished
from vsphere_preemption.devtools.demo.run import write_secret
from vsphere_preemption.devtools.devservers import Vcsim, free_port
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.domain.model import Criticality, VmRef
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE, QUERY_NAME, WorkflowResponse

SIM_ARGS = ("-cluster", "1", "-host", "2", "-vm", "4", "-standalone-host", "0")
ALARM = "dev-test-alarm"
VCENTER_VARS = ("VCENTER_URL", "VCENTER_SECRET_PATH", "VCENTER_INSECURE", "K_SINK")
READY_LINE = "    VCENTER_SECRET_PATH="  # the last line of the settings dev prints


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VCENTER_VARS}
    return {**env, **values}


def dev(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "dev", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_dev_without_a_vcenter_says_what_it_needs(tmp_path: Path) -> None:
    done = dev("--db-file", str(tmp_path / "t.db"), env=clean_env())
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "VCENTER_URL is required" in line and "preemptctl demo" in line
    assert not (tmp_path / "t.db").exists()  # nothing was started


def test_dev_with_an_incomplete_secret_directory_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "username").write_text("someone")
    env = clean_env(VCENTER_URL="https://vcenter.example/sdk", VCENTER_SECRET_PATH=str(tmp_path))
    done = dev("--db-file", str(tmp_path / "t.db"), env=env)
    assert done.returncode == 2
    assert f"{tmp_path} needs files `username` and `password`" in done.stderr
    assert "someone" not in done.stderr


def test_dev_reads_vcenter_insecure_as_the_worker_does(tmp_path: Path) -> None:
    (tmp_path / "username").write_text("someone")
    (tmp_path / "password").write_text("something")
    env = clean_env(
        VCENTER_URL="https://vcenter.example/sdk",
        VCENTER_SECRET_PATH=str(tmp_path),
        VCENTER_INSECURE="maybe",
    )
    done = dev("--db-file", str(tmp_path / "t.db"), env=env)
    assert done.returncode == 2
    assert "preemptctl dev: VCENTER_INSECURE must be true or false" in done.stderr


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # Fields after the parenthesised command name: state, ppid, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class DevProcess:
    """`python -m vsphere_preemption dev ...`, its output collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vsphere_preemption", "dev", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        self.children: list[int] = []  # temporal, worker, function, once ready
        self._ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        with stream:  # closed at the end of the output, when dev has exited
            for line in stream:
                into.append(line.rstrip("\n"))
                if line.startswith(READY_LINE):
                    self._ready.set()

    def _wait(self, timeout: float | None) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(30)
        return code

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            assert self.proc.poll() is None, f"dev exited {self.proc.returncode}: {self.err}"
            assert time.monotonic() < deadline, f"dev not ready: {self.out} {self.err}"
        self.children = children_of(self.proc.pid)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self._wait(60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._wait(None)


@pytest.fixture
def start_dev() -> Iterator[Callable[[list[str], dict[str, str]], DevProcess]]:
    started: list[DevProcess] = []

    def start(args: list[str], env: dict[str, str]) -> DevProcess:
        started.append(DevProcess(args, env))
        return started[-1]

    yield start
    for process in started:  # only does something if a test failed half-way
        process.kill()
        for pid in process.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # each child leads its own session


def eventually(probe: Callable[[], Any], ok: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + 120
    while True:
        value = probe()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value!r}"
        time.sleep(0.2)


async def describe_and_query(
    address: str, workflow_id: str
) -> tuple[Any, WorkflowResponse, list[Any]]:
    client = await Client.connect(address, namespace="vsphere-preemption")
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    state = WorkflowResponse.from_wire(await handle.query(QUERY_NAME))
    history = [event async for event in handle.fetch_history_events()]
    return description, state, history


@pytest.mark.temporal
async def test_dev_runs_the_system_stops_on_ctrl_c_and_keeps_history_across_a_restart(
    vcsim_factory: Callable[..., Vcsim],
    start_dev: Callable[[list[str], dict[str, str]], DevProcess],
    tmp_path: Path,
) -> None:
    sim = vcsim_factory(*SIM_ARGS)
    config = VCenterConfig(sim.url, sim.username, sim.password, insecure=True)
    vsphere = VSphereClient(config, poll_interval=0.1)
    try:
        await _run_scenario(sim, Inventory(vsphere), start_dev, tmp_path)
    finally:
        vsphere.close()


async def _run_scenario(
    sim: Vcsim,
    inventory: Inventory,
    start_dev: Callable[[list[str], dict[str, str]], DevProcess],
    tmp_path: Path,
) -> None:
    vms = inventory.vms()
    tagged = [s.ref for s in vms[:2]]
    inventory.tag("preemptible", tagged)
    secret = write_secret(tmp_path / "secret", sim.username, sim.password)
    ports = {
        "--temporal-port": free_port(),
        "--ui-port": free_port(),
        "--function-port": free_port(),
    }
    db_file = tmp_path / "state" / "temporal.db"
    with EventSink() as sink:
        args = [str(a) for pair in ports.items() for a in pair]
        args += ["--db-file", str(db_file), "--log-dir", str(tmp_path / "logs"),
                 "--alarm-name", ALARM, "--sink", sink.url]  # fmt: skip
        env = clean_env(
            VCENTER_URL=sim.url,
            VCENTER_SECRET_PATH=str(secret),
            VCENTER_INSECURE="true",
            PREEMPTION_NOTICE_MEDIUM="0",  # the yellow alarm is acted on at once
        )
        address = f"127.0.0.1:{ports['--temporal-port']}"
        function_url = f"http://127.0.0.1:{ports['--function-port']}/"

        # -- started: it prints where everything is -----------------------------------------
        first = start_dev(args, env)
        first.wait_ready()
        printed = "\n".join(first.out)
        assert f"Temporal server  {address}" in printed
        assert f"Temporal web UI  http://127.0.0.1:{ports['--ui-port']}/namespaces/" in printed
        assert f"function         {function_url.rstrip('/')}" in printed
        assert sim.password not in printed  # only the secret's path is shown
        children = first.children
        assert len(children) == 3, children  # temporal, worker, function
        assert all(listening(port) for port in ports.values())

        # -- used: a raising alarm event powers the tagged VMs off ------------------------------
        # The alarm fires on the cluster the tagged VMs run in; the function addresses the
        # workflow of the alarm on that cluster.
        cluster = inventory.objects("ClusterComputeResource")[0]
        workflow_id = f"{ALARM}/{cluster.value}"
        scene = AlarmScene(
            vcenter_url=sim.url,
            datacenter=Named("DC0", "Datacenter", "datacenter-2"),
            cluster=Named("DC0_C0", cluster.type, cluster.value),
            alarm=Named(ALARM, "Alarm", "alarm-1"),
        )
        raising = alarm_status_changed(
            scene, key=77, from_status="green", to_status="yellow", now=datetime.now(UTC)
        )
        reply = httpx.post(function_url, headers=raising.headers, content=raising.body, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["decision"] == "preempt"

        def power() -> dict[VmRef, str]:
            return {s.ref: s.power_state for s in inventory.vms()}

        after = eventually(
            power, lambda p: all(p[r] == "poweredOff" for r in tagged), "the tagged VMs to go off"
        )
        assert [r for r, state in after.items() if state != "poweredOn"] == tagged
        event = sink.wait_for(PREEMPTED_EVENT_TYPE, timeout=60)
        assert event is not None and event.id == f"{workflow_id}-77"

        description, state, history = await describe_and_query(address, workflow_id)
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.run_id == reply.json()["runID"]
        assert set(state.virtual_machines or ()) == set(tagged)
        assert state.criticality == Criticality.MEDIUM  # green -> yellow
        assert run_finished(history)
        names = {s.ref: s.name for s in vms}
        story = HistoryNarrator(names).lines(history)
        planned = [line for line in story if "plan: 2 victims, in order:" in line]
        assert len(planned) == 1, story
        assert all(names[ref] in planned[0] for ref in tagged), planned

        # -- stopped with Ctrl-C: clean exit, every program and port gone ---------------------
        assert first.interrupt() == 0, first.err
        assert "preemptctl: stopping" in first.err
        assert not any("Traceback" in line for line in first.err)
        for pid in children:
            assert not Path(f"/proc/{pid}").exists(), f"child {pid} outlived dev"
        assert not any(listening(port) for port in ports.values())

        # -- restarted on the same SQLite file: the workflow and its history are still there --
        second = start_dev(args, env)
        second.wait_ready()
        again, state_again, history_again = await describe_and_query(address, workflow_id)
        assert again.run_id == description.run_id
        assert again.status == WorkflowExecutionStatus.RUNNING
        assert [e.event_id for e in history_again[: len(history)]] == [e.event_id for e in history]
        assert history_again[: len(history)] == history
        # The restarted worker replays the history to answer the query: same last run.
        assert state_again == state

        lowering = alarm_status_changed(
            scene, key=78, from_status="yellow", to_status="green", now=datetime.now(UTC)
        )
        reply = httpx.post(
            function_url, headers=lowering.headers, content=lowering.body, timeout=30
        )
        assert reply.status_code == 200 and reply.json()["decision"] == "cancel", reply.text
        client = await Client.connect(address, namespace="vsphere-preemption")
        result = await client.get_workflow_handle(workflow_id).result()
        assert WorkflowResponse.from_wire(result).virtual_machines == state.virtual_machines
        assert second.interrupt() == 0, second.err
        assert not any(listening(port) for port in ports.values())
