"""`preemptctl function` as a process of its own, and a raw HTTP/1.1 client for it.

For the tests that must see a crash, a dropped connection or memory growth (a server in the
test's own process would hide all three), and for the storm over two replicas. The client
writes the request bytes as given (any header name, value or framing) on one keep-alive
connection, and says when the server closed it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from vsphere_preemption.devtools.devservers import free_port

# The settings the process reads: none may leak in from the environment the tests run in.
SETTINGS = (
    "TEMPORAL_URL", "TEMPORAL_NAMESPACE", "TEMPORAL_TASKQUEUE", "VSPHERE_PREEMPTION_TAG",
    "VSPHERE_ALARM_NAME", "VSPHERE_ALARM_NAMES", "K_SINK", "PORT", "DEBUG", "LOG_FORMAT",
    "VCENTER_TASKQUEUES", "WORKFLOW_ID_MODE",
)  # fmt: skip


class FunctionProcess:
    """`python -m vsphere_preemption function` on a loopback port, logging to a file."""

    def __init__(self, settings: Mapping[str, str], log_file: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
        self.env = {**env, "PORT": str(self.port), "LOG_FORMAT": "json", **settings}
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> FunctionProcess:
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vsphere_preemption", "function", "--host", "127.0.0.1"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.alive():
                raise AssertionError(f"the function exited at start: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the function was not ready in {timeout} s: {self.log()}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            with RawClient(self.port) as client:
                return client.get("/health/readiness").status == 200
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """Resident memory (VmRSS of /proc/<pid>/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop; its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def __enter__(self) -> FunctionProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names (the last of repeated ones)
    body: bytes
    closed: bool  # the server closed the connection after answering


class Dropped(AssertionError):
    """The server closed or reset the connection without an answer."""


class RawClient:
    """One HTTP/1.1 connection; reconnects after the server closes it."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self.connections = 0  # how many were opened: keep-alive means few

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def send(self, raw: bytes, *, method: str = "POST") -> Answer:
        """Write `raw` (a whole request) and read the answer; Dropped if there is none."""
        sock = self._connect()
        with contextlib.suppress(OSError):
            # The server may answer and close before it takes all of a large request (413):
            # its answer is read below, or its absence reported.
            sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Dropped(f"no answer: {type(exc).__name__}: {exc}") from None
        finally:
            response.close()
        headers = {name.lower(): value for name, value in response.getheaders()}
        closed = response.will_close
        if closed:
            self.close()
        return Answer(response.status, headers, body, closed)

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | list[tuple[str, str]] = (),  # type: ignore[assignment]
        body: bytes = b"",
    ) -> Answer:
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        return self.send(http_request(method, path, pairs, body), method=method)

    def post(self, headers: Mapping[str, str] | list[tuple[str, str]], body: bytes) -> Answer:
        return self.request("POST", "/", headers, body)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)


def http_request(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes, *, length: bool = True
) -> bytes:
    """The bytes of a request (header text as Latin-1, as HTTP carries it), with its
    Content-Length unless `length` is False or one is given."""
    lines = [f"{method} {path} HTTP/1.1", "Host: function"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length and not any(name.lower() == "content-length" for name, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1", "replace") + body
