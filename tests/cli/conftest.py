"""Fixtures of the `preemptctl workflow` tests: the server flags, a closed port, a fresh CLI
workflow."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from vsphere_preemption.devtools.devservers import TemporalDevServer, free_port
from vsphere_preemption.wire import CLI_WORKFLOW_ID


@pytest.fixture
def server(temporal_server: TemporalDevServer) -> list[str]:
    return ["-s", temporal_server.address]


@pytest.fixture
def closed_port() -> str:
    return f"127.0.0.1:{free_port()}"  # bound, then released: nothing listens there


async def _terminate_cli_workflow(client: Client) -> None:
    handle = client.get_workflow_handle(CLI_WORKFLOW_ID)
    try:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test isolation")
    except RPCError:
        pass  # never started: nothing to clean


@pytest.fixture
async def fresh_cli_workflow(temporal_client: Client) -> AsyncIterator[None]:
    """`run` always addresses `preempctl-run`: no run of it may be open around a test."""
    await _terminate_cli_workflow(temporal_client)
    yield
    await _terminate_cli_workflow(temporal_client)
