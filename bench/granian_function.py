"""The function's app served by granian instead of uvicorn, for the side-by-side benchmark only.

    python bench/granian_function.py [--host 127.0.0.1] [--port N]

As `preemptctl function` serves it (function/boot.py's Booting in front: liveness at once, the
app built in a thread, Temporal connected in the background), but on granian's embedded
server (a Rust HTTP/1 server, hyper, whose I/O and parsing run on a thread of its own) in one
process on uvloop: the same settings from the environment, the same app. Needs granian in the
interpreter's environment (`pip install granian`); not a dependency of the project.

The 64 KiB head limit is hyper's read buffer here (a longer head: hyper's 431); a refused
body's 413 is answered and then the rest of the body read and dropped by the app (hyper
closes what is left unread: function/app.py's `drain`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import uvloop
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server

from vsphere_preemption.cli.function_cmd import _build, _port
from vsphere_preemption.function.boot import Booting
from vsphere_preemption.function.http_protocol import MAX_HEAD


async def serve(host: str, port: int) -> int:
    failures: list[BaseException] = []
    server: Server | None = None

    def failed(exc: BaseException) -> None:
        failures.append(exc)
        if server is not None:
            server.stop()

    server = Server(
        Booting(lambda: _build(host, port), on_failure=failed),
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(max_buffer_size=MAX_HEAD),
        log_enabled=False,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    await server.serve()
    if failures:
        print(f"granian function: cannot start: {failures[0]}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    port = args.port if args.port is not None else _port(os.environ) or 8080
    return uvloop.run(serve(args.host, port))


if __name__ == "__main__":
    sys.exit(main())
