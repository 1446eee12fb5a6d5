"""Settings: read once from the environment, every bad variable named in one message."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from vsphere_preemption.domain.model import Criticality
from vsphere_preemption.domain.policy import Policy, Scope
from vsphere_preemption.domain.workflow_ids import IdMode
from vsphere_preemption.settings import (
    FunctionSettings,
    SettingsError,
    VCenterSettings,
    WorkerSettings,
    load,
    parse_duration,
    parse_flag,
)
from vsphere_preemption.settings.function import TemporalConnect

FUNCTION_ENV = {
    "TEMPORAL_URL": "temporal:7233",
    "TEMPORAL_NAMESPACE": "vsphere-preemption",
    "TEMPORAL_TASKQUEUE": "vsphere-preemption",
    "VSPHERE_PREEMPTION_TAG": "preemptible",
    "VSPHERE_ALARM_NAME": "cluster-cpu-above-80",
}


def test_function_settings_from_the_readme_table() -> None:
    s = load(FunctionSettings, {**FUNCTION_ENV, "K_SINK": "http://broker", "DEBUG": "true"})
    assert s.temporal_url == "temporal:7233"
    assert s.alarm_name == "cluster-cpu-above-80"
    assert s.k_sink == "http://broker"
    assert s.debug is True
    assert s.port == 8080


def test_function_defaults_to_one_workflow_per_entity_and_one_alarm() -> None:
    s = load(FunctionSettings, FUNCTION_ENV)
    assert s.workflow_id_mode is IdMode.ENTITY
    assert s.alarm_names == ("cluster-cpu-above-80",)
    assert (s.dedup_window, s.dedup_max_events) == (timedelta(hours=1), 10_000)
    assert s.body_timeout == timedelta(seconds=10)
    assert s.temporal_connect is TemporalConnect.START
    first_use = load(FunctionSettings, FUNCTION_ENV | {"TEMPORAL_CONNECT": "first-use"})
    assert first_use.temporal_connect is TemporalConnect.FIRST_USE
    with pytest.raises(SettingsError, match="TEMPORAL_CONNECT must be one of start, first-use"):
        load(FunctionSettings, FUNCTION_ENV | {"TEMPORAL_CONNECT": "later"})
    assert load(FunctionSettings, FUNCTION_ENV | {"BODY_TIMEOUT": "2500ms"}).body_timeout == (
        timedelta(seconds=2.5)
    )


def test_the_function_refuses_a_tag_or_sink_its_signals_could_not_carry() -> None:
    env = FUNCTION_ENV | {"VSPHERE_PREEMPTION_TAG": "t" * 257, "K_SINK": "default-broker"}
    env |= {"DEDUP_MAX_EVENTS": "-1", "DEDUP_WINDOW": "soon"}
    with pytest.raises(SettingsError) as err:
        load(FunctionSettings, env)
    message = str(err.value)
    assert "VSPHERE_PREEMPTION_TAG must be a vSphere tag name of at most 256" in message
    assert "K_SINK must be an http:// or https:// URL with a host" in message
    assert "DEDUP_MAX_EVENTS must be a whole number from 0 to 1000000" in message
    assert "DEDUP_WINDOW must be a duration" in message and "soon" not in message
    assert "default-broker" not in message
    fine = load(FunctionSettings, FUNCTION_ENV | {"DEDUP_WINDOW": "10m", "DEDUP_MAX_EVENTS": "0"})
    assert (fine.dedup_window, fine.dedup_max_events) == (timedelta(minutes=10), 0)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ('["host mem, high", "cluster-cpu-above-80"]', ("host mem, high",)),
        ("a, b ,,c", ("a", "b", "c")),
        ("", ()),
    ],
)
def test_more_alarm_names_as_json_or_commas(raw: str, names: tuple[str, ...]) -> None:
    s = load(FunctionSettings, {**FUNCTION_ENV, "VSPHERE_ALARM_NAMES": raw})
    assert s.alarm_names == ("cluster-cpu-above-80", *names)


def test_go_id_mode_and_bad_lists_are_named() -> None:
    s = load(FunctionSettings, {**FUNCTION_ENV, "WORKFLOW_ID_MODE": "alarm"})
    assert s.workflow_id_mode is IdMode.ALARM
    env = {**FUNCTION_ENV, "WORKFLOW_ID_MODE": "cluster", "VSPHERE_ALARM_NAMES": "[1, 2]"}
    with pytest.raises(SettingsError) as err:
        load(FunctionSettings, env)
    assert "WORKFLOW_ID_MODE" in str(err.value)
    assert "VSPHERE_ALARM_NAMES" in str(err.value)


def test_function_settings_name_every_bad_variable() -> None:
    env = {k: v for k, v in FUNCTION_ENV.items() if k not in {"TEMPORAL_URL", "VSPHERE_ALARM_NAME"}}
    env |= {"PORT": "eighty", "TEMPORAL_NAMESPACE": "  "}
    with pytest.raises(SettingsError) as err:
        load(FunctionSettings, env)
    message = str(err.value)
    for var in ("TEMPORAL_URL", "VSPHERE_ALARM_NAME", "PORT", "TEMPORAL_NAMESPACE"):
        assert var in message
    assert "eighty" not in message, "values are never echoed: they may be secrets"
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ('"false"'.strip('"'), False), ("TRUE", True), ("0", False)],
)
def test_debug_flag_spellings(raw: str, expected: bool) -> None:
    assert load(FunctionSettings, {**FUNCTION_ENV, "DEBUG": raw}).debug is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("Yes", True), ("on", True), ("1", True), ("", False), (" off ", False)],
)
def test_parse_flag_reads_what_the_settings_read(raw: str, expected: bool) -> None:
    assert parse_flag("VCENTER_INSECURE", raw) is expected
    env = {"TEMPORAL_URL": "t:7233", "VCENTER_URL": "https://vc/sdk", "VCENTER_INSECURE": raw}
    assert load(WorkerSettings, env).vcenter_insecure is expected


def test_parse_flag_names_the_variable_and_not_the_value() -> None:
    with pytest.raises(SettingsError, match=r"^VCENTER_INSECURE must be true or false$"):
        parse_flag("VCENTER_INSECURE", "secret-ish")


def test_worker_settings_defaults_and_knobs() -> None:
    s = load(WorkerSettings, {"TEMPORAL_URL": "t:7233", "VCENTER_URL": "https://vc/sdk"})
    assert s.temporal_namespace == "vsphere-preemption"
    assert s.temporal_taskqueue == "vsphere-preemption"
    assert s.vcenter_insecure is False, "TLS verification is on unless asked otherwise"
    assert s.vcenter_secret_path == Path("/var/bindings/vsphere")
    assert s.cooldown == timedelta(minutes=1)
    assert s.max_vms == 10
    assert s.soft_shutdown_grace == timedelta(minutes=2)
    assert s.max_concurrency == 5

    tuned = load(
        WorkerSettings,
        {
            "TEMPORAL_URL": "t:7233",
            "VCENTER_URL": "https://vc/sdk",
            "PREEMPTION_COOLDOWN": "1m30s",
            "PREEMPTION_MAX_VMS": "100",
            "VCENTER_INSECURE": "true",
        },
    )
    assert tuned.cooldown == timedelta(seconds=90)
    assert tuned.max_vms == 100
    assert tuned.vcenter_insecure is True


def test_worker_settings_reject_nonsense() -> None:
    with pytest.raises(SettingsError) as err:
        load(WorkerSettings, {"PREEMPTION_MAX_VMS": "0", "PREEMPTION_COOLDOWN": "soon"})
    message = str(err.value)
    for var in ("TEMPORAL_URL", "VCENTER_URL", "PREEMPTION_MAX_VMS", "PREEMPTION_COOLDOWN"):
        assert var in message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60", 60),
        ("2.5", 2.5),
        ("90s", 90),
        ("2m", 120),
        ("1m30s", 90),
        ("500ms", 0.5),
        ("1h", 3600),
    ],
)
def test_durations_in_go_spelling(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "1m 30s", "-"])
def test_durations_refuse_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


WORKER_ENV = {"TEMPORAL_URL": "t:7233", "VCENTER_URL": "https://vc/sdk"}
POLICY_YAML = """\
scope: vcenter
maxVMs: 4
priority:
  category: preemption-priority
  levels: {low: 1, high: 9}
