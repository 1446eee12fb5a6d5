"""The demo's inventory and policy: the plan it expects, the policy file, the resume order."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.cli.demo_fixtures import NAMES, NOW, VCSIM, as_vcenter_has_it, vm
from vsphere_preemption.devtools.demo.inventory import (
    DEMO_POLICY,
    ELSEWHERE,
    LEVELS,
    MAX_VMS,
    NOTICE_SECONDS,
    RESUME,
    RUNNING_PRIORITIES,
    TAGGED_OFF,
    TAGGED_SUSPENDED,
    InventoryTooSmall,
    demo_policy,
    expect,
    plan_demo,
    policy_yaml,
    resume_order,
)
from vsphere_preemption.devtools.demo.run import write_secret
from vsphere_preemption.domain.model import Criticality, VmRef
from vsphere_preemption.domain.plan import LeaveReason, plan
from vsphere_preemption.domain.policy import ResumePolicy, policy_from_mapping


def test_the_inventory_shows_every_rule_of_the_plan_at_once() -> None:
    demo = plan_demo(list(reversed(VCSIM)))
    # Natural order: VM2 comes before VM10.
    running = len(RUNNING_PRIORITIES)
    assert [s.name for s in demo.running] == [f"DC0_C0_RP0_VM{i}" for i in range(running)]
    assert demo.protected.name == f"DC0_C0_RP0_VM{running}"
    assert len(demo.powered_off) == TAGGED_OFF and len(demo.suspended) == TAGGED_SUSPENDED
    assert demo.host == VmRef("host-24", "HostSystem")  # a host of the alarmed cluster
    assert [s.name for s in demo.elsewhere] == [f"DC0_C1_RP0_VM{i}" for i in range(ELSEWHERE)]
    assert demo.stay_on == [demo.protected.ref, *(s.ref for s in demo.elsewhere)]
    assert len(demo.untagged) == len(VCSIM) - len(demo.tagged) + 1  # + 1: the host
    assert set(demo.tagged).isdisjoint(s.ref for s in demo.untagged)
    # The other cluster's VMs have the lowest priority: only scope keeps them.
    assert {demo.level(s.ref) for s in demo.elsewhere} == {min(demo.level(r) for r in NAMES)}


def test_the_expected_victims_go_by_priority_then_boot_time_as_the_plan_takes_them() -> None:
    demo = plan_demo(VCSIM)
    # vcsim boots its VMs in name order: the later the name, the more recent the boot.
    boot = {s.ref: NOW + timedelta(seconds=i) for i, s in enumerate(VCSIM)}
    expected = expect(demo, boot)
    # lows (VM1, VM4), then priority 5 (normal VM0, VM3; VM5 untagged: the default), newest
    # first; the highs (VM2, VM6) are over the cap.
    order = ["DC0_C0_RP0_VM4", "DC0_C0_RP0_VM1", "DC0_C0_RP0_VM5", "DC0_C0_RP0_VM3"]
    assert [NAMES[r] for r in expected.victims] == [*order, "DC0_C0_RP0_VM0"]
    assert len(expected.victims) == MAX_VMS
    reasons = {NAMES.get(r, r.value): why for r, why in expected.left_out.items()}
    assert reasons == {
        "DC0_C0_RP0_VM2": LeaveReason.OVER_CAP,
        "DC0_C0_RP0_VM6": LeaveReason.OVER_CAP,
        "DC0_C0_RP0_VM7": LeaveReason.PROTECTED,
        "DC0_C0_RP0_VM8": LeaveReason.NOT_RUNNING,
        "DC0_C0_RP0_VM9": LeaveReason.NOT_RUNNING,
        "DC0_C0_RP0_VM10": LeaveReason.NOT_RUNNING,
        **{f"DC0_C1_RP0_VM{i}": LeaveReason.OUT_OF_SCOPE for i in range(ELSEWHERE)},
        "host-24": LeaveReason.NOT_A_VM,
    }
    # The worker's plan, from the same facts and the policy file, says the same.
    chosen = plan(as_vcenter_has_it(demo, boot), None, DEMO_POLICY, Criticality.HIGH,
                  non_vms=[demo.host])  # fmt: skip
    assert tuple(chosen.refs) == expected.victims
    assert {o.ref: o.reason for o in chosen.left_out} == expected.left_out
    # Booted the other way round, the lows swap: the boot time decides within a priority.
    backwards = {ref: NOW - (when - NOW) for ref, when in boot.items()}
    first = [NAMES[r] for r in expect(demo, backwards).victims[:2]]
    assert first == ["DC0_C0_RP0_VM1", "DC0_C0_RP0_VM4"]
    assert tuple(plan(as_vcenter_has_it(demo, backwards), None, DEMO_POLICY,
                      Criticality.HIGH).refs) == expect(demo, backwards).victims  # fmt: skip


def test_the_policy_file_reads_back_as_the_demo_policy() -> None:
    import yaml

    text = policy_yaml()
    assert "category: preemption-priority" in text and "maxVMs: 5" in text
    assert policy_from_mapping(yaml.safe_load(text)) == DEMO_POLICY
    # A red alarm gets a short notice, told to the guests too; the rest keep their defaults.
    assert "notice: {LOW: 2m, MEDIUM: 30s, HIGH: 5s, guest: true}" in text
    assert DEMO_POLICY.notice_for(Criticality.HIGH) == NOTICE_SECONDS == 5
    assert not DEMO_POLICY.resume.enabled and demo_policy(resume=False) == DEMO_POLICY
    resuming = policy_yaml(resume=True)
    resume_line = "resume: {enabled: true, batchSize: 2, interval: 2s, headroom: 10.0, maxWait: 1h}"
    assert resume_line in resuming
    assert policy_from_mapping(yaml.safe_load(resuming)) == demo_policy(resume=True)
    assert demo_policy(resume=True).resume == RESUME == ResumePolicy(True, 2, 2.0)


def test_a_resume_takes_the_highest_priority_first_then_the_names() -> None:
    demo = plan_demo(VCSIM)
    names = {s.ref: s.name for s in VCSIM}
    order = resume_order(demo, [s.ref for s in demo.running], names)
    levels = [demo.level(ref) for ref in order]
    assert levels == sorted(levels, reverse=True) and levels[0] == LEVELS["high"]
    assert [names[r] for r in order[:2]] == ["DC0_C0_RP0_VM2", "DC0_C0_RP0_VM6"]  # the highs
    assert [names[r] for r in order[-2:]] == ["DC0_C0_RP0_VM1", "DC0_C0_RP0_VM4"]  # the lows


def test_a_too_small_inventory_is_refused_with_the_reason() -> None:
    with pytest.raises(InventoryTooSmall, match="at least 11 VMs on cluster DC0_C0 and 3 on "):
        plan_demo([vm(i) for i in range(3)])
    with pytest.raises(InventoryTooSmall, match="found 14 and 0"):
        plan_demo([vm(i) for i in range(14)])
    with pytest.raises(InventoryTooSmall, match="needs a host"):
        plan_demo([replace(s, host=None) for s in VCSIM])


def test_the_secret_is_private(tmp_path: Any) -> None:
    secret = write_secret(tmp_path / "secret", "user", "pass")
    assert secret.stat().st_mode & 0o777 == 0o700
    for name, value in (("username", "user"), ("password", "pass")):
        assert (secret / name).read_text() == value
        assert (secret / name).stat().st_mode & 0o777 == 0o600
