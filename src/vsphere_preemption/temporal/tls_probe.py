"""Does a server's port speak TLS? Asked only after a plain (TLS-off) connection failed.

gRPC in plain HTTP/2 to a TLS port fails in more than one way, depending on timing: the
client reads the server's TLS alert as an HTTP/2 frame (`FRAME_SIZE_ERROR`), or, when the
server closes with our unread preface in its buffer, the reset arrives first and throws the
alert away: the core then says only "operation was canceled". On a loaded machine the second
happens now and then, so the message could not be read from the error alone. A TLS
handshake of our own says it for certain, and names the fix (TEMPORAL_TLS=true).
"""

from __future__ import annotations

import socket
import ssl

PROBE_TIMEOUT = 2.0


def speaks_tls(target: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when `host:port` answers a TLS ClientHello as a TLS server does.

    Blocking (call it in a thread). A handshake that completes, or that the server ends with
    a TLS alert (a client certificate it wants, a version it refuses), is TLS; a plain
    answer, a close or no answer is not. Nothing is verified: this only names a setting.
    """
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return False
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        # A server that is not TLS answers our ClientHello with bytes that are not a TLS
        # record (an HTTP/2 GOAWAY, an HTTP error page), or closes: OpenSSL calls that a wrong
        # version number, a record layer failure or an unexpected EOF. Any other SSL error
        # came from a TLS peer.
        reason = (exc.reason or "").upper()
        return not any(
            marker in reason
            for marker in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "EOF")
        )
    except OSError:
        return False
