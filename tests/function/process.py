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
import select
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

    def start(self, timeout: float = 60, until: str = "/health/readiness") -> FunctionProcess:
        """Start it and wait until `until` answers 200 (readiness: connected to Temporal;
        liveness: serving, with or without a Temporal to reach)."""
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vsphere_preemption", "function", "--host", "127.0.0.1"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers(until):
            if not self.alive():
                raise AssertionError(f"the function exited at start: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the function was not ready in {timeout} s: {self.log()}")
            time.sleep(0.05)
        return self

    def _answers(self, path: str) -> bool:
        try:
            with RawClient(self.port) as client:
                return client.get(path).status == 200
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
        return self if self.proc is not None else self.start()  # started already, or now

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


# The function's server (uvicorn, whose timeout_keep_alive the function leaves at 5 s)
# closes a keep-alive connection idle that long, silently: HTTP lets a server close an
# idle connection at any time (RFC 9112, 9.8), and a request written as it closes gets no
# answer. Its timer starts when it answers, so no sooner than the previous request was
# written: a connection is reused only within REUSE_WITHIN of that, far inside the 5 s
# (as Go's IdleConnTimeout is set below a server's keep-alive), and a new one is opened
# after a longer pause. Within it, a connection the server has closed anyway was closed
# without the `Connection: close` its answer owed: that is reported, not worked around.
SERVER_KEEP_ALIVE = 5.0
REUSE_WITHIN = SERVER_KEEP_ALIVE / 5


class RawClient:
    """One HTTP/1.1 connection; a new one after the server closes it (its answer saying so)
    and after a pause long enough for the server to close it as idle (REUSE_WITHIN)."""

    def __init__(self, port: int, timeout: float = 30, reuse_within: float = REUSE_WITHIN) -> None:
        self.port = port
        self.timeout = timeout
        self.reuse_within = reuse_within
        self._sock: socket.socket | None = None
        self._written = 0.0  # when the last request on the connection started to be written
        self.connections = 0  # how many were opened: keep-alive means few
        self.idle_reopened = 0  # of those, how many replaced a connection left idle too long

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            if time.monotonic() - self._written >= self.reuse_within:
                self.close()  # the server may be closing it right now
                self.idle_reopened += 1
            else:
                self._check_still_open(self._sock)
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
        return self._sock

    def _check_still_open(self, sock: socket.socket) -> None:
        """Dropped if the server closed the connection (or wrote to it) since its answer."""
        if not select.select([sock], [], [], 0)[0]:
            return  # nothing came: open, as it should be
        try:
            unasked = sock.recv(256, socket.MSG_PEEK)
        except OSError as exc:
            self.close()
            raise Dropped(f"the server reset the connection after answering: {exc}") from None
        self.close()
        if unasked:
            raise Dropped(f"the server sent what no request asked for: {unasked!r}")
        raise Dropped("the server closed the connection; its answer did not say Connection: close")

    def wait_until_closed_by_server(self, timeout: float) -> None:
        """Wait, idle, until the server closes the connection (its keep-alive timeout)."""
        assert self._sock is not None, "no connection open"
        assert select.select([self._sock], [], [], timeout)[0], f"still open after {timeout} s"
        assert self._sock.recv(1, socket.MSG_PEEK) == b"", "the server wrote, unasked"

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
        self._written = time.monotonic()
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
