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


def test_with_a_vcenter_the_host_comes_before_the_moref() -> None:
    wid = workflow_id("cpu", CLUSTER, vcenter="vcsa-1.example.com")
    assert wid == "cpu/vcsa-1.example.com/domain-c7"
    # The same moref on another vCenter is another workflow.
    assert wid != workflow_id("cpu", CLUSTER, vcenter="vcsa-2.example.com")
    assert workflow_id("cpu", None, vcenter="127.0.0.1:8989") == "cpu/127.0.0.1:8989"
    assert workflow_id("cpu", CLUSTER, IdMode.ALARM, "[::1]:8989") == "cpu/[::1]:8989"


@pytest.mark.parametrize("bad", ["a/b.c", "", "VCSA.example.com", "vcsa example"])
def test_refuses_a_vcenter_that_would_not_parse_back(bad: str) -> None:
    with pytest.raises(ValueError, match="vCenter host"):
        workflow_id("cpu", CLUSTER, vcenter=bad)


@pytest.mark.parametrize(
    ("alarm", "entity", "vcenter"),
    [
        ("cluster-cpu-above-80", "domain-c7", "vcsa.example.com"),
        ("cpu / memory high", "host-21", "127.0.0.1:8989"),
        ("cpu/high", "domain-c7", "[::1]"),
        ("cpu", None, "vcsa.example.com"),
    ],
)
def test_round_trip_with_a_vcenter(alarm: str, entity: str | None, vcenter: str) -> None:
    ref = MoRef(entity, "X") if entity else None
    wid = workflow_id(alarm, ref, vcenter=vcenter)
    assert parse_workflow_id(wid) == WorkflowAddress(alarm, entity, vcenter)


def test_a_short_vcenter_host_is_written_but_reads_back_as_part_of_the_alarm() -> None:
    wid = workflow_id("cpu", CLUSTER, vcenter="vcsa")
    assert wid == "cpu/vcsa/domain-c7"
    assert parse_workflow_id(wid) == WorkflowAddress("cpu/vcsa", "domain-c7")


def test_single_vcenter_ids_parse_as_before() -> None:
    assert parse_workflow_id("cpu/high/domain-c7") == WorkflowAddress("cpu/high", "domain-c7")
    assert parse_workflow_id("cpu/domain-c7") == WorkflowAddress("cpu", "domain-c7")
    assert parse_workflow_id("cpu/high") == WorkflowAddress("cpu/high", None)
