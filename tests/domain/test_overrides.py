"""A request's overrides are taken only where they make the run safer (domain/overrides.py)."""

from __future__ import annotations

from typing import Any

import pytest

from vsphere_preemption.domain.model import Criticality, StopAction
from vsphere_preemption.domain.overrides import Overridden, apply_request, tighter
from vsphere_preemption.domain.policy import (
    GroupPolicy,
    MaxUnavailable,
    Policy,
    PolicyError,
    Protection,
    Scope,
    Targets,
    policy_from_mapping,
)

ADMIN_WIRE: dict[str, Any] = {
    "scope": "vcenter",
    "maxVMs": 4,
    "priority": {"category": "prio", "levels": {"low": 1, "high": 9}, "default": 5},
    "protection": {"category": "preemption", "tag": "never"},
    "groups": {
        "category": "app",
        "budgets": {"web": {"maxUnavailable": "25%"}, "db": {"maxUnavailable": 1}},
        "default": {"maxUnavailable": 2},
    },
    "targets": {"cpu": 70},
    "dryRun": False,
    "notice": {"LOW": "2m", "MEDIUM": "30s", "HIGH": "10s", "guest": True},
    "actions": {"LOW": {"action": "shutdown", "grace": "1m"}},
    "resume": {"enabled": True, "batchSize": 3, "interval": "30s"},
    "history": 20,
}
ADMIN = policy_from_mapping(ADMIN_WIRE)
NEVER = Protection("preemption", "never")


def request(overrides: Any, admin: Policy = ADMIN) -> Overridden:
    return apply_request(admin, overrides)


def refused(result: Overridden) -> dict[str, str]:
    return {r.field: r.reason for r in result.refused}


def allowing(*paths: str, **changes: Any) -> Policy:
    return policy_from_mapping({**ADMIN_WIRE, **changes, "allowOverrides": list(paths)})


def test_no_request_or_an_empty_one_is_the_administrators_policy() -> None:
    assert request(None) == Overridden(ADMIN)
    assert request({}) == Overridden(ADMIN)
    # Restating the administrator's values changes nothing and refuses nothing.
    assert request(ADMIN.to_wire()) == Overridden(ADMIN)


def test_bad_fields_are_still_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="maxVMs"):
        request({"maxVMs": 0})


def test_the_issue_request_keeps_protection_and_budgets() -> None:
    # `preemptctl workflow run --policy-override '{"protection": null, "groups": null}'`
    result = request({"protection": None, "groups": None})
    assert result.policy == ADMIN
    assert set(refused(result)) == {"protection", "groups"}
    assert "remove the administrator's protection" in refused(result)["protection"]
    assert "drop the administrator's budgets" in refused(result)["groups"]


def test_scope_may_narrow_not_widen() -> None:
    assert request({"scope": "entity"}).policy.scope is Scope.ENTITY
    narrow = policy_from_mapping({**ADMIN_WIRE, "scope": "entity"})
    wide = request({"scope": "vcenter"}, narrow)
    assert wide.policy.scope is Scope.ENTITY and "widen the scope" in refused(wide)["scope"]
    assert request(None, narrow).policy.scope is Scope.ENTITY
    # Null resets to the default, entity: narrower here, so taken.
    assert request({"scope": None}).policy.scope is Scope.ENTITY


def test_max_vms_may_go_down_not_up() -> None:
    assert request({"maxVMs": 1}).policy.max_vms == 1
    up = request({"maxVMs": 5})
    assert up.policy.max_vms == 4 and "raise the cap of 4 to 5" in refused(up)["maxVMs"]
    # Null resets to the default 10: a raise.
    assert request({"maxVMs": None}).policy.max_vms == 4


def test_dry_run_may_turn_on_not_off() -> None:
    assert request({"dryRun": True}).policy.dry_run is True
    dry = policy_from_mapping({**ADMIN_WIRE, "dryRun": True})
    wet = request({"dryRun": False}, dry)
    assert wet.policy.dry_run is True and set(refused(wet)) == {"dryRun"}


def test_priority_is_the_administrators_order() -> None:
    result = request({"priority": {"levels": {"high": 0}}})
    assert result.policy.priority == ADMIN.priority and set(refused(result)) == {"priority"}
    assert request({"priority": None}).policy.priority == ADMIN.priority


def test_protection_is_added_to_never_replaced() -> None:
    extra = {"category": "team", "tag": "keep"}
    added = request({"protection": extra})
    assert added.policy.protection == (NEVER, Protection("team", "keep")) and not added.refused
    assert request({"protection": [extra]}).policy.protection == added.policy.protection
    emptied = request({"protection": []})
    assert emptied.policy.protection == (NEVER,) and set(refused(emptied)) == {"protection"}
    # Where the administrator has none, a request's is simply taken.
    bare = policy_from_mapping({"maxVMs": 3})
    assert request({"protection": extra}, bare).policy.protection == (Protection("team", "keep"),)


