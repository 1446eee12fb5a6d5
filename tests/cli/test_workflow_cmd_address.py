"""The flags `run`, `status`, `cancel` and `plan` share: `--entity`, the policy overrides,
and which workflow `--alarm`/`--entity`/`--workflow-id` address. Pure: nothing is sent."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from vsphere_preemption.cli.workflow_input import (
    InvalidInput,
    address_workflow,
    build_request,
    parse_entity,
    parse_policy_overrides,
)
from vsphere_preemption.domain.model import MoRef
from vsphere_preemption.domain.policy import Policy, PriorityPolicy
from vsphere_preemption.domain.workflow_ids import IdMode

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "ref"),
    [
        ("ClusterComputeResource:domain-c7", MoRef("domain-c7", "ClusterComputeResource")),
        ("domain-c7", MoRef("domain-c7", "ClusterComputeResource")),
        ("domain-s30", MoRef("domain-s30", "ComputeResource")),
        ("host-21", MoRef("host-21", "HostSystem")),
        ("resgroup-8", MoRef("resgroup-8", "ResourcePool")),
        ("resgroup-v12", MoRef("resgroup-v12", "VirtualApp")),
        ("datastore-15", MoRef("datastore-15", "Datastore")),
        ("datacenter-2", MoRef("datacenter-2", "Datacenter")),
        ("group-d1", MoRef("group-d1", "Folder")),
        ("vm-58", MoRef("vm-58", "VirtualMachine")),
        (" HostSystem:host-21 ", MoRef("host-21", "HostSystem")),
        # The type given wins over the prefix: a prefix is a convention, not a promise.
        ("ResourcePool:resgroup-v12", MoRef("resgroup-v12", "ResourcePool")),
    ],
)
def test_entity_is_type_and_moref_or_a_moref_whose_prefix_says_its_type(
    given: str, ref: MoRef
) -> None:
    assert parse_entity(given) == ref


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("", "is not a managed object"),
        ("cluster-1", "the type of a cluster- moref is unknown"),
        ("Network:network-7", "type 'Network' holds no VMs"),
        ("ClusterComputeResource:", "is not a managed object"),
        ("ClusterComputeResource:domain c7", "is not a managed object"),
        ("domain-c7/x", "is not a managed object"),
        ("my cluster", "is not a managed object"),
    ],
)
def test_an_entity_that_names_nothing_is_refused_saying_why(given: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)):
        parse_entity(given)


def test_run_sends_entity_dry_run_and_policy_overrides() -> None:
    request = build_request(
        tag="preemptible", criticality="HIGH", event=None, reply_to="", now=NOW,
        entity="domain-c7", dry_run=True,
        policy_override='{"maxVMs": 3, "targets": {"cpu": 70}}',
        policy_sets=["targets.memory=80%", "scope=vcenter", "maxVMs=4"],
    )  # fmt: skip
    wire = request.to_wire()
    assert wire["entity"] == {"Type": "ClusterComputeResource", "Value": "domain-c7"}
    assert wire["dryRun"] is True
    assert wire["policy"] == {
        "maxVMs": 4,  # --set wins over --policy-override
        "targets": {"cpu": 70, "memory": "80%"},
        "scope": "vcenter",
    }
    assert list(wire)[:4] == ["tag", "criticality", "event", "replyTo"]


def test_run_without_the_new_flags_sends_what_the_go_cli_sends() -> None:
    wire = build_request(
        tag="preemptible", criticality="LOW", event=None, reply_to="", now=NOW
    ).to_wire()
    assert list(wire) == ["tag", "criticality", "event", "replyTo"]


@pytest.mark.parametrize(
    ("override", "sets", "says"),
    [
        ("{", (), "--policy-override is not valid JSON"),
        ("[1]", (), "must be a JSON object"),
        ('{"maxVMs": 0}', (), "maxVMs must be at least 1"),
        ('{"colour": "red"}', (), "colour is not a field"),
        ("", ("maxVMs",), "must be key=value"),
        ("", ("targets..cpu=1",), "is not a policy field path"),
        ("", ("targets.cpu=170",), "targets.cpu must be between 1 and 100"),
        ("", ("scope=cluster",), "scope must be one of: entity, vcenter"),
        # every bad field at once
        ("", ("maxVMs=x", "dryRun=maybe"), "maxVMs must be an integer; dryRun must be"),
    ],
)
def test_bad_policy_overrides_are_refused_naming_the_field(
    override: str, sets: tuple[str, ...], says: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)):
        parse_policy_overrides(override, sets)


def test_set_values_read_as_json_where_they_can_and_null_resets() -> None:
    overrides = parse_policy_overrides(
        None, ["dryRun=true", "targets.cpu=null", "priority.default=2", "protection.tag=never",
               "protection.category=preemption"]
    )  # fmt: skip
    assert overrides == {
        "dryRun": True,
        "targets": {"cpu": None},
        "priority": {"default": 2},
        "protection": {"tag": "never", "category": "preemption"},
    }
    assert parse_policy_overrides("", ()) is None


def test_overrides_are_checked_over_the_policy_given() -> None:
    # Levels need a category: the defaults have none, a worker's policy may.
    with pytest.raises(InvalidInput, match=re.escape("priority.category is required")):
        parse_policy_overrides(None, ["priority.levels.batch=1"])
    base = Policy(priority=PriorityPolicy(category="preemption-priority"))
    assert parse_policy_overrides(None, ["priority.levels.batch=1"], base) == {
        "priority": {"levels": {"batch": 1}}
    }


def _address(**flags: Any) -> str:
    given: dict[str, Any] = {"workflow_id_flag": None, "alarm": None, "entity": None}
    return address_workflow(**{**given, "id_mode": None, **flags}, default="preempctl-run")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ({"workflow_id_flag": "a", "alarm": "cpu"}, "either --workflow-id or --alarm"),
        ({"workflow_id_flag": "a", "entity": "domain-c7"}, "either --workflow-id or --alarm"),
        ({"workflow_id_flag": "a", "id_mode": IdMode.ALARM}, "not --workflow-id"),
        ({"workflow_id_flag": " "}, "--workflow-id must not be empty"),
        ({"entity": "domain-c7"}, "--entity needs --alarm"),
        ({"id_mode": IdMode.ALARM}, "need --alarm"),
        ({"alarm": ""}, "--alarm must not be empty"),
        ({"alarm": "cpu", "entity": "domain-c7", "id_mode": IdMode.ALARM}, "drop --entity"),
        ({"alarm": "cpu", "entity": "cluster-7"}, "moref is unknown"),
    ],
)
def test_conflicting_or_empty_address_flags_are_refused(flags: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)):
        _address(**flags)


def test_addresses() -> None:
    assert _address() == "preempctl-run"
    assert _address(workflow_id_flag="cpu/domain-c7") == "cpu/domain-c7"
    assert _address(alarm="cpu", entity="ClusterComputeResource:domain-c7") == "cpu/domain-c7"
    assert _address(alarm="cpu", entity="domain-c7", id_mode=IdMode.ENTITY) == "cpu/domain-c7"
    assert _address(alarm="cpu", id_mode=IdMode.ALARM) == "cpu"
