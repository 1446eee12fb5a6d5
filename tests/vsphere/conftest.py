"""Helpers for the vSphere adapter tests: clients on vcsim, an admin pyVmomi view.

Every test that changes an inventory starts its own vcsim (`vcsim_factory`), so tests
never see each other's tags, power states or custom fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.vsphere.raw_session import RawSession
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig

# Two clusters of one host each and a standalone host, 3 VMs on each: 9 VMs, quick to start.
SMALL = ("-cluster", "2", "-host", "1", "-vm", "3")
# Two clusters of two hosts and a standalone host: 30 VMs.
LARGER = ("-cluster", "2", "-host", "2", "-vm", "10")

MakeClient = Callable[..., VSphereClient]


def config_for(sim: Vcsim, **overrides: Any) -> VCenterConfig:
    values: dict[str, Any] = {
        "url": sim.url,
        "username": sim.username,
        "password": sim.password,
        "insecure": True,
    }
    values.update(overrides)
    return VCenterConfig(**values)


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """`make_client(sim, **client_kwargs)`; every client is closed after the test."""
    clients: list[VSphereClient] = []

    def make(sim: Vcsim, *, config: VCenterConfig | None = None, **kwargs: Any) -> VSphereClient:
        client = VSphereClient(config or config_for(sim), poll_interval=0.1, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def sim(vcsim_factory: Callable[..., Vcsim]) -> Vcsim:
    """A fresh small inventory for this test alone."""
    return vcsim_factory(*SMALL)


@pytest.fixture
def larger_sim(vcsim_factory: Callable[..., Vcsim]) -> Vcsim:
    """A fresh 30-VM inventory for this test alone."""
    return vcsim_factory(*LARGER)


@pytest.fixture
def client(sim: Vcsim, make_client: MakeClient) -> VSphereClient:
    return make_client(sim)


@pytest.fixture
def inventory(client: VSphereClient) -> Inventory:
    return Inventory(client)


class Admin(RawSession):
    """A separate raw pyVmomi session: what another vCenter user does behind our back."""

    def session_keys(self) -> set[str]:
        mine = self.content.sessionManager.currentSession.key
        return {s.key for s in self.content.sessionManager.sessionList} - {mine}

    def terminate_others(self) -> set[str]:
        keys = self.session_keys()
        if keys:
            self.content.sessionManager.TerminateSession(list(keys))
        return keys

    def field_names(self) -> list[str]:
        return [f.name for f in self.content.customFieldsManager.field or []]


@pytest.fixture
def admin(sim: Vcsim) -> Iterator[Admin]:
    view = Admin(sim)
    yield view
    view.close()
