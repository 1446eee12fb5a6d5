"""Shared fixtures: the real servers (Temporal dev server, vcsim) and the sample events.

Servers are started once per session on loopback ports they pick, and stopped at
the end. Tests that use them carry the `temporal` / `vcsim` markers for selection;
the README's test command runs every test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.vsphere.usage_inventory import usage_inventory, usage_vcsim
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.wire import DEFAULT_NAMESPACE

FIXTURES = Path(__file__).parent / "fixtures"

# vcsim serving an inventory with usage figures (tests/vsphere/usage_inventory.py), for
# any test package: `usage_inventory` (session: the figures), `usage_vcsim` (per test).
__all__ = ["usage_inventory", "usage_vcsim"]

# The `worker_rig` fixture (tests/temporal/rig.py): a plugin, not an import, since the rig
# imports tests.temporal.helpers, which imports this module.
pytest_plugins = ["tests.temporal.rig"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # scripts/run_pytest.py takes the verdict from here, not from how the process
    # exits: temporalio may abort the interpreter at exit (sdk-python#300). Not the
    # programs' remedies (temporal.collected_runtime.run_collected, the worker's os._exit):
    # the test process holds many clients and servers' runtimes, and it must finalize normally
    # for pytest's summary and the coverage data, so the verdict is carried out of it.
    status_file = os.environ.get("VSPHERE_PREEMPTION_PYTEST_STATUS")
    if status_file:
        Path(status_file).write_text(str(int(exitstatus)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that take a server fixture get its marker, so `-m "not vcsim"` selects.
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"temporal_server", "temporal_client"}:
            item.add_marker(pytest.mark.temporal)
        if names & {"vcsim", "vcsim_factory", "usage_vcsim", "usage_inventory"}:
            item.add_marker(pytest.mark.vcsim)


@pytest.fixture(autouse=True)
def _a_test_that_starts_a_server_is_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that starts a server itself must carry its marker, or it fails saying so.

    Server fixtures mark their tests (above); this catches the rest, so that `-m "not
    temporal"` really starts no Temporal server. Tests that run `preemptctl dev`/`demo` as a
    process are marked by hand.
    """
    for server_class, marker in ((TemporalDevServer, "temporal"), (Vcsim, "vcsim")):
        start = server_class.start

        def checked_start(self: Any, *a: Any, _start: Any = start, _m: str = marker) -> Any:
            if request.node.get_closest_marker(_m) is None:
                pytest.fail(f"{request.node.nodeid} starts a {type(self).__name__}: mark it {_m}")
            return _start(self, *a)

        monkeypatch.setattr(server_class, "start", checked_start)


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalDevServer]:
    with TemporalDevServer(namespaces=(DEFAULT_NAMESPACE, "other-namespace")) as server:
        yield server


@pytest.fixture(scope="session")
async def temporal_client(temporal_server: TemporalDevServer) -> Any:
    from temporalio.client import Client

    return await Client.connect(temporal_server.address, namespace=DEFAULT_NAMESPACE)


@pytest.fixture(scope="session")
def vcsim() -> Iterator[Vcsim]:
    """A session-wide simulator with the default inventory (1 cluster of 3 hosts)."""
    with Vcsim() as sim:
        yield sim


@pytest.fixture
def vcsim_factory() -> Iterator[Any]:
    """Start simulators with a custom inventory; all are stopped after the test."""
    started: list[Vcsim] = []

    def start(*args: str) -> Vcsim:
        sim = Vcsim(args=args).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
