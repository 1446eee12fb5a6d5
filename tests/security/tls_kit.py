"""What the security tests put around the real servers: a test PKI made with the `openssl`
CLI, and nginx (Debian's; scripts/setup installs it) as the TLS-terminating proxy.

nginx, not stunnel: gRPC's Rust client (tonic, in temporalio's core) insists on HTTP/2
negotiated by ALPN ("H2NotNegotiated"), which stunnel 5.68 does not offer; nginx's
`grpc_pass` behind `listen ... ssl http2` does, and checks client certificates and headers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from vsphere_preemption.devtools.devservers import free_ports


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, f"openssl {args[0]}: {done.stderr}"


@dataclass(frozen=True)
class Pki:
    """PEM files: a test CA, a server certificate it signed for localhost and 127.0.0.1, a
    client certificate it signed, another CA (the wrong one) with a client certificate of its
    own, and a key that belongs to no certificate here (the wrong key)."""

    directory: Path

    def __getattr__(self, name: str) -> Path:
        # pki.ca_crt -> directory/ca.crt
        stem, _, ext = name.rpartition("_")
        return self.directory / f"{stem}.{ext}"


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")

    # The extensions a strict verifier asks for (Python 3.13's default VERIFY_X509_STRICT
    # refuses a CA without key usage: "CA cert does not include key usage extension").
    def ca(name: str) -> None:
        _openssl("req", "-x509", *key, "-days", "2", "-subj", f"/CN={name} test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)  # fmt: skip

    def leaf(name: str, issuer: str, san: str) -> None:
        _openssl("req", *key, "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=directory)  # fmt: skip
        (directory / f"{name}.ext").write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt",
                 "-CAkey", f"{issuer}.key", "-CAcreateserial", "-days", "2",
                 "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=directory)  # fmt: skip

    ca("ca")
    ca("otherca")
    leaf("server", "ca", "DNS:localhost,IP:127.0.0.1")
    leaf("client", "ca", "DNS:client")
    leaf("stranger", "otherca", "DNS:stranger")
    leaf("spare", "ca", "DNS:spare")  # spare.key: a key, but not client.crt's
    return Pki(directory)


class Nginx:
    """nginx in the foreground, one process, serving the given `server { }` blocks; every
    `{port<N>}` in them is replaced by a free port (`ports[N]`)."""

    def __init__(self, directory: Path, servers: str, port_count: int) -> None:
        self.directory = directory
        self.ports = free_ports(port_count)
        for i, port in enumerate(self.ports):
            servers = servers.replace(f"{{port{i}}}", str(port))
        self.servers = servers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def start(self) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert os.path.exists(binary), "nginx is not installed: run scripts/setup"
        d = self.directory
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp;
  scgi_temp_path {d}/tmp;
  # What the tests read: the Authorization header each request came with.
  log_format auth '$server_port $status "$http_authorization"';
  access_log {self.access_log} auth;
  {self.servers}
}}
""")
        self.proc = subprocess.Popen(
            [binary, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        for port in self.ports:
            while True:
                assert self.proc.poll() is None, (d / "error.log").read_text(errors="replace")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"nginx does not listen on {port}"
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def tls_server(port: str, pki: Pki, *, client_certs: bool = False) -> str:
    """The TLS lines of a `server { }` listening on 127.0.0.1:`port` (HTTP/2 by ALPN)."""
    lines = [
        f"listen 127.0.0.1:{port} ssl http2;",
        f"ssl_certificate {pki.server_crt};",
        f"ssl_certificate_key {pki.server_key};",
    ]
    if client_certs:
        lines += [f"ssl_client_certificate {pki.ca_crt};", "ssl_verify_client on;"]
    return "\n    ".join(lines)


class Stunnel:
    """stunnel terminating TLS in front of `upstream` (host:port): TLS without ALPN, which a
    gRPC client refuses; here to show the line an operator gets for such a proxy."""

    def __init__(self, directory: Path, upstream: str, pki: Pki) -> None:
        self.directory = directory
        self.port = free_ports(1)[0]
        self.upstream = upstream
        self.pki = pki
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Stunnel:
        binary = shutil.which("stunnel4") or shutil.which("stunnel")
        assert binary, "stunnel4 is not installed: run scripts/setup"
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "stunnel.conf"
        conf.write_text(
            "foreground = yes\npid =\n[temporal]\n"
            f"accept = {self.address}\nconnect = {self.upstream}\n"
            f"cert = {self.pki.server_crt}\nkey = {self.pki.server_key}\n"
        )
        self.proc = subprocess.Popen(
            [binary, str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, "stunnel exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "stunnel does not listen"
                time.sleep(0.05)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
