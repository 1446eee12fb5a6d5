"""The whole system on one machine: Temporal dev server, worker and function.

`preemptctl dev` and `preemptctl demo` run this; the tests drive it directly.
The worker and the function run as their own processes (`python -m
vsphere_preemption worker|function`), exactly as they are deployed, configured
only through their environment variables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TextIO

from vsphere_preemption.devtools.devservers import ServerFailed, TemporalDevServer, free_port
from vsphere_preemption.wire import DEFAULT_NAMESPACE, DEFAULT_TAG, DEFAULT_TASK_QUEUE


def require_free_port(port: int, what: str) -> None:
    """ServerFailed if something listens on loopback `port` (0: any port, always fine)."""
    if port == 0:
        return
    with socket.socket() as sock:
        # As servers bind: connections in TIME_WAIT from an earlier run do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ServerFailed(
                f"port {port} for {what} is already in use (another `preemptctl dev`?): "
                "choose another port, or 0 for any free one"
            ) from None


@dataclass(frozen=True)
class VCenterTarget:
    url: str
    secret_path: Path  # directory with files `username` and `password`
    insecure: bool = False


@dataclass
class DevStack:
    vcenter: VCenterTarget
    temporal_address: str | None = None  # None: start a dev server
    db_file: Path | None = None  # SQLite file of the dev server (state survives restarts)
    temporal_port: int = 0
    ui_port: int | None = 0  # 0: pick one; None: headless
    function_port: int = 0
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    tag: str = DEFAULT_TAG
    alarm_name: str = "cluster-cpu-above-80"
    sink: str = ""
    log_dir: Path | None = None
    extra_worker_env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0
    server: TemporalDevServer | None = field(default=None, init=False)
    worker: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    function: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        if self.temporal_address:
            return self.temporal_address
        assert self.server is not None, "not started"
        return self.server.address

    @property
    def ui_url(self) -> str | None:
        return self.server.ui_url if self.server else None

    @property
    def function_url(self) -> str:
        return f"http://127.0.0.1:{self.function_port}"

    def settings(self) -> dict[str, str]:
        """What the worker and the function are started with (no secrets: only a path)."""
        return {
            "TEMPORAL_URL": self.address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "TEMPORAL_TASKQUEUE": self.task_queue,
            "VSPHERE_PREEMPTION_TAG": self.tag,
            "VSPHERE_ALARM_NAME": self.alarm_name,
            "K_SINK": self.sink,
            "VCENTER_URL": self.vcenter.url,
            "VCENTER_INSECURE": "true" if self.vcenter.insecure else "false",
            "VCENTER_SECRET_PATH": str(self.vcenter.secret_path),
        }

    def start(self) -> DevStack:
        # A port someone else listens on would make us talk to their server: refuse early.
        if not self.temporal_address:
            require_free_port(self.temporal_port, "the Temporal server")
            require_free_port(self.ui_port or 0, "the Temporal web UI")
        require_free_port(self.function_port, "the function")
        try:
            if not self.temporal_address:
                ui_port = self.ui_port if self.ui_port != 0 else free_port()
                self.server = TemporalDevServer(
                    namespaces=(self.namespace,),
                    port=self.temporal_port,
                    ui_port=ui_port,
                    db_file=self.db_file,
                    log_file=self._log("temporal"),
                ).start()
            env = {**os.environ, **self.settings()}
            self.worker = self._spawn("worker", {**env, **self.extra_worker_env})
            self.function_port = self.function_port or free_port()
            self.function = self._spawn(
                "function", {**env, "PORT": str(self.function_port)},
                "--host", "127.0.0.1", "--port", str(self.function_port),
            )  # fmt: skip
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _log(self, name: str) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{name}.log"

    def _spawn(self, program: str, env: Mapping[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = self._log(program)
        # The child holds its own copy of the log file: ours is closed once it has started.
        with open(log, "ab") if log else contextlib.nullcontext(subprocess.DEVNULL) as out:
            return subprocess.Popen(
                [sys.executable, "-m", "vsphere_preemption", program, *args],
                env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.function_url}/health/readiness"
        while time.monotonic() < deadline:
            for name, proc in (("worker", self.worker), ("function", self.function)):
                if proc is not None and proc.poll() is not None:
                    raise ServerFailed(f"the {name} exited with code {proc.returncode}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=1) as answer,  # noqa: S310 (loopback)
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise ServerFailed(f"the function was not ready at {url} in {self.startup_timeout:.0f}s")

    def failed_child(self) -> str | None:
        """The name of a program that exited on its own, if any."""
        for name, proc in (("worker", self.worker), ("function", self.function)):
            if proc is not None and proc.poll() is not None:
                return f"{name} (exit code {proc.returncode})"
        if self.server and self.server.proc and self.server.proc.poll() is not None:
            return f"temporal (exit code {self.server.proc.returncode})"
        return None

    def stop(self) -> None:
        # Function first (no new work), then the worker (finishes or gives up its
        # activities on SIGTERM), then Temporal.
        for proc in (self.function, self.worker):
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in (self.function, self.worker):
            if proc is None:
                continue
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.function = self.worker = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def print_settings(stack: DevStack, out: TextIO = sys.stdout) -> None:
    print("vsphere-preemption is running:", file=out)
    print(f"  Temporal server  {stack.address}  (namespace {stack.namespace})", file=out)
    if stack.ui_url:
        print(f"  Temporal web UI  {stack.ui_url}/namespaces/{stack.namespace}", file=out)
    print(f"  function         {stack.function_url}  (POST CloudEvents here)", file=out)
    print("  settings:", file=out)
    for key, value in stack.settings().items():
        print(f"    {key}={value}", file=out)
    out.flush()


def wait_until_stopped(stack: DevStack) -> int:
    """Block until Ctrl-C/SIGTERM (0) or until a program dies on its own (1)."""
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping:
        failed = stack.failed_child()
        if failed:
            print(f"preemptctl: {failed} stopped; shutting down", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("preemptctl: stopping", file=sys.stderr)
    return 0
