"""Why a connection to Temporal failed, said as the setting to check.

The SDK's Rust core reports a failed connection as Rust debug output (rustls, tonic, the OS
error inside it). `core_reason` turns what it recognizes into the line a person reads when the
CA, the client certificate or its key is wrong, and anything else into its innermost message.

Some failures the error does not name. gRPC in plain HTTP/2 to a TLS port fails in more than
one way, depending on timing: the client reads the server's TLS alert as an HTTP/2 frame
(`FRAME_SIZE_ERROR`), or, when the server closes with our unread preface in its buffer, the
reset arrives first and throws the alert away: the core then says only "operation was
canceled". On a loaded machine the second happens now and then, so the message could not be
read from the error alone. A TLS handshake of our own (`speaks_tls`, asked by `wants_tls`
only after a plain connection failed) says it for certain, and names the fix
(TEMPORAL_TLS=true).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vsphere_preemption.settings import TemporalSecurity

# TLS failures as the Rust core words them (rustls, tonic), and what to check: the line a
# person reads when the CA, the client certificate or its key is wrong.
# Plain HTTP/2 to a port that wants TLS (from the error, or from the probe after a failure).
WANTS_TLS = (
    "the server did not answer in plain HTTP/2: if it wants TLS, set TEMPORAL_TLS=true "
    "(or TEMPORAL_TLS_CA)"
)
_TLS_FAILURES = (
    (
        "InvalidCertificate(UnknownIssuer)",
        "TLS: the server's certificate is not signed by a trusted CA (check TEMPORAL_TLS_CA)",
    ),
    (
        "InvalidCertificate(NotValidForName",
        "TLS: the server's certificate is not valid for this host name "
        "(check TEMPORAL_TLS_SERVER_NAME)",
    ),
    ("InvalidCertificate(Expired", "TLS: the server's certificate has expired"),
    (
        "InconsistentKeys",
        "TLS: TEMPORAL_TLS_KEY is not the private key of TEMPORAL_TLS_CERT",
    ),
    (
        "CertificateRequired",
        "TLS: the server wants a client certificate (set TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY)",
    ),
    (
        "BadCertificate",
        "TLS: the server refused the client certificate (check TEMPORAL_TLS_CERT)",
    ),
    (
        "UnknownCA",
        "TLS: the server does not trust the client certificate's CA (check TEMPORAL_TLS_CERT)",
    ),
    (
        # A TLS-terminating HTTP proxy (nginx) answers a missing or refused client
        # certificate with a plain 400 page, after the handshake.
        "400 Bad Request",
        "the server answered HTTP 400 Bad Request, as a TLS proxy does to a missing or "
        "refused client certificate (check TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY)",
    ),
    (
        "401 Unauthorized",
        "the server answered HTTP 401 Unauthorized (check TEMPORAL_API_KEY_FILE)",
    ),
    (
        "H2NotNegotiated",
        "TLS: the server did not offer HTTP/2 (ALPN h2), which gRPC needs: a TLS proxy in "
        "front of Temporal must speak HTTP/2",
    ),
    (
        "InvalidContentType",
        "TLS: the server does not speak TLS (check TEMPORAL_TLS and the port)",
    ),
    (
        # Plain HTTP/2 to a TLS port: the server's TLS alert read as an HTTP/2 frame.
        "FRAME_SIZE_ERROR",
        WANTS_TLS,
    ),
    (
        "CorruptMessage",
        "TLS: the server does not speak TLS (check TEMPORAL_TLS and the port)",
    ),
)


def core_reason(text: str) -> str:
    """The useful part of the Rust core's one-line connection error."""
    for marker, reason in _TLS_FAILURES:
        if marker in text:
            return reason
    # The core wraps the OS reason in Rust debug output: keep the innermost message.
    for pattern in (r'message: "([^"]+)"', r'error: "([^"]+)"', r'ConnectError\("([^"]+)"'):
        found = re.findall(pattern, text)
        if found:
            return str(found[-1])
    return text.removeprefix("Failed client connect: ")[:200]


async def wants_tls(
    target: str, security: TemporalSecurity | None, error: BaseException, reason: str
) -> bool:
    """A plain connection failed in a way its error does not name: does the port want TLS?"""
    if (security is not None and security.tls) or reason == WANTS_TLS:
        return False
    if isinstance(error, TimeoutError):
        return False  # no answer at all: a probe would wait as long again
    return await asyncio.to_thread(speaks_tls, target)


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