def test_budgets_may_be_added_or_tightened_never_dropped_or_loosened() -> None:
    tightened = request(
        {"groups": {"budgets": {"web": {"maxUnavailable": 0}, "ci": {"maxUnavailable": 1}}}}
    )
    assert not tightened.refused
    groups = tightened.policy.groups
    assert groups is not None
    assert groups.budget("web") == MaxUnavailable(0)
    assert groups.budget("ci") == MaxUnavailable(1)
    assert groups.budget("db") == MaxUnavailable(1) and groups.budget("x") == MaxUnavailable(2)

    loosened = request(
        {
            "groups": {
                "budgets": {"web": {"maxUnavailable": "50%"}, "db": None},
                "default": {"maxUnavailable": 1},
            }
        }
    )
    # web loosened, db removed (so the default's 1 would apply, which is not looser: taken),
    # default tightened: only web is refused.
    assert set(refused(loosened)) == {"groups.budgets.web"}
    assert "maxUnavailable 25% to maxUnavailable 50%" in refused(loosened)["groups.budgets.web"]
    g = loosened.policy.groups
    assert g is not None
    assert (g.budget("web"), g.budget("db"), g.budget("other")) == (
        MaxUnavailable(25, percent=True),
        MaxUnavailable(1),
        MaxUnavailable(1),
    )

    default_up = request({"groups": {"default": None}})
    assert set(refused(default_up)) == {"groups.default"}
    assert default_up.policy.groups == ADMIN.groups

    other = request({"groups": {"category": "team"}})
    assert set(refused(other)) == {"groups.category"} and other.policy.groups == ADMIN.groups

    # Where the administrator has none, budgets are simply added.
    bare = policy_from_mapping({"maxVMs": 3})
    added = request({"groups": {"category": "app", "default": {"maxUnavailable": 1}}}, bare)
    assert added.policy.groups == GroupPolicy("app", {}, MaxUnavailable(1))


def test_a_count_and_a_percentage_compare_for_every_group_size() -> None:
    count = MaxUnavailable

    def pct(value: int) -> MaxUnavailable:
        return MaxUnavailable(value, percent=True)

    assert tighter(count(0), pct(10)) and tighter(pct(0), count(0))
    assert tighter(count(1), pct(1)), "a percentage above 0 rounds up to at least 1"
    assert not tighter(count(1), pct(0)) and not tighter(count(2), pct(99))
    assert not tighter(pct(1), count(5)), "1% of 1000 VMs is 10"
    assert tighter(count(3), None) and tighter(None, None) and not tighter(None, count(9))
    assert tighter(pct(20), pct(25)) and not tighter(pct(30), pct(25))
    # Checked against the counts themselves, for the sizes that matter.
    for a in [count(c) for c in range(4)] + [pct(p) for p in (0, 1, 25, 50, 100)]:
        for b in [count(c) for c in range(4)] + [pct(p) for p in (0, 1, 25, 50, 100)]:
            if tighter(a, b):
                assert all(a.allowed(n) <= b.allowed(n) or n == 0 for n in range(0, 300)), (a, b)


def test_targets_may_rise_or_appear_where_there_were_none() -> None:
    assert request({"targets": {"cpu": 85}}).policy.targets == Targets(cpu=85)
    lower = request({"targets": {"cpu": 50}})
    assert lower.policy.targets == Targets(cpu=70) and "lower the cpu target" in str(lower.refused)
    dropped = request({"targets": None})
    assert dropped.policy.targets == Targets(cpu=70) and set(refused(dropped)) == {"targets.cpu"}
    beside = request({"targets": {"memory": 90}})
    assert beside.policy.targets == Targets(cpu=70) and set(refused(beside)) == {"targets.memory"}
    bare = policy_from_mapping({"maxVMs": 3})
    both = request({"targets": {"cpu": 60, "memory": 80}}, bare)
    assert both.policy.targets == Targets(cpu=60, memory=80) and not both.refused


def test_notice_may_lengthen_and_the_guest_be_told() -> None:
    longer = request({"notice": {"HIGH": "1m", "MEDIUM": "5s"}})
    assert longer.policy.notice_for(Criticality.HIGH) == 60
    assert longer.policy.notice_for(Criticality.MEDIUM) == 30
    assert set(refused(longer)) == {"notice.MEDIUM"}
    assert "shorten the notice of 30s to 5s" in refused(longer)["notice.MEDIUM"]
    quiet = request({"notice": {"guest": False}})
    assert quiet.policy.guest_notice is True and set(refused(quiet)) == {"notice.guest"}
    bare = policy_from_mapping({"maxVMs": 3})
    assert request({"notice": {"guest": True}}, bare).policy.guest_notice is True


