"""The test rig itself: both real servers start, answer, and stop."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from vsphere_preemption.devtools.devservers import (
    ServerFailed,
    TemporalDevServer,
    Vcsim,
    free_ports,
)


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
