"""The security tests' servers: a test PKI, and nginx terminating TLS in front of the
session's Temporal dev server, which has no TLS of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.security.tls_kit import Nginx, Pki, make_pki, tls_server
from vsphere_preemption.devtools.devservers import TemporalDevServer

# Made up for the tests; searched for in every log line, history and event (test_secrets).
API_KEY = "tk-9f3c2b7e-temporal-api-key-never-logged"


@dataclass(frozen=True)
class TemporalProxy:
    nginx: Nginx
    pki: Pki
    plain: str  # the dev server itself: no TLS

    @property
    def tls(self) -> str:
        """TLS, no client certificate asked for; logs each request's Authorization header."""
        return f"127.0.0.1:{self.nginx.ports[0]}"

    @property
    def mtls(self) -> str:
        """TLS with a client certificate signed by the test CA required."""
        return f"127.0.0.1:{self.nginx.ports[1]}"

    @property
    def mtls_key(self) -> str:
        """mTLS, and `authorization: Bearer API_KEY` required (401 otherwise), as Temporal
        Cloud wants either."""
        return f"127.0.0.1:{self.nginx.ports[2]}"

    def authorizations(self, address: str) -> list[str]:
        """The Authorization headers the requests to `address` came with, in order."""
        port = address.rpartition(":")[2]
        lines = self.nginx.access_log.read_text().splitlines()
        return [line.split(" ", 2)[2].strip('"') for line in lines if line.startswith(port + " ")]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def temporal_proxy(
    temporal_server: TemporalDevServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TemporalProxy]:
    upstream = f"grpc://{temporal_server.address}"
    servers = f"""
  server {{
    {tls_server("{port0}", pki)}
    location / {{ grpc_pass {upstream}; }}
  }}
  server {{
    {tls_server("{port1}", pki, client_certs=True)}
    location / {{ grpc_pass {upstream}; }}
  }}
  server {{
    {tls_server("{port2}", pki, client_certs=True)}
    location / {{
      if ($http_authorization != "Bearer {API_KEY}") {{ return 401; }}
      grpc_pass {upstream};
    }}
  }}
"""
    with Nginx(tmp_path_factory.mktemp("nginx-temporal"), servers, 3) as nginx:
        yield TemporalProxy(nginx, pki, temporal_server.address)


def tls_env(proxy: TemporalProxy, address: str, **files: Path | str) -> dict[str, str]:
    """TEMPORAL_URL and the TLS variables: ca=, cert=, key=, api_key_file=, tls=."""
    names = {
        "ca": "TEMPORAL_TLS_CA",
        "cert": "TEMPORAL_TLS_CERT",
        "key": "TEMPORAL_TLS_KEY",
        "api_key_file": "TEMPORAL_API_KEY_FILE",
        "tls": "TEMPORAL_TLS",
        "server_name": "TEMPORAL_TLS_SERVER_NAME",
    }
    return {"TEMPORAL_URL": address, **{names[k]: str(v) for k, v in files.items()}}
