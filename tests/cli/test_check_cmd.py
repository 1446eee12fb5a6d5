"""`preemptctl check` as a process, with the worker's and the function's environment, against
vcsim, the Temporal dev server with a worker polling, and a sink on loopback: every check
passing, then each failing on its own, and the JSON output."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.test_plan_cmd import cluster_morefs, preemptctl
from tests.temporal.helpers import unique
from tests.temporal.rig import (
    client_for,
    running_worker,
    vcsim_args,
    worker_env,
    write_secret,
)
from tests.vsphere.raw_session import RawSession
from vsphere_preemption.devtools.devservers import TemporalDevServer, Vcsim
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.temporal.preflight import TEST_EVENT_TYPE
from vsphere_preemption.vsphere.sdk import vim

ALARM = "cluster-cpu-above-80"
POLICY = {
    "priority": {"category": "preemption-priority", "levels": {"batch": 1}, "default": 5},
    "protection": {"category": "preemption-protect", "tag": "protected"},
    "groups": {"category": "app", "budgets": {"web": {"maxUnavailable": 1}}},
}


def define_alarm(sim: Vcsim, name: str, cluster: str) -> None:
    """An alarm defined on a cluster, as an administrator would in the vSphere Client."""
    session = RawSession(sim)
    try:
        content: Any = session.content
        entity = vim.ClusterComputeResource(cluster, session.si._stub)
        expression = vim.alarm.MetricAlarmExpression(
            operator="isAbove",
            type=vim.ClusterComputeResource,
            metric=vim.PerformanceManager.MetricId(counterId=2, instance=""),
            red=8000,
            yellow=7000,
        )
        spec = vim.alarm.AlarmSpec(name=name, description="", enabled=True, expression=expression)
        content.alarmManager.CreateAlarm(entity=entity, spec=spec)
    finally:
        session.close()


@dataclass
class Stand:
    sim: Vcsim
    env: dict[str, str]
    cluster: str
    sink: EventSink
    directory: Path


@pytest.fixture(scope="module")
def stand_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("check")


@pytest.fixture
def sink() -> Iterator[EventSink]:
    with EventSink() as server:
        yield server


@pytest.fixture
def stand(
    vcsim_factory: Any, temporal_server: TemporalDevServer, sink: EventSink, tmp_path: Path
) -> Stand:
    sim: Vcsim = vcsim_factory(*vcsim_args())
    with client_for(sim) as client:
        inventory = Inventory(client)
        vms = inventory.vms()
        inventory.tag("preemptible", [v.ref for v in vms[:3]])
        inventory.tag("batch", [vms[0].ref], category="preemption-priority")
        inventory.tag("protected", [vms[1].ref], category="preemption-protect")
        inventory.tag("web", [vms[2].ref], category="app")
    cluster = cluster_morefs(sim)["DC0_C0"]
    define_alarm(sim, ALARM, cluster)
    bundle = tmp_path / "vcsim.pem"
    bundle.write_text(ssl.get_server_certificate(("127.0.0.1", sim.port)))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    env = worker_env(
        sim,
        write_secret(tmp_path / "vsphere", sim),
        temporal_server.address,
        unique("check"),
        VCENTER_INSECURE="false",
        VCENTER_CA_BUNDLE=str(bundle),
        PREEMPTION_POLICY_FILE=str(policy),
        VSPHERE_PREEMPTION_TAG="preemptible",
        VSPHERE_ALARM_NAME=ALARM,
        K_SINK=sink.url,
    )
    return Stand(sim, env, cluster, sink, tmp_path)


@pytest.fixture
async def polled(stand: Stand) -> AsyncIterator[Stand]:
    """The stand with a worker polling its task queue."""
    async with running_worker(stand.env):
        yield stand


async def check(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.to_thread(preemptctl, env, "check", *argv)
    return proc.returncode, proc.stdout, proc.stderr


def statuses(out: str) -> dict[str, str]:
    """check name -> status, from the JSON output."""
    return {c["name"]: c["status"] for c in json.loads(out)["checks"]}


ALL = {
    "worker.settings", "policy", "function.settings", "function.taskQueue", "vcenter.reachable",
    "vcenter.certificate", "vcenter.login", "vcenter.privileges", "vcenter.tag",
    "vcenter.policyTags", "vcenter.alarms", "temporal.connection", "temporal.namespace",
    "temporal.pollers", "sink",
}  # fmt: skip


async def test_every_check_passes_and_the_sink_gets_a_test_event(polled: Stand) -> None:
    code, out, err = await check(polled.env, "--send-test-event")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[-1] == "all checks passed"
    assert all(line.startswith("ok  ") for line in lines[:-1] if not line.startswith(" ")), out
    assert {line.split()[1] for line in lines[:-1]} == ALL
    text = "\n".join(lines)
    assert "tag 'preemptible': 3 VM(s) (DC0_C0: 3)" in text or "tag 'preemptible': 3 VM(s)" in text
    assert f"'{ALARM}' on DC0_C0 (ClusterComputeResource:{polled.cluster})" in text
    assert "holds all 7 privileges on the 3 tagged VM(s) and the root folder" in text
    assert "the policy's 3 categories and 3 tag(s) exist" in text
    event = polled.sink.wait_for(TEST_EVENT_TYPE, timeout=5)
    assert event is not None and event.mode == "binary"


async def test_the_json_output_names_each_check_its_status_and_details(polled: Stand) -> None:
    code, out, err = await check(polled.env, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["ok"], report["exitCode"], report["failed"]) == (True, 0, [])
    found = {c["name"]: c for c in report["checks"]}
    assert set(found) == ALL
    assert found["sink"]["status"] == "skip"  # not asked for: nothing was sent
    assert polled.sink.events == []
    pollers = found["temporal.pollers"]["details"]["pollers"]
    assert {p["kind"] for p in pollers} == {"workflow", "activity"}
    assert all(p["identity"] for p in pollers)
    privileges = found["vcenter.privileges"]["details"]
    assert "VirtualMachine.Interact.PowerOff" in privileges["required"]
    assert (privileges["missing"], privileges["unknown"], privileges["vmsChecked"]) == ({}, [], 3)
    assert found["vcenter.tag"]["details"]["vms"] == 3


async def test_each_failure_on_its_own(polled: Stand) -> None:
    env = polled.env
    wrong = write_secret(polled.directory / "wrong", polled.sim)
    (wrong / "password").write_text("not-the-password")
    bad_policy = polled.directory / "bad.yaml"
    bad_policy.write_text(yaml.safe_dump({"maxVMs": 0}))
    missing_tags = polled.directory / "missing.yaml"
    missing_tags.write_text(
        yaml.safe_dump({"priority": {"category": "no-such-category", "levels": {"x": 1}}})
    )
    untrusted = {k: v for k, v in env.items() if k != "VCENTER_CA_BUNDLE"}
    cases: list[tuple[dict[str, str], str, str]] = [
        (untrusted, "vcenter.certificate", "cannot verify the TLS certificate"),
        ({"VCENTER_SECRET_PATH": str(wrong)}, "vcenter.login", "refused the login"),
        ({"VSPHERE_PREEMPTION_TAG": "no-such-tag"}, "vcenter.tag", "'no-such-tag' does not exist"),
        ({"TEMPORAL_TASKQUEUE": unique("nobody")}, "temporal.pollers", "no worker polls"),
        ({"PREEMPTION_POLICY_FILE": str(bad_policy)}, "policy", "maxVMs must be at least 1"),
        (
            {"PREEMPTION_POLICY_FILE": str(missing_tags)},
            "vcenter.policyTags",
            "category 'no-such-category'",
        ),
        ({"TEMPORAL_NAMESPACE": "no-such-namespace"}, "temporal.namespace", "no-such-namespace"),
    ]
    for change, failing, says in cases:
        code, out, err = await check(change if change is untrusted else {**env, **change}, "--json")
        assert code == 1, (change, out, err)
        report = json.loads(out)
        assert report["failed"] == [failing], (change, report["failed"])
        failed = next(c for c in report["checks"] if c["name"] == failing)
        assert says in failed["summary"], failed
        assert failed["fix"], failed
    # The text form names what failed, and what to do, on the line below it.
    code, out, _ = await check({**env, "VSPHERE_PREEMPTION_TAG": "no-such-tag"})
    assert code == 1
    # No VM to check the privileges on: checked on the root folder instead, with a warning.
    assert out.splitlines()[-1] == (
        "1 failed (1 warning): vcenter.tag (tag 'no-such-tag' does not exist)"
    )
    assert "WARN  vcenter.privileges" in out
    assert "-> create tag 'no-such-tag' in vCenter, or correct VSPHERE_PREEMPTION_TAG" in out


async def test_an_alarm_not_defined_yet_warns_and_fails_only_when_strict(polled: Stand) -> None:
    env = {**polled.env, "VSPHERE_ALARM_NAMES": "host-memory-above-90"}
    code, out, err = await check(env, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["failed"], report["warnings"]) == ([], ["vcenter.alarms"])
    alarms = next(c for c in report["checks"] if c["name"] == "vcenter.alarms")
    assert "'host-memory-above-90'" in alarms["summary"]
    assert alarms["details"]["missing"] == ["host-memory-above-90"]
    code, out, _ = await check(env)
    assert code == 0 and out.splitlines()[-1] == "all checks passed (1 warning)"
    code, out, _ = await check(env, "--strict")
    assert code == 1 and "1 failed: vcenter.alarms" in out.splitlines()[-1]


async def test_unreachable_services_skip_what_depends_on_them(stand: Stand) -> None:
    # No worker, vCenter on a closed port, Temporal on another: fails named, the rest skipped.
    env = {**stand.env, "VCENTER_URL": "https://127.0.0.1:9/sdk", "TEMPORAL_URL": "127.0.0.1:9"}
    code, out, _ = await check(env, "--json")
    assert code == 1
    found = statuses(out)
    assert found["vcenter.reachable"] == "fail" and found["vcenter.login"] == "skip"
    assert found["temporal.connection"] == "fail" and found["temporal.pollers"] == "skip"
    assert json.loads(out)["failed"] == ["vcenter.reachable", "temporal.connection"]
