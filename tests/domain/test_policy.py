"""The policy: read as people write it, every bad field named, overrides merged, round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vsphere_preemption.domain.model import Criticality, StopAction
from vsphere_preemption.domain.policy import (
    GroupPolicy,
    MaxUnavailable,
    Policy,
    PolicyError,
    PriorityPolicy,
    Protection,
    ResumePolicy,
    Scope,
    StopPolicy,
    Targets,
    policy_from_mapping,
)

FULL: dict[str, Any] = {
    "scope": "vcenter",
    "maxVMs": 4,
    "priority": {"category": "preemption-priority", "levels": {"low": 1, "high": 9}, "default": 5},
    "protection": {"category": "preemption", "tag": "never"},
    "groups": {
        "category": "app",
        "budgets": {"web": {"maxUnavailable": "25%"}, "db": {"maxUnavailable": 0}},
        "default": {"maxUnavailable": 2},
    },
    "targets": {"cpu": 70, "memory": "80%"},
    "dryRun": True,
}


def test_defaults_keep_todays_behaviour_but_scope() -> None:
    assert policy_from_mapping(None) == Policy()
    assert policy_from_mapping({}) == Policy()
    policy = Policy()
    assert policy.scope is Scope.ENTITY
    assert policy.max_vms == 10
    assert policy.priority.category is None and policy.priority.default == 0
    assert policy.protection == () and policy.groups is None
    assert not policy.targets.any
    assert policy.dry_run is False
    assert policy.tag_categories() == ()


def test_every_field_is_read() -> None:
    policy = policy_from_mapping(FULL)
    assert policy.scope is Scope.VCENTER
    assert policy.max_vms == 4
    assert policy.priority == PriorityPolicy("preemption-priority", {"low": 1, "high": 9}, 5)
    assert policy.protection == (Protection("preemption", "never"),)
    assert policy.groups == GroupPolicy(
        "app",
        {"web": MaxUnavailable(25, percent=True), "db": MaxUnavailable(0)},
        MaxUnavailable(2),
    )
    assert policy.targets == Targets(cpu=70.0, memory=80.0)
    assert policy.dry_run is True


def test_tag_categories_are_what_the_adapter_must_report_each_once() -> None:
    policy = policy_from_mapping(FULL)
    assert policy.tag_categories() == ("preemption-priority", "app", "preemption")
    shared = policy_from_mapping(
        {
            "priority": {"category": "x", "levels": {"a": 1}},
            "protection": {"category": "x", "tag": "k"},
        }
    )
    assert shared.tag_categories() == ("x",)


def test_one_error_names_every_bad_field_by_its_path() -> None:
    bad = {
        "scope": "datacenter",
        "maxVMs": 0,
        "maxVms": 3,  # a typo is a field that does not exist, not a silent default
        "priority": {"levels": {"low": "one", "mid": True}, "default": 1.5},
        "protection": {"category": "p"},
        "groups": {"category": "", "budgets": {"web": {"maxUnavailable": "150%"}, "db": {}}},
        "targets": {"cpu": 0, "memory": "lots", "disk": 50},
        "dryRun": "yes",
    }
    with pytest.raises(PolicyError) as err:
        policy_from_mapping(bad)
    message = str(err.value)
    for path in (
        "scope",
        "maxVMs must",
        "maxVms is not a field",
        "priority.levels.low",
        "priority.levels.mid",
        "priority.default",
        "priority.category is required",
        "protection.tag",
        "groups.category",
        "groups.budgets.web.maxUnavailable",
        "groups.budgets.db.maxUnavailable is required",
        "targets.cpu",
        "targets.memory",
        "targets.disk is not a field",
        "dryRun",
    ):
        assert path in message, path
    assert len(err.value.problems) == 15
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "policy must be an object"),
        ({"priority": "low"}, "priority must be an object"),
        ({"priority": {"category": "c", "levels": ["a"]}}, "priority.levels must be an object"),
        ({"targets": {"cpu": 100.5}}, "targets.cpu must be between 1 and 100"),
        ({"targets": {"cpu": float("nan")}}, "targets.cpu must be a percentage"),
        ({"groups": {"category": "g", "budgets": {"w": {"maxUnavailable": -1}}}}, "at least 0"),
        ({"groups": {"category": "g", "budgets": {"w": {"maxUnavailable": "2.5%"}}}}, "whole"),
        ({"maxVMs": "10"}, "maxVMs must be an integer"),
    ],
)
def test_shapes_that_are_refused(value: Any, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        policy_from_mapping(value)


def test_max_unavailable_rounds_a_percentage_up_as_a_pod_disruption_budget_does() -> None:
    quarter = MaxUnavailable(25, percent=True)
    assert [quarter.allowed(n) for n in (0, 1, 3, 4, 5, 7, 8, 100)] == [0, 1, 1, 1, 2, 2, 2, 25]
    assert [MaxUnavailable(0, percent=True).allowed(n) for n in (0, 3, 100)] == [0, 0, 0]
    assert [MaxUnavailable(100, percent=True).allowed(n) for n in (0, 3)] == [0, 3]
    assert MaxUnavailable(2).allowed(1) == 2
    assert str(quarter) == "25%"


def test_the_wire_form_round_trips_through_json() -> None:
    for policy in (Policy(), policy_from_mapping(FULL)):
        wire = json.loads(json.dumps(policy.to_wire()))
        assert Policy.from_wire(wire) == policy
    assert policy_from_mapping(FULL).to_wire()["targets"] == {"cpu": 70.0, "memory": 80.0}
    assert "priority" not in Policy().to_wire(), "an unset part is left out, not null"


def test_overrides_merge_key_by_key_and_null_resets() -> None:
    base = policy_from_mapping(FULL)
    tuned = base.with_overrides(
        {"maxVMs": 2, "targets": {"cpu": 60}, "priority": {"levels": {"batch": -1}}}
    )
    assert tuned.max_vms == 2
    assert tuned.targets == Targets(cpu=60.0, memory=80.0), "memory target kept"
    assert tuned.priority.levels == {"low": 1, "high": 9, "batch": -1}
    assert tuned.protection == base.protection

    reset = base.with_overrides({"groups": None, "targets": {"memory": None}, "scope": None})
    assert reset.groups is None
    assert reset.targets == Targets(cpu=70.0)
    assert reset.scope is Scope.ENTITY
    assert base.with_overrides(None) is base
    assert base.with_overrides({}) == base


def test_bad_overrides_are_named_as_overrides() -> None:
    with pytest.raises(PolicyError) as err:
        Policy().with_overrides({"maxVMs": -1, "targets": {"cpu": 500}})
    assert str(err.value).startswith("invalid policy override: ")
    assert "maxVMs" in str(err.value) and "targets.cpu" in str(err.value)
    with pytest.raises(PolicyError, match="overrides must be an object"):
        Policy().with_overrides([1])


def test_care_defaults_notice_like_spot_capacity_and_stop_like_the_go_worker() -> None:
    policy = Policy()
    assert [policy.notice_for(c) for c in Criticality] == [120.0, 30.0, 0.0]
    assert [policy.stop_for(c).action for c in Criticality] == [
        StopAction.SHUTDOWN,
        StopAction.POWER_OFF,
        StopAction.POWER_OFF,
    ]
    assert policy.guest_notice is False and policy.resume.enabled is False
    assert policy.history == 20


def test_care_fields_are_read_and_round_trip() -> None:
    policy = policy_from_mapping(
        {
            "notice": {"LOW": "5m", "MEDIUM": 45, "HIGH": "1m30s", "guest": True},
            "actions": {"LOW": {"action": "shutdown", "grace": "3m"}, "MEDIUM": "suspend"},
            "resume": {"enabled": True, "batchSize": 2, "interval": "10s"},
            "history": 5,
        }
    )
    assert [policy.notice_for(c) for c in Criticality] == [300.0, 45.0, 90.0]
    assert policy.guest_notice is True
    assert policy.stop_for(Criticality.LOW) == StopPolicy(StopAction.SHUTDOWN, 180.0)
    assert policy.stop_for(Criticality.MEDIUM) == StopPolicy(StopAction.SUSPEND)
    assert policy.stop_for(Criticality.HIGH) == StopPolicy(StopAction.POWER_OFF)
    assert policy.resume == ResumePolicy(True, 2, 10.0)
    assert policy.history == 5
    wire = policy.to_wire()
    assert wire["notice"] == {"LOW": "5m", "MEDIUM": "45s", "HIGH": "1m30s", "guest": True}
    assert policy_from_mapping(json.loads(json.dumps(wire))) == policy


def test_bad_care_fields_are_named() -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_mapping(
            {
                "notice": {"LOW": "soon", "URGENT": 1},
                "actions": {
                    "HIGH": {"action": "hibernate"},
                    "MEDIUM": {"action": "poweroff", "grace": "1m"},
                },
                "resume": {"enabled": "yes", "batchSize": 0, "interval": -1},
                "history": 0,
            }
        )
    problems = " ".join(err.value.problems)
    for path in (
        "notice.LOW", "notice.URGENT", "actions.HIGH.action", "actions.MEDIUM.grace",
        "resume.enabled", "resume.batchSize", "resume.interval", "history",
    ):  # fmt: skip
        assert path in problems, path


def test_resume_headroom_and_max_wait() -> None:
    default = policy_from_mapping({"resume": {"enabled": True}}).resume
    assert (default.headroom_percent, default.max_wait_seconds) == (10.0, 3600.0)
    set_ = policy_from_mapping({"resume": {"headroom": "15%", "maxWait": "20m"}}).resume
    assert (set_.headroom_percent, set_.max_wait_seconds) == (15.0, 1200.0)
    assert set_.to_wire()["headroom"] == 15.0 and set_.to_wire()["maxWait"] == "20m"
    with pytest.raises(PolicyError) as err:
        policy_from_mapping({"resume": {"headroom": 101, "maxWait": "soon"}})
    assert [p.split(" ")[0] for p in err.value.problems] == ["resume.headroom", "resume.maxWait"]


def test_max_lifetime_is_unset_by_default_and_read_as_a_duration() -> None:
    assert Policy().max_lifetime_seconds is None
    assert "maxLifetime" not in Policy().to_wire()
    policy = policy_from_mapping({"maxLifetime": "36h"})
    assert policy.max_lifetime_seconds == 36 * 3600
    assert policy.to_wire()["maxLifetime"] == "36h"
    assert policy_from_mapping(json.loads(json.dumps(policy.to_wire()))) == policy
    assert policy_from_mapping({"maxLifetime": 90}).max_lifetime_seconds == 90.0
    assert policy_from_mapping({"maxLifetime": None}).max_lifetime_seconds is None


@pytest.mark.parametrize("value", ["forever", -1, 0, "0s", True])
def test_a_bad_max_lifetime_is_named(value: Any) -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_mapping({"maxLifetime": value})
    assert "maxLifetime" in str(err.value)
