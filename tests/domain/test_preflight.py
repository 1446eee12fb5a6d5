"""The check's judging and report, pure: the failures vcsim cannot produce (it grants every
privilege to every user), and the exit code, text and JSON of a report."""

from __future__ import annotations

from vsphere_preemption.cli.check_render import render_text, report_json
from vsphere_preemption.domain.preflight import (
    Check,
    Poller,
    PrivilegeFacts,
    PrivilegeNeed,
    Report,
    Status,
    judge_pollers,
    judge_privileges,
    judge_routing,
)

NEEDS = (
    PrivilegeNeed("VirtualMachine.Interact.PowerOff", "power off: PowerOffVM_Task"),
    PrivilegeNeed("Global.ManageCustomFields", "create the field", on_vms=False),
)


def test_a_user_without_the_power_off_privilege_fails_naming_it_and_where() -> None:
    facts = PrivilegeFacts(
        user="svc-preempt",
        needs=NEEDS,
        vms_checked=7,
        missing={"VirtualMachine.Interact.PowerOff": tuple(f"vm{i} (vm-{i})" for i in range(7))},
    )
    check = judge_privileges(facts)
    assert check.status is Status.FAIL
    assert check.summary == (
        "user 'svc-preempt' lacks VirtualMachine.Interact.PowerOff (power off: PowerOffVM_Task) "
        "on vm0 (vm-0), vm1 (vm-1), vm2 (vm-2), vm3 (vm-3), vm4 (vm-4) and 2 more"
    )
    assert "docs/operating.md" in check.fix
    assert check.details["missing"]["VirtualMachine.Interact.PowerOff"][6] == "vm6 (vm-6)"


def test_privileges_vcenter_does_not_define_fail_and_no_vm_only_warns() -> None:
    unknown = judge_privileges(
        PrivilegeFacts("u", NEEDS, 2, {}, unknown=("Global.ManageCustomFields",))
    )
    assert unknown.status is Status.FAIL and "does not define" in unknown.summary
    assert judge_privileges(PrivilegeFacts("u", NEEDS, 0, {})).status is Status.WARN
    assert judge_privileges(PrivilegeFacts("u", NEEDS, 2, {})).status is Status.OK


def test_pollers_of_one_kind_only_are_not_a_worker() -> None:
    only = [Poller("7@host", "workflow", "")]
    check = judge_pollers("q", only)
    assert check.status is Status.FAIL and "no activity poller" in check.summary
    both = [*only, Poller("7@host", "activity", "")]
    assert judge_pollers("q", both).summary == "task queue 'q' polled by 7@host"
    assert judge_pollers("q", []).status is Status.FAIL


def test_the_function_must_route_this_vcenter_to_the_workers_queue() -> None:
    assert judge_routing("vc:8989", "a", {}).status is Status.OK
    assert judge_routing("vc:8989", "a", {"vc:8989": "a"}).status is Status.OK
    other = judge_routing("vc:8989", "a", {"vc:8989": "b"})
    assert other.status is Status.FAIL and "'b', but the worker polls 'a'" in other.summary
    assert "names no task queue" in judge_routing("vc:8989", "a", {"x": "a"}).summary


def test_exit_code_text_and_json_of_a_report() -> None:
    checks = (
        Check("a.ok", Status.OK, "fine"),
        Check("b.warn", Status.WARN, "later", fix="do it later"),
        Check("c.fail", Status.FAIL, "broken", fix="mend it"),
        Check("d.skip", Status.SKIP, "not asked"),
    )
    report = Report(checks)
    assert report.exit_code == 1 and [c.name for c in report.failed] == ["c.fail"]
    assert render_text(report).splitlines() == [
        "ok    a.ok    fine",
        "WARN  b.warn  later",
        "              -> do it later",
        "FAIL  c.fail  broken",
        "              -> mend it",
        "skip  d.skip  not asked",
        "1 failed (1 warning): c.fail (broken)",
    ]
    as_json = report_json(report)
    assert (as_json["ok"], as_json["failed"], as_json["warnings"]) == (
        False,
        ["c.fail"],
        ["b.warn"],
    )
    assert as_json["checks"][2] == {
        "name": "c.fail", "status": "fail", "summary": "broken", "fix": "mend it", "details": {}
    }  # fmt: skip
    warned = Report(checks[:2])
    assert warned.exit_code == 0 and render_text(warned).endswith("all checks passed (1 warning)")
    strict = Report(checks[:2], strict=True)
    assert strict.exit_code == 1 and render_text(strict).endswith("1 failed: b.warn (later)")
