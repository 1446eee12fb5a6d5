"""`preemptctl plan` against vcsim, as a process with the worker's environment: the victims in
priority order, who stays and why, and nothing changed in vCenter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.temporal.rig import Observer, client_for, vcsim_args, write_secret
from vsphere_preemption.devtools.devservers import Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.vsphere.sdk import vim
from vsphere_preemption.wire import ANNOTATION_KEY

PRIORITY = (
    "--set", "priority.category=preemption-priority",
    "--set", "priority.levels.batch=1",
    "--set", "priority.levels.dev=2",
    "--set", "priority.default=5",
)  # fmt: skip


def preemptctl(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", *argv],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def cluster_morefs(sim: Vcsim) -> dict[str, str]:
    observer = Observer(sim)
    try:
        content: Any = observer.si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.ClusterComputeResource], True
        )
        return {c.name: c._moId for c in view.view}
    finally:
        observer.close()


def custom_fields(sim: Vcsim) -> list[str]:
    observer = Observer(sim)
    try:
        return sorted(f.name for f in observer.si.RetrieveContent().customFieldsManager.field)
    finally:
        observer.close()


def test_plan_orders_by_priority_tag_and_changes_nothing(
    vcsim_factory: Any, tmp_path: Path
) -> None:
    sim: Vcsim = vcsim_factory(*vcsim_args())
    env = {
        "VCENTER_URL": sim.url,
        "VCENTER_INSECURE": "true",
        "VCENTER_SECRET_PATH": str(write_secret(tmp_path / "secret", sim)),
    }
    with client_for(sim) as client:
        inventory = Inventory(client)
        vms = inventory.vms()
        c0 = [v for v in vms if v.cluster == "DC0_C0"]
        c1 = [v for v in vms if v.cluster == "DC0_C1"]
        plain, dev, batch, idle = c0[:4]
        elsewhere = c1[0]
        inventory.power_off([idle.ref])
        tagged = [plain.ref, dev.ref, batch.ref, idle.ref, elsewhere.ref]
        inventory.tag("preemptible", tagged)
        inventory.tag("batch", [batch.ref], category="preemption-priority")
        inventory.tag("dev", [dev.ref], category="preemption-priority")
        # Someone else's text in our field, on a VM the plan would take: it must stay.
        client.annotate([plain.ref], ANNOTATION_KEY, "hands off")
        all_vms = [v.ref for v in vms]
        before = {ref: s.power_state for ref, s in client.read_vms(all_vms).items()}
        annotations = client.read_custom_field(all_vms, ANNOTATION_KEY)
    fields = custom_fields(sim)
    cluster = f"ClusterComputeResource:{cluster_morefs(sim)['DC0_C0']}"

    proc = preemptctl(env, "plan", "--entity", cluster, "--alarm", "cpu-above-80", *PRIORITY)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"Plan for alarm 'cpu-above-80' on {cluster} (")
    start = next(i for i, line in enumerate(lines) if line.startswith("#  VICTIM"))
    rows = [line.split() for line in lines[start + 1 : start + 4]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("1", batch.name, batch.ref.value, "1"),
        ("2", dev.name, dev.ref.value, "2"),
        ("3", plain.name, plain.ref.value, "5"),
    ]
    left = {line.split()[0]: line.split()[2] for line in lines if "VirtualMachine:vm-" in line}
    assert left == {idle.name: "not_running", elsewhere.name: "out_of_scope"}

    proc = preemptctl(env, "plan", "--entity", cluster, "--json", *PRIORITY)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [v["ref"]["Value"] for v in out["plan"]["victims"]] == [
        batch.ref.value,
        dev.ref.value,
        plain.ref.value,
    ]
    assert out["entity"] == {"Type": "ClusterComputeResource", "Value": cluster.split(":")[1]}
    assert (out["scope"], out["tag"], out["alarm"]) == ("entity", "preemptible", None)
    assert out["policy"]["priority"]["levels"] == {"batch": 1, "dev": 2}

    # Read-only: power states, annotations and the custom fields are as they were.
    with client_for(sim) as client:
        assert {ref: s.power_state for ref, s in client.read_vms(all_vms).items()} == before
        assert client.read_custom_field(all_vms, ANNOTATION_KEY) == annotations
    assert annotations == {plain.ref: "hands off"}
    assert custom_fields(sim) == fields


def test_plan_refuses_bad_flags_and_settings_without_vcenter(tmp_path: Path) -> None:
    # No vCenter listens at this URL: exit 2 shows the refusal came before any call.
    env = {"VCENTER_URL": "https://127.0.0.1:9/sdk", "VCENTER_SECRET_PATH": str(tmp_path)}
    for argv, says in [
        (("--entity", "Network:network-1"), "type 'Network' holds no VMs"),
        (("--set", "maxVMs=0"), "maxVMs must be at least 1"),
        (("--policy-override", "[]"), "must be a JSON object"),
        (("-c", "urgent"), "--criticality 'urgent' is invalid"),
        ((), "secret file"),  # no username/password files in tmp_path
    ]:
        proc = preemptctl(env, "plan", *argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert says in proc.stderr and proc.stdout == ""
    proc = preemptctl({"TEMPORAL_URL": "", "VCENTER_URL": ""}, "plan")
    assert proc.returncode == 2
    assert "VCENTER_URL" in proc.stderr and "TEMPORAL_URL" not in proc.stderr