def test_actions_resume_history_are_the_administrators() -> None:
    result = request(
        {
            "actions": {"HIGH": "suspend"},
            "resume": {"enabled": False, "batchSize": 1, "interval": "5s"},
            "history": 100,
        }
    )
    assert set(refused(result)) == {
        "actions.HIGH",
        "resume.enabled",
        "resume.interval",
        "history",
    }
    assert result.policy.stop_for(Criticality.HIGH).action is StopAction.POWER_OFF
    assert result.policy.resume.enabled is True
    assert result.policy.resume.batch_size == 1, "a smaller batch is gentler: taken"
    assert result.policy.resume.interval_seconds == 30
    assert result.policy.history == 20
    slower = request({"resume": {"batchSize": 9, "interval": "5m"}})
    assert set(refused(slower)) == {"resume.batchSize"}
    assert slower.policy.resume.interval_seconds == 300


def test_resume_headroom_may_widen_and_max_wait_is_the_administrators() -> None:
    wider = request({"resume": {"headroom": 25, "maxWait": "10m"}})
    assert wider.policy.resume.headroom_percent == 25
    assert wider.policy.resume.max_wait_seconds == 3600
    assert set(refused(wider)) == {"resume.maxWait"}
    narrower = request({"resume": {"headroom": 0}})
    assert narrower.policy.resume.headroom_percent == 10
    assert refused(narrower) == {
        "resume.headroom": "would narrow the resume's headroom of 10 points to 0"
    }


def test_allow_overrides_is_never_from_a_request_and_lists_paths() -> None:
    admin = allowing("maxVMs")
    grab = request({"allowOverrides": ["protection"], "protection": None}, admin)
    assert set(refused(grab)) == {"allowOverrides", "protection"}
    assert grab.policy.allow_overrides == ("maxVMs",) and grab.policy.protection == (NEVER,)
    assert request({"allowOverrides": None}, admin).policy.allow_overrides == ("maxVMs",)
    with pytest.raises(PolicyError) as err:
        policy_from_mapping({"allowOverrides": ["allowOverrides", "nope", "groups.budgets."]})
    assert [p.split(" ")[0] for p in err.value.problems] == [
        "allowOverrides.0",
        "allowOverrides.1",
        "allowOverrides.2",
    ]
    with pytest.raises(PolicyError, match="list of field paths"):
        policy_from_mapping({"allowOverrides": "maxVMs"})


def test_allowed_fields_are_taken_as_written() -> None:
    everything = allowing(
        "scope", "maxVMs", "protection", "groups", "targets", "priority", "dryRun"
    )
    wanted = {
        "scope": "entity",
        "maxVMs": 9,
        "protection": None,
        "groups": None,
        "targets": None,
        "priority": None,
    }
    result = request(wanted, everything)
    assert not result.refused
    p = result.policy
    assert (p.max_vms, p.protection, p.groups, p.targets.any) == (9, (), None, False)
    assert p.priority == Policy().priority
    # A parent path covers its children; a child path only itself.
    web_only = allowing("groups.budgets.web")
    loose = request(
        {
            "groups": {
                "budgets": {"web": None, "db": {"maxUnavailable": 3}},
                "default": None,
            }
        },
        web_only,
    )
    assert set(refused(loose)) == {"groups.budgets.db", "groups.default"}
    g = loose.policy.groups
    assert g is not None
    # web had 25 %; allowed to fall to the request's (no) default: no limit at all.
    assert g.budget("web") == MaxUnavailable(100, percent=True)
    assert g.budget("db") == MaxUnavailable(1) and g.default == MaxUnavailable(2)


def test_the_policy_wire_form_keeps_one_protection_as_an_object() -> None:
    assert ADMIN.to_wire()["protection"] == {"category": "preemption", "tag": "never"}
    two = request({"protection": {"category": "team", "tag": "keep"}}).policy
    assert two.to_wire()["protection"] == [
        {"category": "preemption", "tag": "never"},
        {"category": "team", "tag": "keep"},
    ]
    assert Policy.from_wire(two.to_wire()) == two
    assert two.tag_categories() == ("prio", "app", "preemption", "team")
    assert allowing("maxVMs").to_wire()["allowOverrides"] == ["maxVMs"]
    assert "allowOverrides" not in ADMIN.to_wire()


def test_max_lifetime_is_the_administrators_alone() -> None:
    # The bound spans every request the workflow takes: no single request sets it, in either
    # direction, and allowOverrides cannot name it.
    admin = policy_from_mapping({**ADMIN_WIRE, "maxLifetime": "2h"})
    for wanted in ("1h", "3h", None):
        result = request({"maxLifetime": wanted}, admin)
        assert result.policy.max_lifetime_seconds == 7200
        assert set(refused(result)) == {"maxLifetime"}
    with pytest.raises(PolicyError):
        policy_from_mapping({**ADMIN_WIRE, "allowOverrides": ["maxLifetime"]})