protection: {category: preemption, tag: never}
groups:
  category: app
  budgets:
    web: {maxUnavailable: 25%}
targets: {cpu: 70, memory: 80}
"""


def test_worker_policy_defaults_without_a_file() -> None:
    s = load(WorkerSettings, WORKER_ENV)
    assert s.policy == Policy()
    assert s.max_vms == 10 and s.scope is Scope.ENTITY


def test_worker_policy_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_YAML)
    s = load(WorkerSettings, {**WORKER_ENV, "PREEMPTION_POLICY_FILE": str(path)})
    assert s.policy.scope is Scope.VCENTER
    assert s.policy.priority.levels == {"low": 1, "high": 9}
    assert s.policy.groups is not None and str(s.policy.groups.budgets["web"]) == "25%"
    assert s.policy.targets.cpu == 70 and s.policy.targets.memory == 80
    assert s.max_vms == 4, "the file's maxVMs is the worker's cap when the variable is unset"
    assert s.scope is Scope.VCENTER


def test_worker_variables_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_YAML)
    env = {
        **WORKER_ENV,
        "PREEMPTION_POLICY_FILE": str(path),
        "PREEMPTION_MAX_VMS": "2",
        "PREEMPTION_SCOPE": "entity",
    }
    s = load(WorkerSettings, env)
    assert s.policy.max_vms == 2 and s.max_vms == 2
    assert s.policy.scope is Scope.ENTITY and s.scope is Scope.ENTITY
    assert s.policy.targets.cpu == 70, "the rest of the file is kept"


def test_vcenter_settings_need_no_temporal_and_read_the_same_policy(tmp_path: Path) -> None:
    # `preemptctl plan` reads the worker's vCenter and policy variables, never TEMPORAL_URL.
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_YAML)
    env = {"VCENTER_URL": "https://vc/sdk", "PREEMPTION_POLICY_FILE": str(path)}
    s = load(VCenterSettings, {**env, "PREEMPTION_MAX_VMS": "2"})
    worker = load(WorkerSettings, {**env, "TEMPORAL_URL": "t:7233", "PREEMPTION_MAX_VMS": "2"})
    assert s.policy == worker.policy and s.policy.max_vms == 2
    with pytest.raises(SettingsError) as err:
        load(VCenterSettings, {"PREEMPTION_SCOPE": "datacenter"})
    assert "TEMPORAL_URL" not in str(err.value)
    assert "VCENTER_URL is required" in str(err.value) and "PREEMPTION_SCOPE" in str(err.value)


def test_worker_names_bad_variables_and_bad_policy_fields_in_one_message(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("maxVMs: 0\npriority: {category: p, levels: {low: one}}\ntargets: {cpu: 300}\n")
    env = {"PREEMPTION_POLICY_FILE": str(path), "PREEMPTION_SCOPE": "datacenter"}
    with pytest.raises(SettingsError) as err:
        load(WorkerSettings, env)
    message = str(err.value)
    for part in (
        "TEMPORAL_URL",
        "VCENTER_URL",
        "PREEMPTION_SCOPE",
        "PREEMPTION_POLICY_FILE: maxVMs",
        "PREEMPTION_POLICY_FILE: priority.levels.low",
        "PREEMPTION_POLICY_FILE: targets.cpu",
    ):
        assert part in message, part
    assert "datacenter" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "PREEMPTION_POLICY_FILE cannot be read (No such file or directory)"),
        ("scope: [entity\n", "PREEMPTION_POLICY_FILE is not valid YAML at line 2"),
        ("- scope: entity\n", "PREEMPTION_POLICY_FILE: policy must be an object"),
    ],
)
def test_worker_policy_file_problems(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "policy.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError) as err:
        load(WorkerSettings, {**WORKER_ENV, "PREEMPTION_POLICY_FILE": str(path)})
    assert problem in str(err.value)


def test_an_empty_policy_file_is_the_default_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("# nothing set yet\n")
    s = load(WorkerSettings, {**WORKER_ENV, "PREEMPTION_POLICY_FILE": str(path)})
    assert s.policy == Policy()


def test_the_readme_policy_example_is_a_valid_policy(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### The policy", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "policy.yaml"
    path.write_text(example)
    s = load(WorkerSettings, {**WORKER_ENV, "PREEMPTION_POLICY_FILE": str(path)})
    assert s.policy.groups is not None and set(s.policy.groups.budgets) == {"web", "ci-runners"}
    assert s.policy.tag_categories() == ("preemption-priority", "app", "preemption")


def test_worker_notice_variables_win_over_the_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("notice: {LOW: 5m, MEDIUM: 1m, guest: true}\n")
    env = {
        **WORKER_ENV,
        "PREEMPTION_POLICY_FILE": str(policy),
        "PREEMPTION_NOTICE_LOW": "0",
        "PREEMPTION_NOTICE_HIGH": "10s",
    }
    s = load(WorkerSettings, env)
    assert [s.policy.notice_for(c) for c in Criticality] == [0.0, 60.0, 10.0]
    assert s.policy.guest_notice is True
    with pytest.raises(SettingsError, match="PREEMPTION_NOTICE_MEDIUM"):
        load(WorkerSettings, {**WORKER_ENV, "PREEMPTION_NOTICE_MEDIUM": "soon"})


def test_several_vcenters_each_with_its_task_queue() -> None:
    env = FUNCTION_ENV | {
        "VCENTER_TASKQUEUES": '{"https://VCSA-1.example.com/sdk": "vc1", '
        '"vcsa-2.example.com:443": " vc2 ", "https://127.0.0.1:8989/sdk/": "sim"}'
    }
    s = load(FunctionSettings, env)
    assert s.vcenter_taskqueues == {
        "vcsa-1.example.com": "vc1",
        "vcsa-2.example.com": "vc2",
        "127.0.0.1:8989": "sim",
    }
    # TEMPORAL_TASKQUEUE is not needed then; without the mapping it is.
    no_queue = {k: v for k, v in env.items() if k != "TEMPORAL_TASKQUEUE"}
    assert load(FunctionSettings, no_queue).temporal_taskqueue == ""
    assert load(FunctionSettings, FUNCTION_ENV).vcenter_taskqueues == {}
    assert (
        load(FunctionSettings, FUNCTION_ENV | {"VCENTER_TASKQUEUES": " "}).vcenter_taskqueues == {}
    )
    with pytest.raises(SettingsError, match="TEMPORAL_TASKQUEUE is required"):
        load(FunctionSettings, {k: v for k, v in FUNCTION_ENV.items() if k != "TEMPORAL_TASKQUEUE"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("vcsa.example.com=vc1", "is not a JSON object"),
        ("{}", "at least one vCenter"),
        ('["vc1"]', "at least one vCenter"),
        ('{"/sdk": "vc1"}', "names no vCenter host"),
        ('{"vcsa.example.com": ""}', "must be a non-empty string"),
        ('{"vcsa.example.com": 7}', "must be a non-empty string"),
        ('{"https://VCSA.example.com/sdk": "a", "vcsa.example.com": "b"}', "two task queues"),
    ],
)
def test_a_bad_vcenter_mapping_is_named(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(FunctionSettings, FUNCTION_ENV | {"VCENTER_TASKQUEUES": value})
    assert "VCENTER_TASKQUEUES" in str(err.value) and problem in str(err.value)
