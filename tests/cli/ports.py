"""Whether something listens on a loopback port: for the tests that start `dev` and `demo`."""

from __future__ import annotations

import socket


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
