"""Temporal over TLS, mutual TLS and an API key, for real: nginx terminates TLS in front of
the dev server (conftest.py). `preemptctl` lists workflows through each; the worker and the
function refuse a wrong CA, a missing client certificate and a wrong key with one line.
(The function and the worker working through mTLS with an API key: test_secrets.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import API_KEY, TemporalProxy, tls_env
from tests.security.tls_kit import Stunnel
from vsphere_preemption.devtools.devservers import free_port
from vsphere_preemption.settings import TemporalSecurity
from vsphere_preemption.temporal.client import connect_failure_reason
from vsphere_preemption.temporal.connect_diagnosis import speaks_tls, wants_tls
from vsphere_preemption.wire import DEFAULT_NAMESPACE

pytestmark = pytest.mark.temporal

UNKNOWN_CA = "TLS: the server's certificate is not signed by a trusted CA (check TEMPORAL_TLS_CA)"
NO_CLIENT_CERT = (
    "the server answered HTTP 400 Bad Request, as a TLS proxy does to a missing or refused "
    "client certificate (check TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY)"
)
WRONG_KEY = "TLS: TEMPORAL_TLS_KEY is not the private key of TEMPORAL_TLS_CERT"
WRONG_API_KEY = "the server answered HTTP 401 Unauthorized (check TEMPORAL_API_KEY_FILE)"
NOT_TLS = "TLS: the server does not speak TLS (check TEMPORAL_TLS and the port)"
WANTS_TLS = (
    "the server did not answer in plain HTTP/2: if it wants TLS, set TEMPORAL_TLS=true "
    "(or TEMPORAL_TLS_CA)"
)
NO_ALPN = (
    "TLS: the server did not offer HTTP/2 (ALPN h2), which gRPC needs: a TLS proxy in front "
    "of Temporal must speak HTTP/2"
)


def preemptctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", *args],
        env={**clean, **env}, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def key_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "api-key"
    path.write_text(key + "\n")  # `echo key > file`: the newline is not part of the key
    return path


def test_preemptctl_lists_workflows_through_tls_mutual_tls_and_an_api_key(
    temporal_proxy: TemporalProxy, tmp_path: Path
) -> None:
    pki = temporal_proxy.pki
    client = {"cert": pki.client_crt, "key": pki.client_key}
    for address, files in (
        (temporal_proxy.tls, {"ca": pki.ca_crt}),
        (temporal_proxy.mtls, {"ca": pki.ca_crt, **client}),
        (temporal_proxy.mtls_key, {"ca": pki.ca_crt, **client,
                                   "api_key_file": key_file(tmp_path, API_KEY)}),
    ):  # fmt: skip
        env = tls_env(temporal_proxy, address, **files)
        done = preemptctl(env, "workflow", "list", "--server", address, "--json")
        assert done.returncode == 0, done.stderr
        assert isinstance(json.loads(done.stdout), list)
        assert API_KEY not in done.stdout + done.stderr
    # The SDK sent the key as a bearer token on every call through the keyed port, and
    # nothing through the others.
    sent = temporal_proxy.authorizations(temporal_proxy.mtls_key)
    assert sent and set(sent) == {f"Bearer {API_KEY}"}
    assert set(temporal_proxy.authorizations(temporal_proxy.tls)) == {"-"}


CASES = {
    # name: (which port, the files, the reason in the one line)
    "wrong CA": ("tls", {"ca": "otherca_crt"}, UNKNOWN_CA),
    "system CAs only": ("tls", {"tls": "true"}, UNKNOWN_CA),
    "missing client certificate": ("mtls", {"ca": "ca_crt"}, NO_CLIENT_CERT),
    "client certificate from another CA": (
        "mtls", {"ca": "ca_crt", "cert": "stranger_crt", "key": "stranger_key"}, NO_CLIENT_CERT
    ),
    "wrong key": ("mtls", {"ca": "ca_crt", "cert": "client_crt", "key": "spare_key"}, WRONG_KEY),
    "wrong API key": (
        "mtls_key", {"ca": "ca_crt", "cert": "client_crt", "key": "client_key",
                     "api_key_file": "wrong"}, WRONG_API_KEY,
    ),
    "TLS to a server without": ("plain", {"ca": "ca_crt"}, NOT_TLS),
    "no TLS to a server with": ("tls", {"tls": "false"}, WANTS_TLS),
}  # fmt: skip


def case_env(
    temporal_proxy: TemporalProxy, tmp_path: Path, case: str
) -> tuple[str, dict[str, str], str]:
    port, files, reason = CASES[case]
    address = getattr(temporal_proxy, port)
    values: dict[str, Path | str] = {}
    for name, value in files.items():
        if name == "api_key_file":
            values[name] = key_file(tmp_path, "tk-wrong")
        elif name == "tls":
            values[name] = value
        else:
            values[name] = getattr(temporal_proxy.pki, value)
    return address, tls_env(temporal_proxy, address, **values), reason


@pytest.mark.parametrize("case", CASES)
def test_preemptctl_refuses_bad_tls_with_one_line(
    temporal_proxy: TemporalProxy, tmp_path: Path, case: str
) -> None:
    address, env, reason = case_env(temporal_proxy, tmp_path, case)
    done = preemptctl(env, "workflow", "list", "--server", address)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"preemptctl workflow list: error: cannot reach the Temporal server at {address}: {reason}"
    ]


@pytest.mark.parametrize("case", ["wrong CA", "missing client certificate", "wrong key"])
def test_the_worker_refuses_bad_tls_with_one_line(
    temporal_proxy: TemporalProxy, tmp_path: Path, case: str
) -> None:
    address, env, reason = case_env(temporal_proxy, tmp_path, case)
    secret = tmp_path / "vsphere"
    secret.mkdir()
    (secret / "username").write_text("u")
    (secret / "password").write_text("p")
    env |= {
        "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "VCENTER_URL": "https://vcenter.example.com/sdk",
        "VCENTER_SECRET_PATH": str(secret),
    }
    done = preemptctl(env, "worker")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"preemptctl worker: cannot connect to Temporal at {address}: {reason}"
    ]


async def test_the_function_stays_unready_on_bad_tls_and_says_why_in_one_line(
    temporal_proxy: TemporalProxy, tmp_path: Path
) -> None:
    address, env, reason = case_env(temporal_proxy, tmp_path, "wrong CA")
    port = free_port()
    env |= {
        "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
        "TEMPORAL_TASKQUEUE": "tls-test",
        "VSPHERE_PREEMPTION_TAG": "preemptible",
        "VSPHERE_ALARM_NAME": "tls-alarm",
        "PORT": str(port),
        "LOG_FORMAT": "json",
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    log = tmp_path / "function.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vsphere_preemption", "function", "--host", "127.0.0.1"],
            env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    expected = f"cannot reach the Temporal server at {address}: {reason}"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(300):
                try:
                    ready = await http.get("/health/readiness")
                    if ready.json().get("reason") == expected:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log.read_text()
                await asyncio.sleep(0.05)
            assert ready.status_code == 503
            assert ready.json() == {"status": "not ready", "reason": expected}
    finally:
        proc.terminate()
        proc.wait(30)
    warnings = [
        json.loads(line) for line in log.read_text().splitlines() if "not reachable" in line
    ]
    assert warnings and {w["error"] for w in warnings} == {expected}


def test_a_tls_proxy_without_http2_is_named_in_one_line(
    temporal_proxy: TemporalProxy, tmp_path: Path
) -> None:
    """stunnel terminates TLS but offers no ALPN: gRPC's client gives up; the line says why."""
    with Stunnel(tmp_path / "stunnel", temporal_proxy.plain, temporal_proxy.pki) as stunnel:
        env = tls_env(temporal_proxy, stunnel.address, ca=temporal_proxy.pki.ca_crt)
        done = preemptctl(env, "workflow", "list", "--server", stunnel.address)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"preemptctl workflow list: error: cannot reach the Temporal server at "
        f"{stunnel.address}: {NO_ALPN}"
    ]


def test_the_tls_probe_tells_a_tls_port_from_a_plain_one(temporal_proxy: TemporalProxy) -> None:
    assert speaks_tls(temporal_proxy.tls)
    assert speaks_tls(temporal_proxy.mtls)  # the handshake ends without a client certificate
    assert not speaks_tls(temporal_proxy.plain)  # nginx in plain HTTP/2 (grpc_pass)
    assert not speaks_tls(f"127.0.0.1:{free_port()}")  # nothing listening


async def test_a_plain_connect_that_fails_unnamed_to_a_tls_port_says_it_wants_tls(
    temporal_proxy: TemporalProxy,
) -> None:
    """On a loaded machine the core may say only "operation was canceled" for plain HTTP/2 to
    a TLS port (the reset outran the TLS alert): the probe names the fix all the same."""
    canceled = RuntimeError("Failed client connect: operation was canceled")
    reason = connect_failure_reason(canceled)
    assert reason != WANTS_TLS
    assert await wants_tls(temporal_proxy.tls, None, canceled, reason)
    assert not await wants_tls(temporal_proxy.plain, None, canceled, reason)
    tls_on = TemporalSecurity(tls=True)
    assert not await wants_tls(temporal_proxy.tls, tls_on, canceled, reason)
