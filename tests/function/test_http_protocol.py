"""The HTTP protocol `preemptctl function` serves with (function/http_protocol.py): a reply's
writes leave as one, and nothing is lost on a kept-alive or a closed connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

from tests.function.conftest import alarm_event, as_binary, function_settings
from tests.function.test_boot import served
from vsphere_preemption.function.app import MAX_BODY, create_app
from vsphere_preemption.function.boot import Booting
from vsphere_preemption.function.http_protocol import _CoalescingTransport

ALARM = "cluster-cpu-above-80"


async def test_writes_of_one_loop_turn_reach_the_socket_as_one() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    writes: list[bytes] = []
    real_write = transport.write

    def counted(data: bytes | bytearray | memoryview) -> None:  # the real write, counted
        writes.append(bytes(data))
        real_write(data)

    transport.write = counted  # type: ignore[method-assign]
    coalescing = _CoalescingTransport(transport, loop)
    coalescing.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    coalescing.write(b"{}")
    assert writes == []  # held until the loop turns
    await asyncio.sleep(0)
    assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    coalescing.write(b"bye")
    coalescing.close()  # what is pending leaves first
    await asyncio.sleep(0.01)
    assert writes[-1] == b"bye"
    theirs.setblocking(False)
    assert b"{}" in await loop.sock_recv(theirs, 4096)
    theirs.close()


def raw_request(headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{k}: {v}" for k, v in {**headers, "content-length": str(len(body))}.items()]
    return (
        "POST / HTTP/1.1\r\nhost: function\r\n" + "\r\n".join(lines) + "\r\n\r\n"
    ).encode() + body


async def read_reply(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    status = await reader.readline()
    headers = {}
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, await reader.readexactly(int(headers["content-length"]))


async def test_kept_alive_replies_in_order_and_a_413_arrives_whole_before_the_close() -> None:
    app = Booting(lambda: create_app(function_settings(ALARM)))
    async with served(app) as client:
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ids = []
        for _ in range(3):  # pipelined on one connection
            headers, body = as_binary(alarm_event("other", "green", "red"))
            ids.append(headers["ce-id"])
            writer.write(raw_request(headers, body))
        for event_id in ids:
            status, _, body = await read_reply(reader)
            assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["eventID"] == event_id
        headers, _ = as_binary(alarm_event(ALARM, "green", "red"))
        writer.write(raw_request(headers, b"x" * (MAX_BODY + 1)))
        status, reply_headers, body = await read_reply(reader)
        assert status.startswith(b"HTTP/1.1 413") and reply_headers["connection"] == "close"
        assert "over 1048576 bytes" in json.loads(body)["error"]
        try:  # then closed by the server: a reset, as the body it refused is left unread
            rest = await reader.read()
        except ConnectionResetError:
            rest = b""
        assert rest == b""
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
