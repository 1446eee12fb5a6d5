"""The test rig itself: both real servers start, answer, and stop."""

from __future__ import annotations

import socket

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from vsphere_preemption.devservers import TemporalDevServer, Vcsim


async def test_temporal_dev_server_serves_our_namespace(temporal_server: TemporalDevServer) -> None:
    client = await Client.connect(temporal_server.address, namespace="vsphere-preemption")
    info = await client.service_client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version


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
