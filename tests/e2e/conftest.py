"""The end-to-end tests' default fixtures: a World on the usage inventory, and the workflows a
test started, ended when it is over (tests/e2e/world.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from tests.e2e.world import World, world_on
from tests.vsphere.usage_inventory import UsageInventory
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim


@pytest.fixture
def worker_settings() -> dict[str, str]:
    """The worker's settings beyond the World's; a test file overrides this fixture."""
    return {}


@pytest.fixture
def world(
    usage_vcsim: Vcsim,
    usage_inventory: UsageInventory,
    temporal_server: TemporalDevServer,
    temporal_client: Client,
    tmp_path: Path,
    worker_settings: dict[str, str],
    request: pytest.FixtureRequest,
) -> Iterator[World]:
    queue_prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")  # its file
    with world_on(
        usage_vcsim, usage_inventory, temporal_server, temporal_client, tmp_path, queue_prefix,
        **worker_settings,
    ) as world:  # fmt: skip
        yield world


@pytest.fixture
async def handles(temporal_client: Client) -> AsyncIterator[list[WorkflowHandle[Any, Any]]]:
    started: list[WorkflowHandle[Any, Any]] = []
    yield started
    for handle in started:
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")
