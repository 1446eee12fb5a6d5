"""scripts/vcenter-role against vcsim: every privilege ID it grants exists (vcsim refuses one
vCenter does not have), the role holds exactly docs/operating.md's table, the flags leave out
what they say, and a second run updates the role rather than failing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from vsphere_preemption.devtools.devservers import Vcsim, tools_dir

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "vcenter-role"
# What vCenter adds to every role.
IMPLICIT = {"System.Anonymous", "System.Read", "System.View"}

pytestmark = pytest.mark.vcsim


def documented() -> set[str]:
    """The privilege IDs of docs/operating.md's table (its first column)."""
    text = (ROOT / "docs" / "operating.md").read_text()
    return set(re.findall(r"^\| `([A-Za-z]+(?:\.[A-Za-z]+)+)` \|", text, re.MULTILINE))


def govc_env(sim: Vcsim) -> dict[str, str]:
    return {
        **os.environ,
        "GOVC": str(tools_dir() / "bin" / "govc"),
        "GOVC_URL": sim.url,
        "GOVC_USERNAME": sim.username,
        "GOVC_PASSWORD": sim.password,
        "GOVC_INSECURE": "1",
    }


def run(sim: Vcsim, *args: str, role: str = "vsphere-preemption") -> set[str]:
    done = subprocess.run(
        [str(SCRIPT), *args], env={**govc_env(sim), "ROLE": role},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_doc_lists_the_privileges_the_code_needs() -> None:
    assert documented() == {
        "VirtualMachine.Interact.PowerOff", "VirtualMachine.Interact.Suspend",
        "VirtualMachine.Interact.PowerOn", "VirtualMachine.Config.AdvancedConfig",
        "Global.SetCustomField", "Global.ManageCustomFields",
    }  # fmt: skip


def test_the_script_creates_the_role_with_exactly_the_documented_privileges(vcsim: Vcsim) -> None:
    assert run(vcsim, role="preemption-all") == documented() | IMPLICIT
    # Again: the role exists, so it is updated, not created twice.
    assert run(vcsim, "--no-suspend", role="preemption-all") == (
        documented() - {"VirtualMachine.Interact.Suspend"} | IMPLICIT
    )


def test_the_flags_leave_out_what_a_policy_does_not_use(vcsim: Vcsim) -> None:
    least = run(vcsim, "--no-suspend", "--no-resume", "--no-guest-notice", "--no-create-field",
                role="preemption-least")  # fmt: skip
    assert least == {"VirtualMachine.Interact.PowerOff", "Global.SetCustomField"} | IMPLICIT


def test_vcsim_refuses_a_privilege_vcenter_does_not_have(vcsim: Vcsim) -> None:
    """What makes the tests above prove the IDs exist."""
    done = subprocess.run(
        [str(tools_dir() / "bin" / "govc"), "role.create", "preemption-bogus",
         "VirtualMachine.Interact.PowerOffNow"],
        env=govc_env(vcsim), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "InvalidArgument" in done.stderr


def test_the_script_grants_the_role_to_a_principal_on_an_entity(vcsim: Vcsim) -> None:
    run(vcsim, "svc-preemption@vsphere.local", "/DC0", role="preemption-granted")
    done = subprocess.run(
        [str(tools_dir() / "bin" / "govc"), "permissions.ls", "/DC0"],
        env=govc_env(vcsim), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"^preemption-granted\s+\S+\s+svc-preemption@vsphere.local\s+Yes$",
                     done.stdout, re.MULTILINE), done.stdout  # fmt: skip
