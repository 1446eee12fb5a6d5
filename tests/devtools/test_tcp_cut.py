"""The TCP link a test cuts: bytes pass both ways; cut, the port refuses and open links reset;
restored, the same port forwards again. Against a plain echo server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from vsphere_preemption.devtools.tcp_cut import TcpCut


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
    server.close()
    thread.join(5)


def round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_cut_refuses_and_resets_restore_forwards_on_the_same_port(echo: int) -> None:
    with TcpCut(echo) as link:
        port = link.port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as before:
            assert round_trip(before, b"x" * 200_000) == b"x" * 200_000
            link.cut()
            # Reset under it: an error, or at best the end of the stream, never the echo.
            try:
                echoed = round_trip(before, b"after the cut")
            except OSError:
                echoed = b""
            assert echoed == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        link.restore()
        assert link.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as after:
            assert round_trip(after, b"back") == b"back"
