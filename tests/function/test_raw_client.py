"""The fuzzer's HTTP client (process.py's RawClient) against a scripted server: it opens a
new connection where HTTP lets the server close one, and reports a close the answer did not
announce (the protocol defect the fuzzer is there to catch)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.function.process import Dropped, RawClient, http_request

REQUEST = http_request("GET", "/", [], b"")


def answer(connection: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n" + connection + b"\r\nok"


@pytest.fixture
def server() -> Iterator[Callable[..., RawClient]]:
    """Starts a server that answers one request on each connection, with the next of the
    answers given, then closes it; gives a client of it."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def serve(answers: list[bytes]) -> None:
        for reply in answers:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)  # the request: small, one read holds it
                conn.sendall(reply)

    def start(*answers: bytes, reuse_within: float = 60) -> RawClient:
        thread = threading.Thread(target=serve, args=(list(answers),), daemon=True)
        thread.start()
        threads.append(thread)
        # Reuse for a minute: a paused test must not make the client open a new connection.
        return RawClient(listener.getsockname()[1], timeout=10, reuse_within=reuse_within)

    yield start
    for thread in threads:
        thread.join(10)
    listener.close()


def test_a_connection_left_idle_is_replaced_not_reused(server: Callable[..., RawClient]) -> None:
    with server(answer(), answer(), reuse_within=0) as client:
        assert not client.send(REQUEST, method="GET").closed
        client.wait_until_closed_by_server(timeout=10)  # as if it were its idle timeout
        assert client.send(REQUEST, method="GET").status == 200
        assert (client.connections, client.idle_reopened) == (2, 1)


def test_an_answer_saying_close_is_followed_by_a_new_connection(
    server: Callable[..., RawClient],
) -> None:
    with server(answer(b"connection: close\r\n"), answer()) as client:
        assert client.send(REQUEST, method="GET").closed
        assert not client.send(REQUEST, method="GET").closed
        assert (client.connections, client.idle_reopened) == (2, 0)


def test_a_close_the_answer_did_not_announce_is_reported(
    server: Callable[..., RawClient],
) -> None:
    with server(answer()) as client:
        first = client.send(REQUEST, method="GET")
        assert (first.status, first.closed) == (200, False)
        client.wait_until_closed_by_server(timeout=10)  # at once, not after a while idle
        with pytest.raises(Dropped, match="did not say Connection: close"):
            client.send(REQUEST, method="GET")
