from __future__ import annotations

import pytest

from vsphere_preemption.domain.model import MoRef
from vsphere_preemption.domain.workflow_ids import (
    IdMode,
    WorkflowAddress,
    parse_workflow_id,
    workflow_id,
)

CLUSTER = MoRef("domain-c7", "ClusterComputeResource")


def test_entity_mode_names_alarm_and_moref() -> None:
    assert workflow_id("cluster-cpu-above-80", CLUSTER) == "cluster-cpu-above-80/domain-c7"


def test_alarm_mode_is_the_go_form() -> None:
    assert workflow_id("cluster-cpu-above-80", CLUSTER, IdMode.ALARM) == "cluster-cpu-above-80"


def test_no_entity_addresses_the_alarm() -> None:
    assert workflow_id("cpu", None) == "cpu"


@pytest.mark.parametrize(
    ("alarm", "entity"),
    [
        ("cluster-cpu-above-80", "domain-c7"),
        ("cpu / memory high", "host-21"),  # a slash in the alarm name survives
        ("Datastore usage on disk", "datastore-15"),
        ("vm alarm", "vm-58"),
    ],
)
def test_round_trip(alarm: str, entity: str) -> None:
    wid = workflow_id(alarm, MoRef(entity, "X"))
    assert parse_workflow_id(wid) == WorkflowAddress(alarm, entity)


def test_ids_of_two_entities_differ() -> None:
    a = workflow_id("cpu", MoRef("domain-c7", "ClusterComputeResource"))
    b = workflow_id("cpu", MoRef("domain-c8", "ClusterComputeResource"))
    assert a != b


def test_plain_alarm_id_parses_without_entity() -> None:
    assert parse_workflow_id("cpu/high") == WorkflowAddress("cpu/high", None)
    assert parse_workflow_id("preempctl-run") == WorkflowAddress("preempctl-run", None)


@pytest.mark.parametrize("bad", ["", "vm 58", "a/b", "VM-58"])
def test_refuses_what_is_not_a_moref(bad: str) -> None:
    with pytest.raises(ValueError, match="managed object"):
        workflow_id("cpu", MoRef(bad, "VirtualMachine"))


def test_refuses_empty_alarm() -> None:
    with pytest.raises(ValueError, match="alarm name"):
        workflow_id("", CLUSTER)
