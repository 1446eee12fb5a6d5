"""A TCP forwarder on loopback that a test can cut and restore: a network outage on demand.

Put between the worker and vcsim, it makes vCenter unreachable (connections refused, those
open reset) while vcsim itself keeps running with its state (power states, annotations,
tags, sessions), which stopping vcsim would lose. Bytes pass through untouched (TLS
included): the worker talks to the real vcsim. Restored, it listens on the same port again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType

from vsphere_preemption.devtools.devservers import free_port

_CHUNK = 65536


class TcpCut:
    def __init__(self, target_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (host, target_port)
        self.host = host
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def restore(self) -> TcpCut:
        """Listen (again) on the same port and forward every connection to the target."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        self._spawn(self._accept, listener)
        return self

    def cut(self) -> None:
        """Stop listening and reset every open connection: the target is unreachable."""
        with self._lock:
            listener, self._listener = self._listener, None
            open_now, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in open_now:
            with contextlib.suppress(OSError):
                # RST, not FIN: what the client's next read of a link that went away gets.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the relay's select
        for thread in self._threads:
            thread.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._open |= {client, upstream}
            self._spawn(self._relay, client, upstream)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        """Both directions of one connection, until either end closes (or the cut)."""
        other = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [])
                for sock in ready:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    other[sock].sendall(data)
        except (OSError, ValueError):
            return  # reset, or closed by the cut
        finally:
            with self._lock:
                self._open -= {a, b}
            a.close()
            b.close()

    def __enter__(self) -> TcpCut:
        return self.restore()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cut()
