"""The worker's health endpoint (HEALTH_ADDRESS), for Kubernetes' probes.

- `GET /health/liveness`: 200 while the worker's event loop answers. The server runs on that
  loop, so a loop that is blocked or dead answers nothing and the probe times out: the one
  failure a restart cures.
- `GET /health/readiness`: 200 while the worker polls its task queue and Temporal's frontend
  answers its health check, and the worker has a vCenter session; 503 with the failing check
  named otherwise. Not ready is no reason to restart (a vCenter or Temporal outage is not
  cured by one), so only liveness should restart the pod.

A few lines of HTTP/1.1 on asyncio's streams rather than a web framework: the worker has none,
and these two paths need none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vsphere_preemption import logs
from vsphere_preemption.temporal.prometheus import split_address

log = logs.get_logger(__name__)

LIVENESS = "/health/liveness"
READINESS = "/health/readiness"
# A probe's whole request must arrive within this; a client that sends nothing is dropped.
READ_TIMEOUT = 5.0
# One readiness check may take this long before it counts as failed (inside the probes'
# default timeout, so that the answer says which check was slow rather than timing out).
CHECK_TIMEOUT = 3.0

# A check: None when healthy, else why not (a short sentence for the answer and the log).
Check = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, object]


class HealthServer:
    """Serves the two paths on `address` (host:port, as METRICS_ADDRESS) from the running loop."""

    def __init__(self, address: str, checks: dict[str, Check]) -> None:
        self._host, self._port = split_address(address)
        self._checks = checks
        self._server: asyncio.Server | None = None
        self._last_problems: tuple[str, ...] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def answer(self, path: str) -> Answer:
        if path == LIVENESS:
            return Answer(200, {"status": "ok"})
        if path == READINESS:
            return await self._readiness()
        return Answer(404, {"status": "not found", "paths": [LIVENESS, READINESS]})

    async def _readiness(self) -> Answer:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        problems = {n: r for n, r in zip(names, results, strict=True) if r is not None}
        self._log_change(tuple(f"{n}: {r}" for n, r in problems.items()))
        if problems:
            return Answer(503, {"status": "not ready", "checks": problems})
        return Answer(200, {"status": "ready", "checks": dict.fromkeys(names, "ok")})

    @staticmethod
    async def _run(check: Check) -> str | None:
        try:
            return await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 (a failing check is an answer, not a crash)
            return f"{type(exc).__name__}: {exc}"

    def _log_change(self, problems: tuple[str, ...]) -> None:
        # Once per change, not per probe: a probe every 10 s would bury the log.
        if problems == self._last_problems:
            return
        self._last_problems = problems
        if problems:
            log.warning("worker not ready", problems=list(problems))
        else:
            log.info("worker ready")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, path, *_ = [*head.split(b"\r\n", 1)[0].decode("latin-1").split(" "), "", ""]
            if method not in {"GET", "HEAD"}:
                answer = Answer(405, {"status": "method not allowed"})
            else:
                answer = await self.answer(path.split("?", 1)[0])
            body = json.dumps(answer.body).encode()
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                answer.status, "Service Unavailable"
            )
            writer.write(
                f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
